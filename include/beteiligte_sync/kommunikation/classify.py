"""Kommunikation, first stage: what each Advoware entry and each EspoCRM value is.

The kind of an Advoware entry (SPEC §5, §6): the ``kommKz`` Advoware reports when it is not 0;
else the kind a well-formed marker names; else it is *unknown* (the GET defect). An entry of
unknown kind is routed by its value's form (:func:`.kommkz.kommkz_from_form`):
never-synced forms (beA SAFE-ID, EPost, URL) are left alone, the rest only chooses the EspoCRM
list (email or phone, a German mobile number as ``Mobile``, anything else as ``Other``). Such a
guess is never written into a marker as the kind, and an unknown-kind slot is reused by no kind.

Also here: sync relevance and ``kommunikationHash`` (sync-relevant entries only, seed #3), the
empty-slot search, and the synced-values baseline (which values were on both sides after the
last successful sync: how an entry deleted in Advoware's own program is told from a value new
in EspoCRM).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from include.beteiligte_sync.errors import EntityError
from include.beteiligte_sync.kommkz import (
    DEFAULT_TABLE,
    EMAIL,
    PHONE,
    Channel,
    KommKzTable,
    kommkz_from_form,
    normalise_value,
)
from include.beteiligte_sync.markers import Bemerkung, MarkerKind, parse_bemerkung

log = logging.getLogger(__name__)

DATA_FIELD = {EMAIL: "emailAddressData", PHONE: "phoneNumberData"}
VALUE_FIELD = {EMAIL: "emailAddress", PHONE: "phoneNumber"}
#: EspoCRM text field holding the synced-values baseline (see :func:`synced_values_baseline`).
SYNCED_VALUES_FIELD = "kommunikationSynced"

Key = tuple[Channel, str]


def mask_value(value: str) -> str:
    """A value shortened for messages: first two and last two characters (``"+4…34"``)."""
    text = value.strip()
    if len(text) <= 6:
        return "***"
    return f"{text[:2]}…{text[-2:]}"


def tlf_of(komm: Mapping[str, Any]) -> str:
    """The entry's value (``""`` when missing or not text)."""
    value = komm.get("tlf")
    return value if isinstance(value, str) else ""


# --- kinds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """The kind of an Advoware entry as far as it is known.

    :param kommkz: the true code when ``known``; else the code the value's form stands for
        (a routing hint: 4 email, 3 mobile, 10 other phone, 5/11/12 never synced).
    :param known: reported by Advoware (not 0) or named by a well-formed marker.
    """

    kommkz: int
    known: bool

    @property
    def marker_kommkz(self) -> int | None:
        """What a marker may store: the code if known, else ``None`` (``?``)."""
        return self.kommkz if self.known else None


def resolve_kind(komm: Mapping[str, Any], *, table: KommKzTable = DEFAULT_TABLE) -> Kind:
    """The entry's kind: reported ``kommKz`` (unless 0/unknown), then the marker's, else
    unknown and routed by the form of its value (or, emptied, of its marker's value)."""
    reported = komm.get("kommKz")
    if table.is_known(reported):
        assert isinstance(reported, int)
        return Kind(reported, True)
    parsed = parse_bemerkung(komm.get("bemerkung"), known_kommkz=table.kinds)
    if parsed.kommkz is not None:
        return Kind(parsed.kommkz, True)
    value = tlf_of(komm) if tlf_of(komm).strip() else (parsed.value or "")
    return Kind(kommkz_from_form(value), False)


def resolve_kommkz(komm: Mapping[str, Any], *, table: KommKzTable = DEFAULT_TABLE) -> int:
    """The code an entry is routed by: its true kind when known, else the code its value's
    form stands for (see :class:`Kind`)."""
    return resolve_kind(komm, table=table).kommkz


def is_sync_relevant(komm: Mapping[str, Any], *, table: KommKzTable = DEFAULT_TABLE) -> bool:
    """True iff the entry has a value (``tlf`` not empty, whatever its marker says) and its kind
    is synced at all (see :mod:`include.beteiligte_sync.kommkz`). Used everywhere."""
    if not tlf_of(komm).strip():
        return False
    return table.channel(resolve_kommkz(komm, table=table)) is not None


def find_empty_slot(
    kommkz: int,
    kommunikation: Sequence[Mapping[str, Any]],
    *,
    exclude_ids: Iterable[Any] = (),
    table: KommKzTable = DEFAULT_TABLE,
) -> dict[str, Any] | None:
    """The first empty slot of ``kommkz``: ``tlf`` empty, a slot marker, and the *known* kind
    ``kommkz`` (an unknown-kind slot is reused by no kind; Advoware's report beats the marker).

    A slot a person typed into is new user data, not a slot (seed: the empty-slot fix).
    """
    excluded = set(exclude_ids)
    for komm in kommunikation:
        if komm.get("id") in excluded or tlf_of(komm).strip():
            continue
        if not parse_bemerkung(komm.get("bemerkung"), known_kommkz=table.kinds).is_slot:
            continue
        if resolve_kind(komm, table=table) == Kind(kommkz, True):
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


@dataclass(frozen=True)
class Entry:
    """One Advoware Kommunikation as the diff sees it."""

    komm_id: Any
    tlf: str
    kind: Kind
    channel: Channel
    bemerkung: Bemerkung
    online: bool

    @property
    def kommkz(self) -> int:
        """The routing code (true kind when known)."""
        return self.kind.kommkz

    @property
    def damaged(self) -> bool:
        """True when the entry's marker is malformed (a person damaged it)."""
        return self.bemerkung.kind is MarkerKind.MALFORMED

    @property
    def key(self) -> Key | None:
        return (self.channel, normalise_value(self.channel, self.tlf)) if self.tlf else None

    @property
    def base_key(self) -> Key | None:
        if not self.bemerkung.is_value or self.bemerkung.value is None:
            return None
        return (self.channel, normalise_value(self.channel, self.bemerkung.value))


@dataclass
class EspoValue:
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


@dataclass(frozen=True)
class Damaged:
    """An entry whose marker a person damaged (for the plan's warning; no values)."""

    komm_id: Any
    problem: str


def read_entries(
    kommunikation: Sequence[Mapping[str, Any]], table: KommKzTable
) -> tuple[list[Entry], list[Damaged]]:
    """Entries the diff looks at (synced kinds that hold a value or a value marker), and every
    entry whose marker is damaged."""
    entries, damaged = [], []
    for komm in kommunikation:
        _check_tlf(komm)
        parsed = parse_bemerkung(komm.get("bemerkung"), known_kommkz=table.kinds)
        if parsed.kind is MarkerKind.MALFORMED:
            log.warning("[KOMM] Damaged marker, komm_id=%s: %s", komm.get("id"), parsed.problem)
            damaged.append(Damaged(komm.get("id"), parsed.problem or "damaged"))
        kind = resolve_kind(komm, table=table)
        channel = table.channel(kind.kommkz)
        # Whitespace alone is no value (SPEC: sync-relevant iff tlf is not empty).
        tlf = tlf_of(komm) if tlf_of(komm).strip() else ""
        if channel is None or not (tlf or parsed.is_value):
            continue
        online = bool(komm.get("online", False))
        entries.append(Entry(komm.get("id"), tlf, kind, channel, parsed, online))
    return entries, damaged


def _espo_items(espo: Mapping[str, Any], channel: Channel) -> list[dict[str, Any]]:
    data = espo.get(DATA_FIELD[channel])
    if data is None:
        # A record read without the ...Data array but with the primary value still has it.
        scalar = espo.get(VALUE_FIELD[channel])
        return [{VALUE_FIELD[channel]: scalar, "primary": True}] if scalar else []
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise EntityError(f"EspoCRM {DATA_FIELD[channel]} is not a list of items")
    return data


def read_espo(espo: Mapping[str, Any], table: KommKzTable) -> dict[Key, EspoValue]:
    """EspoCRM values by key (a value listed twice counts once, the first wins)."""
    values: dict[Key, EspoValue] = {}
    for channel in (EMAIL, PHONE):
        for item in _espo_items(espo, channel):
            raw = item.get(VALUE_FIELD[channel])
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            if not isinstance(raw, str):
                raise EntityError(f"EspoCRM {DATA_FIELD[channel]} holds a value that is not text")
            phone_type = table.espocrm_phone_type(item.get("type")) if channel == PHONE else None
            value = EspoValue(channel, raw, phone_type, dict(item))
            values.setdefault(value.key, value)
    return values


def advoware_values(
    kommunikation: Sequence[Mapping[str, Any]], table: KommKzTable
) -> dict[Key, Mapping[str, Any]]:
    """The sync-relevant Advoware entries by key (the first entry of a value wins)."""
    values: dict[Key, Mapping[str, Any]] = {}
    for komm in kommunikation:
        if not is_sync_relevant(komm, table=table):
            continue
        channel = table.channel(resolve_kommkz(komm, table=table))
        assert channel is not None
        values.setdefault((channel, normalise_value(channel, tlf_of(komm))), komm)
    return values


# --- the synced-values baseline ---------------------------------------------------------------


def fingerprint(key: Key) -> str:
    """A short, value-free token of a normalised value (the baseline stores no numbers)."""
    return hashlib.sha256(f"{key[0]}:{key[1]}".encode()).hexdigest()[:16]


def synced_values_baseline(
    espo: Mapping[str, Any], advo: Mapping[str, Any], *, table: KommKzTable = DEFAULT_TABLE
) -> str:
    """What the engine stores in ``kommunikationSynced`` after a checked sync: fingerprints of
    the values both sides hold (space-separated, sorted; ``""`` when none).

    Read at the next plan: an EspoCRM value in this set that no Advoware entry holds any more was
    removed in Advoware (its entry deleted in Advoware's program: Var3), not new in EspoCRM.
    """
    espo_keys = set(read_espo(espo, table))
    advo_keys = set(advoware_values(advo.get("kommunikation") or [], table))
    return " ".join(sorted(fingerprint(k) for k in espo_keys & advo_keys))


def read_synced_values(espo: Mapping[str, Any]) -> frozenset[str] | None:
    """The stored synced-values baseline, ``None`` when the record has none (then a value
    missing in Advoware cannot be told from a new one and is treated as new, Var1)."""
    stored = espo.get(SYNCED_VALUES_FIELD)
    if not isinstance(stored, str):
        return None
    return frozenset(stored.split())
