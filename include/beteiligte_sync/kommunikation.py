"""Kommunikation sync: relevance, hash, three-way diff into a plan, and the round-trip check.

The three sides of the diff (SPEC §6):

* EspoCRM now: ``emailAddressData`` and ``phoneNumberData`` of the ``CBeteiligte`` record;
* Advoware now: the party's ``kommunikation`` entries (``tlf``);
* the base: the value each Advoware entry's marker says was last synced.

Values are identified by channel (email/phone) and normalised value; the stored form is always
the one a person typed. Phone *types* follow the kommKz table whenever an entry is created on
either side; a type difference on an already matched pair is not synced, because ``kommKz`` is
read-only on PUT and the API may report it as 0.

Variants (per Advoware entry or EspoCRM value):

====  ============================  =============================================================
Var1  new in EspoCRM                reuse an empty slot of the kind, else create in Advoware
Var2  removed in EspoCRM            entry becomes an empty slot (DELETE is forbidden)
Var3  removed in Advoware           value removed in EspoCRM, entry becomes an empty slot
Var4  new in Advoware               value added in EspoCRM, entry gets a value marker
Var5  changed in EspoCRM            entry updated in Advoware
Var6  changed in Advoware           value replaced in EspoCRM, marker refreshed
====  ============================  =============================================================

Unmarked Advoware values equal to an EspoCRM value are matched (marker set), never duplicated;
this is done on every sync, not only the initial one, because it is always right to do.
An EspoCRM value is written into an Advoware entry only if no entry holds it already: the
entries that hold a value (in sync, matched, or changed to it on both sides) claim it first,
and only then are values restored, changed or created (else a restore next to a person's copy
of the same value would leave it twice in Advoware).
Entity-level conflict (``espocrm_wins``): Var3/Var6 are reverted to the EspoCRM value and Var4
entries become empty slots; the Advoware values overwritten go into ``note_lines``. Per-entry
conflicts (changed on both sides): EspoCRM wins, the Advoware value goes into ``note_lines``.
One-way runs treat the source side as winning, without destroying anything on the target:
``to_advoware`` restores EspoCRM's value over Var3/Var6 (note kept) and leaves Var4 entries alone;
``to_espocrm`` puts Advoware's value back into EspoCRM over Var2/Var5 and leaves EspoCRM-only
values (Var1) alone. Marker bookkeeping on Advoware happens in every direction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from include.beteiligte_sync.errors import EntityError
from include.beteiligte_sync.kommkz import (
    DEFAULT_TABLE,
    EMAIL,
    PHONE,
    Channel,
    KommKzTable,
    detect_kommkz,
    is_email_like,
    normalise_value,
)
from include.beteiligte_sync.markers import (
    Bemerkung,
    MarkerKind,
    parse_bemerkung,
    render_slot_marker,
    render_value_marker,
    with_marker,
)
from include.beteiligte_sync.ops import (
    CreateKommunikation,
    MakeEmptySlot,
    Op,
    UpdateKommunikation,
)

log = logging.getLogger(__name__)

DIRECTIONS = ("both", "to_advoware", "to_espocrm")
#: Advoware field limits (SPEC §5 / the API): values that do not fit are an EntityError.
TLF_MAX = 100
BEMERKUNG_MAX = 500
_DATA_FIELD = {EMAIL: "emailAddressData", PHONE: "phoneNumberData"}
_VALUE_FIELD = {EMAIL: "emailAddress", PHONE: "phoneNumber"}

Key = tuple[Channel, str]


@dataclass
class KommunikationPlan:
    """What syncing the Kommunikationen of one party does.

    :param advoware_ops: ``CreateKommunikation`` / ``UpdateKommunikation`` / ``MakeEmptySlot``.
    :param espocrm_fields: ``{"phoneNumberData": [...], "emailAddressData": [...]}``, only the
        sets that change (a PUT replaces the whole set), else ``{}``.
    :param note_lines: Advoware values overwritten (for the stream Note; values in full).
    :param changes: number of Kommunikation changes (each variant applied counts one).
    :param relevant_count: sync-relevant Advoware entries before the sync.
    :param total_count: all Advoware entries before the sync.
    :param warnings: malformed markers and skipped variants (ids and reasons, no values).
    """

    advoware_ops: list[Op] = field(default_factory=list)
    espocrm_fields: dict[str, Any] = field(default_factory=dict)
    note_lines: list[str] = field(default_factory=list)
    changes: int = 0
    relevant_count: int = 0
    total_count: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        """True when the plan writes nothing on either side."""
        return not self.advoware_ops and not self.espocrm_fields


# --- small public helpers ---------------------------------------------------------------------


def mask_value(value: str) -> str:
    """A value shortened for messages: first two and last two characters (``"+4…34"``)."""
    text = value.strip()
    if len(text) <= 6:
        return "***"
    return f"{text[:2]}…{text[-2:]}"


def resolve_kommkz(komm: Mapping[str, Any], *, table: KommKzTable = DEFAULT_TABLE) -> int:
    """The true kind of an Advoware entry: marker first, then the reported ``kommKz`` (unless 0
    or unknown, the GET defect), then detected from the value."""
    parsed = parse_bemerkung(komm.get("bemerkung"), known_kommkz=table.kinds)
    if parsed.kommkz is not None:
        return parsed.kommkz
    reported = komm.get("kommKz")
    if isinstance(reported, int) and table.is_known(reported):
        return reported
    return detect_kommkz(_tlf(komm))


def is_sync_relevant(komm: Mapping[str, Any], *, table: KommKzTable = DEFAULT_TABLE) -> bool:
    """True iff the entry has a value (``tlf`` not empty, whatever its marker says) and its kind
    is synced at all (see :mod:`include.beteiligte_sync.kommkz`). Used everywhere."""
    if not _tlf(komm).strip():
        return False
    return table.channel(resolve_kommkz(komm, table=table)) is not None


def find_empty_slot(
    kommkz: int,
    kommunikation: Sequence[Mapping[str, Any]],
    *,
    exclude_ids: Iterable[Any] = (),
    table: KommKzTable = DEFAULT_TABLE,
) -> dict[str, Any] | None:
    """The first empty slot of ``kommkz``: ``tlf`` empty **and** a slot marker of that kind.

    A slot a person typed into is new user data, not a slot (seed: the empty-slot fix).
    """
    excluded = set(exclude_ids)
    for komm in kommunikation:
        if komm.get("id") in excluded or _tlf(komm).strip():
            continue
        parsed = parse_bemerkung(komm.get("bemerkung"), known_kommkz=table.kinds)
        if parsed.is_slot and parsed.kommkz == kommkz:
            return dict(komm)
    return None


def kommunikation_hash(
    kommunikation: Sequence[Mapping[str, Any]], *, table: KommKzTable = DEFAULT_TABLE
) -> str:
    """``kommunikationHash``: SHA-256 over the sorted ``rowId``s of the sync-relevant entries
    only, so changes of empty slots and unsynced kinds do not look like changes (seed #3)."""
    relevant = [k for k in kommunikation if is_sync_relevant(k, table=table)]
    row_ids = sorted(str(k["rowId"]) for k in relevant if k.get("rowId"))
    log.debug(
        "[KOMM] Kommunikation hash based on %d sync-relevant of %d total",
        len(relevant),
        len(kommunikation),
    )
    return hashlib.sha256("\n".join(row_ids).encode("utf-8")).hexdigest()


def changed_kommunikation_hash(
    kommunikation: Sequence[Mapping[str, Any]],
    stored_hash: str | None,
    *,
    table: KommKzTable = DEFAULT_TABLE,
) -> str | None:
    """The new ``kommunikationHash`` if it differs from ``stored_hash``, else ``None`` (the hash
    is written only when it changes)."""
    new_hash = kommunikation_hash(kommunikation, table=table)
    return None if new_hash == stored_hash else new_hash


# --- reading both sides -----------------------------------------------------------------------


def _tlf(komm: Mapping[str, Any]) -> str:
    value = komm.get("tlf")
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class _Entry:
    """One Advoware Kommunikation as the diff sees it."""

    komm_id: Any
    tlf: str
    kommkz: int
    channel: Channel
    bemerkung: Bemerkung
    online: bool

    @property
    def key(self) -> Key | None:
        return (self.channel, normalise_value(self.channel, self.tlf)) if self.tlf else None

    @property
    def base_key(self) -> Key | None:
        if not self.bemerkung.is_value or self.bemerkung.value is None:
            return None
        return (self.channel, normalise_value(self.channel, self.bemerkung.value))


@dataclass
class _EspoValue:
    """One EspoCRM email or phone, with the item as EspoCRM holds it."""

    channel: Channel
    value: str
    phone_type: str | None
    item: dict[str, Any]

    @property
    def key(self) -> Key:
        return (self.channel, normalise_value(self.channel, self.value))


def _check_tlf(komm: Mapping[str, Any]) -> None:
    value = komm.get("tlf")
    if value is not None and not isinstance(value, str):
        raise EntityError(f"Kommunikation {komm.get('id')}: tlf is not text")


def _read_entries(
    kommunikation: Sequence[Mapping[str, Any]], table: KommKzTable, warnings: list[str]
) -> list[_Entry]:
    """Entries the diff looks at: synced kinds that hold a value or a value marker."""
    entries = []
    for komm in kommunikation:
        _check_tlf(komm)
        parsed = parse_bemerkung(komm.get("bemerkung"), known_kommkz=table.kinds)
        if parsed.kind is MarkerKind.MALFORMED:
            warnings.append(
                f"Kommunikation {komm.get('id')}: malformed marker ({parsed.problem}); "
                "treated as unmarked user data"
            )
            log.warning("[KOMM] Malformed marker, komm_id=%s: %s", komm.get("id"), parsed.problem)
        kommkz = resolve_kommkz(komm, table=table)
        channel = table.channel(kommkz)
        # Whitespace alone is no value (SPEC: sync-relevant iff tlf is not empty).
        tlf = _tlf(komm) if _tlf(komm).strip() else ""
        if channel is None or not (tlf or parsed.is_value):
            continue
        online = bool(komm.get("online", False))
        entries.append(_Entry(komm.get("id"), tlf, kommkz, channel, parsed, online))
    return entries


def _espo_items(espo: Mapping[str, Any], channel: Channel) -> list[dict[str, Any]]:
    data = espo.get(_DATA_FIELD[channel])
    if data is None:
        # A record read without the ...Data array but with the primary value still has it.
        scalar = espo.get(_VALUE_FIELD[channel])
        return [{_VALUE_FIELD[channel]: scalar, "primary": True}] if scalar else []
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise EntityError(f"EspoCRM {_DATA_FIELD[channel]} is not a list of items")
    return data


def _read_espo(espo: Mapping[str, Any], table: KommKzTable) -> dict[Key, _EspoValue]:
    """EspoCRM values by key (a value listed twice counts once, the first wins)."""
    values: dict[Key, _EspoValue] = {}
    for channel in (EMAIL, PHONE):
        for item in _espo_items(espo, channel):
            raw = item.get(_VALUE_FIELD[channel])
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            if not isinstance(raw, str):
                raise EntityError(f"EspoCRM {_DATA_FIELD[channel]} holds a value that is not text")
            phone_type = table.espocrm_phone_type(item.get("type")) if channel == PHONE else None
            value = _EspoValue(channel, raw, phone_type, dict(item))
            values.setdefault(value.key, value)
    return values


# --- the planner ------------------------------------------------------------------------------


class _Planner:
    """Builds one :class:`KommunikationPlan`; one instance per call of plan_kommunikation."""

    def __init__(
        self,
        espo: Mapping[str, Any],
        kommunikation: Sequence[Mapping[str, Any]],
        *,
        direction: str,
        espocrm_wins: bool,
        table: KommKzTable,
    ) -> None:
        self.table = table
        self.kommunikation = kommunikation
        self.to_advoware = direction in ("both", "to_advoware")
        self.to_espocrm = direction in ("both", "to_espocrm")
        # A conflict resolution in EspoCRM's favour writes Advoware; meaningless for to_espocrm.
        self.espocrm_wins = espocrm_wins and self.to_advoware
        self.plan = KommunikationPlan(total_count=len(kommunikation))
        self.espo = _read_espo(espo, table)
        self.claimed: set[Key] = set()
        self.removals: set[Key] = set()
        self.additions: dict[Key, _EspoValue] = {}
        self.used_slots: set[Any] = set()
        self.pool: list[_Entry] = []
        self.changed: list[_Entry] = []
        self.var4: list[_Entry] = []

    # -- driver --------------------------------------------------------------------------------

    def run(self) -> KommunikationPlan:
        entries = _read_entries(self.kommunikation, self.table, self.plan.warnings)
        self.plan.relevant_count = sum(1 for e in entries if e.tlf)
        # First every entry that already holds an EspoCRM value claims it; only then anything
        # is written, so that no value is written into a second entry.
        for entry in entries:
            if entry.bemerkung.is_value:
                self._marked(entry)
            else:
                self._unmarked(entry)
        for entry in self.changed:
            self._changed_in_advoware_only(entry)
        self._pair_pool()
        self._new_in_espocrm()
        self._new_in_advoware()
        self._build_espocrm_fields()
        return self.plan

    # -- Advoware entries with a value marker (Var3, Var6, in sync; else pool) -----------------

    def _marked(self, entry: _Entry) -> None:
        """Claim what the entry holds (in sync, or the same change on both sides); defer the
        rest until every held value is claimed."""
        base_key = entry.base_key
        assert base_key is not None  # _marked is only called for value markers
        if base_key not in self.espo:
            if entry.key is not None and entry.key in self.espo:
                self._converged(entry)
            else:
                self.pool.append(entry)  # changed or removed in EspoCRM: Var5 or Var2
            return
        if entry.key == base_key:
            self.claimed.add(base_key)  # in sync
            return
        self.changed.append(entry)  # changed or removed in Advoware only

    def _changed_in_advoware_only(self, entry: _Entry) -> None:
        """Var3/Var6, or EspoCRM's value restored when EspoCRM is the source for the entry."""
        base_key = entry.base_key
        assert base_key is not None
        if self.espocrm_wins or not self.to_espocrm:
            # EspoCRM is the source for this entry (conflict won, or one-way to Advoware).
            why = "conflict: EspoCRM wins" if self.espocrm_wins else "direction to_advoware"
            if base_key in self.claimed:
                self._held_elsewhere(entry, why)
            else:
                self._revert_to_espocrm(entry, self.espo[base_key], why)
        elif entry.tlf:
            self._var6(entry, base_key)
        else:
            self._var3(entry, base_key)

    def _var6(self, entry: _Entry, base_key: Key) -> None:
        log.info("[KOMM] Var6: changed in Advoware, komm_id=%s", entry.komm_id)
        self._check_for_espocrm(entry)
        self.removals.add(base_key)
        old = self.espo[base_key]
        self._add_to_espocrm(entry, phone_type=old.phone_type, like=old.item)
        self._set_value_marker(entry, entry.tlf, "Var6: changed in Advoware")
        self.plan.changes += 1

    def _var3(self, entry: _Entry, base_key: Key) -> None:
        log.info("[KOMM] Var3: removed in Advoware, komm_id=%s", entry.komm_id)
        self.removals.add(base_key)
        self._make_empty_slot(entry, "Var3: removed in Advoware")
        self.plan.changes += 1

    def _held_elsewhere(self, entry: _Entry, why: str) -> None:
        """EspoCRM's value of the entry is already held by another entry (a person typed it
        there): restoring it here would duplicate it. What is left in this entry is an
        Advoware-only value: an empty slot when EspoCRM wins (note keeps the value), left
        alone one-way to Advoware (nothing on the target is destroyed)."""
        log.info("[KOMM] Value held by another entry, komm_id=%s", entry.komm_id)
        if entry.tlf and not self.espocrm_wins:
            self._skip(entry, "Var6 (value held by another entry)")
            return
        if entry.tlf:
            self.plan.note_lines.append(
                f"Kommunikation {entry.komm_id} ({self.table.name(entry.kommkz)}): Advoware value "
                f"'{entry.tlf}' replaced by an empty slot ({why}; the EspoCRM value is held by "
                "another entry)"
            )
        self._make_empty_slot(entry, f"{why}: EspoCRM value held by another entry")
        self.plan.changes += 1

    def _revert_to_espocrm(self, entry: _Entry, espo_value: _EspoValue, why: str) -> None:
        """EspoCRM wins over an Advoware change of this entry; the Advoware value goes to the
        note so nothing is lost without a trace."""
        log.info("[KOMM] EspoCRM wins over Advoware change, komm_id=%s", entry.komm_id)
        self.claimed.add(espo_value.key)
        if entry.tlf:
            self.plan.note_lines.append(
                f"Kommunikation {entry.komm_id} ({self.table.name(entry.kommkz)}): Advoware value "
                f"'{entry.tlf}' overwritten with the EspoCRM value ({why})"
            )
        self._write_value(entry, espo_value.value, f"{why}: EspoCRM value restored")
        self.plan.changes += 1

    # -- Advoware entries without a (valid) value marker: match or Var4 -----------------------

    def _unmarked(self, entry: _Entry) -> None:
        key = entry.key
        if key is None:
            return
        if key in self.espo:
            log.debug("[KOMM] Matched equal value, komm_id=%s", entry.komm_id)
            self.claimed.add(key)
            if self._set_value_marker(entry, entry.tlf, "matched equal EspoCRM value"):
                self.plan.changes += 1
            return
        self.var4.append(entry)

    def _new_in_advoware(self) -> None:
        """Var4: add to EspoCRM, or (EspoCRM wins) turn into empty slots, counted as changes."""
        for entry in self.var4:
            log.info("[KOMM] Var4: new in Advoware, komm_id=%s", entry.komm_id)
        if self.espocrm_wins and self.var4:
            log.info(
                "[KOMM] Converting %d Var4 entries to empty slots (EspoCRM wins)", len(self.var4)
            )
        for entry in self.var4:
            if self.espocrm_wins:
                self.plan.note_lines.append(
                    f"Kommunikation {entry.komm_id} ({self.table.name(entry.kommkz)}): Advoware "
                    f"value '{entry.tlf}' replaced by an empty slot (conflict: EspoCRM wins)"
                )
                self._make_empty_slot(entry, "Var4 on conflict: EspoCRM wins")
                self.plan.changes += 1
            elif self.to_espocrm:
                self._var4(entry)
            else:
                self._skip(entry, "Var4")

    def _var4(self, entry: _Entry) -> None:
        assert entry.key is not None
        self._check_for_espocrm(entry)
        if entry.key not in self.additions:
            self._add_to_espocrm(entry, phone_type=self.table.phone_type(entry.kommkz), like=None)
        self.claimed.add(entry.key)
        self._set_value_marker(entry, entry.tlf, "Var4: new in Advoware")
        self.plan.changes += 1

    # -- EspoCRM changed or removed a synced value: Var5 or Var2 -------------------------------

    def _pair_pool(self) -> None:
        for entry in self.pool:
            if not entry.tlf and not self.to_advoware:
                self._make_empty_slot(entry, "removed on both sides")
                self.plan.changes += 1
            elif not self.to_advoware:
                self._restore_in_espocrm(entry)
            elif (partner := self._unclaimed_partner(entry)) is not None:
                self._var5(entry, partner)
            else:
                self._var2(entry)

    def _converged(self, entry: _Entry) -> None:
        """Both sides changed the value to the same new value: only the marker is behind."""
        assert entry.key is not None
        log.info("[KOMM] Same change on both sides, komm_id=%s", entry.komm_id)
        self.claimed.add(entry.key)
        if self._set_value_marker(entry, entry.tlf, "same value on both sides"):
            self.plan.changes += 1

    def _restore_in_espocrm(self, entry: _Entry) -> None:
        """One-way to EspoCRM: Advoware is the source, so its value goes (back) to EspoCRM."""
        assert entry.key is not None
        log.info("[KOMM] Advoware value restored in EspoCRM, komm_id=%s", entry.komm_id)
        self._check_for_espocrm(entry)
        self._add_to_espocrm(entry, phone_type=self.table.phone_type(entry.kommkz), like=None)
        self._set_value_marker(entry, entry.tlf, "direction to_espocrm: Advoware value restored")
        self.plan.changes += 1

    def _unclaimed_partner(self, entry: _Entry) -> _EspoValue | None:
        """An EspoCRM value no entry holds, of the same channel and (phones) the same type:
        the entry's value was changed in EspoCRM. ``kommKz`` cannot change, hence same type."""
        for key, value in self.espo.items():
            if key in self.claimed or key in self.removals or value.channel != entry.channel:
                continue
            if entry.channel == PHONE and value.phone_type != self.table.phone_type(entry.kommkz):
                continue
            return value
        return None

    def _changed_in_advoware(self, entry: _Entry) -> bool:
        base = entry.base_key
        return bool(entry.tlf) and entry.key != base

    def _var5(self, entry: _Entry, partner: _EspoValue) -> None:
        log.info("[KOMM] Var5: changed in EspoCRM, komm_id=%s", entry.komm_id)
        if self._changed_in_advoware(entry):
            self._revert_to_espocrm(entry, partner, "changed on both sides: EspoCRM wins")
            return
        self.claimed.add(partner.key)
        self._write_value(entry, partner.value, "Var5: changed in EspoCRM")
        self.plan.changes += 1

    def _var2(self, entry: _Entry) -> None:
        log.info("[KOMM] Var2: removed in EspoCRM, komm_id=%s", entry.komm_id)
        if self._changed_in_advoware(entry):
            self.plan.note_lines.append(
                f"Kommunikation {entry.komm_id} ({self.table.name(entry.kommkz)}): Advoware value "
                f"'{entry.tlf}' replaced by an empty slot (removed in EspoCRM, changed in "
                "Advoware: EspoCRM wins)"
            )
        self._make_empty_slot(entry, "Var2: removed in EspoCRM")
        self.plan.changes += 1

    # -- Var1 ----------------------------------------------------------------------------------

    def _new_in_espocrm(self) -> None:
        for key, value in self.espo.items():
            if key in self.claimed or key in self.removals:
                continue
            if not self.to_advoware:
                self.plan.warnings.append("Var1 skipped (direction to_espocrm)")
                continue
            self._var1(value)

    def _var1(self, value: _EspoValue) -> None:
        kommkz = self.table.kommkz_for_new(value.channel, value.phone_type)
        _check_tlf_length(value.value, f"EspoCRM {self._label(value)}")
        slot = find_empty_slot(
            kommkz, self.kommunikation, exclude_ids=self.used_slots, table=self.table
        )
        self.claimed.add(value.key)
        self.plan.changes += 1
        marker = render_value_marker(value.value, kommkz)
        if slot is None:
            log.info("[KOMM] Var1: new in EspoCRM, creating kommKz=%s", kommkz)
            self.plan.advoware_ops.append(
                CreateKommunikation(
                    reason="Var1: new in EspoCRM",
                    kommkz=kommkz,
                    tlf=value.value,
                    bemerkung=_checked_bemerkung(marker, "new Kommunikation"),
                )
            )
            return
        self.used_slots.add(slot["id"])
        log.info("[KOMM] Var1: new in EspoCRM, reusing empty slot komm_id=%s", slot["id"])
        parsed = parse_bemerkung(slot.get("bemerkung"), known_kommkz=self.table.kinds)
        self.plan.advoware_ops.append(
            UpdateKommunikation(
                reason="Var1: new in EspoCRM (reuses empty slot)",
                komm_id=slot["id"],
                tlf=value.value,
                bemerkung=_checked_bemerkung(with_marker(parsed, marker), f"slot {slot['id']}"),
                online=bool(slot.get("online", False)),
            )
        )

    # -- writing -------------------------------------------------------------------------------

    def _write_value(self, entry: _Entry, value: str, reason: str) -> None:
        """Put ``value`` into the Advoware entry, with a fresh value marker."""
        _check_tlf_length(value, f"Kommunikation {entry.komm_id}")
        self._set_value_marker(entry, value, reason)

    def _set_value_marker(self, entry: _Entry, value: str, reason: str) -> bool:
        """Write ``value`` and its value marker into the entry; False if nothing to write."""
        if entry.bemerkung.kind is MarkerKind.MALFORMED and value == entry.tlf:
            # A marker would make a malformed bemerkung worse; the value is matched by equality
            # on the next sync again, so leaving the entry alone is stable.
            return False
        bemerkung = with_marker(entry.bemerkung, render_value_marker(value, entry.kommkz))
        if value == entry.tlf and bemerkung == entry.bemerkung.raw:
            return False
        self.plan.advoware_ops.append(
            UpdateKommunikation(
                reason=reason,
                komm_id=entry.komm_id,
                tlf=value,
                bemerkung=_checked_bemerkung(bemerkung, f"Kommunikation {entry.komm_id}"),
                online=entry.online,
            )
        )
        return True

    def _make_empty_slot(self, entry: _Entry, reason: str) -> None:
        bemerkung = with_marker(entry.bemerkung, render_slot_marker(entry.kommkz))
        log.debug("[KOMM] Empty slot: komm_id=%s, kommKz=%s", entry.komm_id, entry.kommkz)
        self.plan.advoware_ops.append(
            MakeEmptySlot(
                reason=reason,
                komm_id=entry.komm_id,
                kommkz=entry.kommkz,
                bemerkung=_checked_bemerkung(bemerkung, f"Kommunikation {entry.komm_id}"),
            )
        )

    def _add_to_espocrm(
        self, entry: _Entry, *, phone_type: str | None, like: Mapping[str, Any] | None
    ) -> None:
        """Plan adding the entry's value to EspoCRM (``like``: flags of a replaced item)."""
        assert entry.key is not None
        item: dict[str, Any] = {
            "primary": False,
            "optOut": False,
            "invalid": False,
            **{k: v for k, v in (like or {}).items() if k in ("primary", "optOut")},
        }
        if entry.channel == EMAIL:
            item.update(emailAddress=entry.tlf, lower=entry.tlf.lower())
        else:
            item.update(phoneNumber=entry.tlf, type=phone_type or self.table.phone_type(0))
        self.additions[entry.key] = _EspoValue(entry.channel, entry.tlf, phone_type, item)
        self.claimed.add(entry.key)

    def _check_for_espocrm(self, entry: _Entry) -> None:
        """EspoCRM answers 400 on an invalid email: fail the entity with a readable reason."""
        if entry.channel == EMAIL and not is_email_like(entry.tlf):
            raise EntityError(
                f"Kommunikation {entry.komm_id} ({self.table.name(entry.kommkz)}): "
                f"'{mask_value(entry.tlf)}' is not a valid email address, EspoCRM would reject "
                "it; correct it in Advoware"
            )

    def _skip(self, entry: _Entry, variant: str) -> None:
        self.plan.warnings.append(f"Kommunikation {entry.komm_id}: {variant} skipped (direction)")

    def _label(self, value: _EspoValue) -> str:
        return "email" if value.channel == EMAIL else f"phone {value.phone_type}"

    # -- EspoCRM result ------------------------------------------------------------------------

    def _build_espocrm_fields(self) -> None:
        removed = self.removals - self.claimed
        for channel in (EMAIL, PHONE):
            kept = [v for k, v in self.espo.items() if k[0] == channel and k not in removed]
            new = [v for k, v in self.additions.items() if k[0] == channel and k not in self.espo]
            if not new and not any(k[0] == channel for k in removed):
                continue
            self.plan.espocrm_fields[_DATA_FIELD[channel]] = self._with_one_primary(kept + new)

    def _with_one_primary(self, values: list[_EspoValue]) -> list[dict[str, Any]]:
        """Items for EspoCRM with exactly one primary: the kept one, else the table's choice."""
        items = [dict(v.item) for v in values]
        if not items:
            return items
        flagged = [i for i, item in enumerate(items) if item.get("primary")]
        chosen = flagged[0] if flagged else min(range(len(values)), key=self._rank(values))
        for index, item in enumerate(items):
            item["primary"] = index == chosen
        return items

    def _rank(self, values: list[_EspoValue]) -> Any:
        def rank(index: int) -> tuple[int, int]:
            value = values[index]
            kommkz = self.table.kommkz_for_new(value.channel, value.phone_type)
            return (self.table.primary_rank(kommkz), index)

        return rank


def _check_tlf_length(value: str, where: str) -> None:
    if len(value) > TLF_MAX:
        raise EntityError(
            f"{where}: value has {len(value)} characters, Advoware holds at most {TLF_MAX} "
            "(not truncated; shorten it)"
        )


def _checked_bemerkung(bemerkung: str, where: str) -> str:
    if len(bemerkung) > BEMERKUNG_MAX:
        raise EntityError(
            f"{where}: bemerkung with marker would have {len(bemerkung)} characters, Advoware "
            f"holds at most {BEMERKUNG_MAX} (user text is never truncated; shorten it)"
        )
    return bemerkung


# --- public entry points ----------------------------------------------------------------------


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")


def _plan_for_new_party(espo: Mapping[str, Any], table: KommKzTable) -> KommunikationPlan:
    """The party is about to be created in Advoware: every EspoCRM value becomes an entry."""
    plan = KommunikationPlan()
    for value in _read_espo(espo, table).values():
        kommkz = table.kommkz_for_new(value.channel, value.phone_type)
        _check_tlf_length(value.value, f"EspoCRM {value.channel}")
        plan.advoware_ops.append(
            CreateKommunikation(
                reason="Var1: new in EspoCRM (new party)",
                kommkz=kommkz,
                tlf=value.value,
                bemerkung=_checked_bemerkung(
                    render_value_marker(value.value, kommkz), "new Kommunikation"
                ),
            )
        )
    plan.changes = len(plan.advoware_ops)
    return plan


def plan_kommunikation(
    espo: dict[str, Any],
    advo: dict[str, Any] | None,
    *,
    direction: str,
    espocrm_wins: bool,
    initial: bool,
    table: KommKzTable = DEFAULT_TABLE,
) -> KommunikationPlan:
    """Plan the Kommunikation sync of one party (pure: reads nothing, writes nothing).

    :param espo: the EspoCRM ``CBeteiligte`` record (with ``emailAddressData`` and
        ``phoneNumberData``).
    :param advo: the Advoware Beteiligte including ``kommunikation``; ``None`` when the party is
        about to be created (then every EspoCRM value becomes a ``CreateKommunikation``).
    :param direction: ``"both"``, ``"to_advoware"`` or ``"to_espocrm"``.
    :param espocrm_wins: the entity is in conflict and EspoCRM wins (Var4 -> empty slots).
    :param initial: first sync of the pair (no baseline). Equal values are matched on every
        sync, so this only changes the log line.
    :raises EntityError: a value cannot be held by the other side (too long, invalid email,
        not text); the message names ids and kinds, never full values.
    """
    _check_direction(direction)
    if advo is None:
        plan = _plan_for_new_party(espo, table)
        log.info("[KOMM] New party: %d Kommunikationen to create", plan.changes)
        return plan
    kommunikation = advo.get("kommunikation") or []
    planner = _Planner(
        espo, kommunikation, direction=direction, espocrm_wins=espocrm_wins, table=table
    )
    plan = planner.run()
    # INFO only when something changes (the seed's trace line); an unchanged party logs
    # nothing at INFO: 10,000 "nothing to do" lines per run help no one and cost (issue 8).
    log.log(
        logging.INFO if plan.changes else logging.DEBUG,
        "[KOMM] %s sync planned (%s): %d total changes, %d Advoware ops, EspoCRM sets %s; "
        "%d sync-relevant of %d total",
        "Initial" if initial else "Bidirectional" if direction == "both" else "One-way",
        direction,
        plan.changes,
        len(plan.advoware_ops),
        sorted(plan.espocrm_fields) or "unchanged",
        plan.relevant_count,
        plan.total_count,
    )
    return plan


def _sync_values(
    espo: Mapping[str, Any], advo: Mapping[str, Any], table: KommKzTable
) -> tuple[dict[Key, str], dict[Key, str]]:
    """Normalised key -> label of the sync-relevant values of each side."""
    espo_side: dict[Key, str] = {}
    for key, value in _read_espo(espo, table).items():
        label = "email" if value.channel == EMAIL else f"phone {value.phone_type}"
        espo_side[key] = f"{label}: {mask_value(value.value)}"
    advo_side: dict[Key, str] = {}
    for komm in advo.get("kommunikation") or []:
        if not is_sync_relevant(komm, table=table):
            continue
        kommkz = resolve_kommkz(komm, table=table)
        channel = table.channel(kommkz)
        assert channel is not None
        key = (channel, normalise_value(channel, _tlf(komm)))
        label = "email" if channel == EMAIL else f"phone {table.phone_type(kommkz)}"
        advo_side.setdefault(key, f"{label}: {mask_value(_tlf(komm))}")
    return espo_side, advo_side


def compare_kommunikation(
    espo: dict[str, Any],
    advo: dict[str, Any],
    *,
    direction: str = "both",
    table: KommKzTable = DEFAULT_TABLE,
) -> list[str]:
    """Round-trip check: differences between the sync-relevant values of both sides.

    Each difference reads ``"phone Office: +4…34 != (missing)"`` (EspoCRM side first; values
    masked, since the text goes into ``syncErrorMessage`` and may reach logs). With a one-way
    ``direction`` only the target side is checked for the source's values.
    """
    _check_direction(direction)
    espo_side, advo_side = _sync_values(espo, advo, table)
    differences = []
    if direction in ("both", "to_advoware"):
        differences += [f"{espo_side[k]} != (missing)" for k in espo_side if k not in advo_side]
    if direction in ("both", "to_espocrm"):
        differences += [f"(missing) != {advo_side[k]}" for k in advo_side if k not in espo_side]
    log.debug("[KOMM] Validation: %d Kommunikation differences", len(differences))
    return differences
