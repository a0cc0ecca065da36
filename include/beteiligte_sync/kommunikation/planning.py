"""Kommunikation, middle stage: match both sides and decide the variants (SPEC §6).

The three sides of the diff: EspoCRM now (``emailAddressData``, ``phoneNumberData``), Advoware
now (the entries' ``tlf``), and the base (the value each entry's marker says was last synced,
plus the synced-values baseline ``kommunikationSynced`` for entries that are gone).

====  ============================  =============================================================
Var1  new in EspoCRM                reuse an empty slot of the kind, else create in Advoware
Var2  removed in EspoCRM            entry becomes an empty slot (DELETE is forbidden)
Var3  removed in Advoware           value removed in EspoCRM (entry emptied: becomes a slot;
                                    entry deleted in Advoware's program: value was synced)
Var4  new in Advoware               value added in EspoCRM, entry gets a value marker
Var5  changed in EspoCRM            entry updated in Advoware
Var6  changed in Advoware           value replaced in EspoCRM, marker refreshed
====  ============================  =============================================================

Unmarked Advoware values equal to an EspoCRM value are matched (marker set), never duplicated.
An EspoCRM value is written into an Advoware entry only if no entry holds it already: the
entries that hold a value claim it first, and only then are values restored, changed or created.
An unmarked entry (or one with a damaged marker) whose value was synced and is gone from EspoCRM
is Var2, not Var4. Entity-level conflict (``espocrm_wins``): Var3/Var6 are reverted to the
EspoCRM value and Var4 entries become empty slots; the Advoware values overwritten go into
``note_lines``. Per-entry conflicts (changed on both sides): EspoCRM wins, note kept. One-way
runs treat the source side as winning without destroying anything on the target.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from include.beteiligte_sync.kommkz import DEFAULT_TABLE, EMAIL, PHONE, KommKzTable
from include.beteiligte_sync.kommunikation import rendering as r
from include.beteiligte_sync.kommunikation.classify import (
    DATA_FIELD,
    Entry,
    EspoValue,
    Key,
    find_empty_slot,
    fingerprint,
    read_entries,
    read_espo,
    read_synced_values,
)
from include.beteiligte_sync.ops import Op
from include.beteiligte_sync.options import Direction

log = logging.getLogger(__name__)

DIRECTIONS = tuple(d.value for d in Direction)


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
    :param warnings: damaged markers and skipped variants (ids and reasons, no values).
    """

    advoware_ops: list[Op] = field(default_factory=list)
    espocrm_fields: dict[str, Any] = field(default_factory=dict)
    note_lines: list[str] = field(default_factory=list)
    changes: int = 0
    relevant_count: int = 0
    total_count: int = 0
    warnings: list[str] = field(default_factory=list)
    #: a change was left alone because the run's direction forbids the write it needs
    blocked: bool = False

    @property
    def is_empty(self) -> bool:
        """True when the plan writes nothing on either side."""
        return not self.advoware_ops and not self.espocrm_fields


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
        self.espo = read_espo(espo, table)
        self.synced = read_synced_values(espo)
        self.claimed: set[Key] = set()
        self.removals: set[Key] = set()
        self.additions: dict[Key, EspoValue] = {}
        self.used_slots: set[Any] = set()
        self.pool: list[Entry] = []
        self.changed: list[Entry] = []
        self.var4: list[Entry] = []

    @property
    def espocrm_is_source(self) -> bool:
        """EspoCRM's value wins over an Advoware change (conflict won, or one-way to Advoware)."""
        return self.espocrm_wins or not self.to_espocrm

    # -- driver --------------------------------------------------------------------------------

    def run(self) -> KommunikationPlan:
        entries, damaged = read_entries(self.kommunikation, self.table)
        self.plan.relevant_count = sum(1 for e in entries if e.tlf)
        # First every entry that already holds an EspoCRM value claims it; only then anything
        # is written, so that no value is written into a second entry.
        for entry in entries:
            if entry.bemerkung.is_value:
                self._marked(entry)
            else:
                self._unmarked(entry)
        for entry in self._keep_held_values():
            self._changed_in_advoware_only(entry)
        self._pair_pool()
        self._new_in_espocrm()
        self._new_in_advoware()
        self._build_espocrm_fields()
        self.plan.warnings += r.damaged_warnings(damaged, self.plan.advoware_ops)
        return self.plan

    # -- Advoware entries with a value marker (Var3, Var6, in sync; else pool) -----------------

    def _marked(self, entry: Entry) -> None:
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
            self._refresh_marker(entry, "marker refreshed (kind)")
            return
        self.changed.append(entry)  # changed or removed in Advoware only

    def _keep_held_values(self) -> list[Entry]:
        """EspoCRM is the source: an entry a person changed *to another EspoCRM value* keeps
        it (marker refreshed) before any entry is reverted, else the revert would write that
        value a second time. Returns the changed entries left to decide."""
        if not self.espocrm_is_source:
            return self.changed
        left = []
        for entry in self.changed:
            if entry.key is not None and entry.key in self.espo and entry.key not in self.claimed:
                log.info("[KOMM] Entry holds another EspoCRM value, komm_id=%s", entry.komm_id)
                self.claimed.add(entry.key)
                self._refresh_marker(entry, "holds an EspoCRM value: marker refreshed")
            else:
                left.append(entry)
        return left

    def _changed_in_advoware_only(self, entry: Entry) -> None:
        """Var3/Var6, or EspoCRM's value restored when EspoCRM is the source for the entry."""
        base_key = entry.base_key
        assert base_key is not None
        if not self.espocrm_wins and not self.to_espocrm:
            # One way to Advoware, changed only in Advoware: nothing to copy, and a one-way run
            # destroys nothing on its target. The change waits for a two-way run.
            self.claimed.add(base_key)
            self.plan.blocked = True
            self._skip(entry, "Var6" if entry.tlf else "Var3")
            return
        if self.espocrm_is_source:
            why = "conflict: EspoCRM wins" if self.espocrm_wins else "direction to_advoware"
            if base_key in self.claimed:
                self._held_elsewhere(entry, why)
            else:
                self._revert_to_espocrm(entry, self.espo[base_key], why)
        elif entry.tlf:
            self._var6(entry, base_key)
        else:
            self._var3(entry, base_key)

    def _var6(self, entry: Entry, base_key: Key) -> None:
        log.info("[KOMM] Var6: changed in Advoware, komm_id=%s", entry.komm_id)
        r.check_for_espocrm(entry, self.table)
        self.removals.add(base_key)
        old = self.espo[base_key]
        self._add_to_espocrm(entry, old.phone_type, like=old.item)
        self._write(r.value_marker_update(entry, entry.tlf, "Var6: changed in Advoware"))
        self.plan.changes += 1

    def _var3(self, entry: Entry, base_key: Key) -> None:
        log.info("[KOMM] Var3: removed in Advoware, komm_id=%s", entry.komm_id)
        self.removals.add(base_key)
        self._write(r.empty_slot(entry, "Var3: removed in Advoware"))
        self.plan.changes += 1

    def _held_elsewhere(self, entry: Entry, why: str) -> None:
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
                r.note_emptied(
                    entry, self.table, f"{why}; the EspoCRM value is held by another entry"
                )
            )
        self._write(r.empty_slot(entry, f"{why}: EspoCRM value held by another entry"))
        self.plan.changes += 1

    def _revert_to_espocrm(self, entry: Entry, espo_value: EspoValue, why: str) -> None:
        """EspoCRM wins over an Advoware change of this entry; the Advoware value goes to the
        note so nothing is lost without a trace."""
        log.info("[KOMM] EspoCRM wins over Advoware change, komm_id=%s", entry.komm_id)
        self.claimed.add(espo_value.key)
        if entry.tlf:
            self.plan.note_lines.append(r.note_overwritten(entry, self.table, why))
        self._write_value(entry, espo_value.value, f"{why}: EspoCRM value restored")
        self.plan.changes += 1

    # -- Advoware entries without a (valid) value marker: match, Var2 or Var4 ------------------

    def _unmarked(self, entry: Entry) -> None:
        key = entry.key
        if key is None:
            return
        if key in self.espo:
            log.debug("[KOMM] Matched equal value, komm_id=%s", entry.komm_id)
            self.claimed.add(key)
            if self._write(r.value_marker_update(entry, entry.tlf, "matched equal EspoCRM value")):
                self.plan.changes += 1
        elif self.to_advoware and self._was_synced(key):
            # Synced before, gone from EspoCRM: a removal there (its marker is missing or
            # damaged), not a new Advoware value to bring back.
            log.info("[KOMM] Var2: removed in EspoCRM (unmarked entry), komm_id=%s", entry.komm_id)
            self._write(r.empty_slot(entry, "Var2: removed in EspoCRM"))
            self.plan.changes += 1
        else:
            self.var4.append(entry)

    def _was_synced(self, key: Key) -> bool:
        """The value was on both sides after the last sync (the synced-values baseline). A
        damaged marker proves nothing (a person may have copied it): only the baseline does."""
        return self.synced is not None and fingerprint(key) in self.synced

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
                    r.note_emptied(entry, self.table, "conflict: EspoCRM wins")
                )
                self._write(r.empty_slot(entry, "Var4 on conflict: EspoCRM wins"))
                self.plan.changes += 1
            elif self.to_espocrm:
                self._var4(entry)
            else:
                self._skip(entry, "Var4")

    def _var4(self, entry: Entry) -> None:
        assert entry.key is not None
        r.check_for_espocrm(entry, self.table)
        if entry.key not in self.additions:
            self._add_to_espocrm(entry, self.table.phone_type(entry.kommkz), like=None)
        self.claimed.add(entry.key)
        self._write(r.value_marker_update(entry, entry.tlf, "Var4: new in Advoware"))
        self.plan.changes += 1

    # -- EspoCRM changed or removed a synced value: Var5 or Var2 -------------------------------

    def _pair_pool(self) -> None:
        for entry in self.pool:
            if not entry.tlf and not self.to_advoware:
                self._write(r.empty_slot(entry, "removed on both sides"))
                self.plan.changes += 1
            elif not self.to_advoware:
                self._restore_in_espocrm(entry)
            elif (partner := self._unclaimed_partner(entry)) is not None:
                self._var5(entry, partner)
            else:
                self._var2(entry)

    def _converged(self, entry: Entry) -> None:
        """Both sides changed the value to the same new value: only the marker is behind."""
        assert entry.key is not None
        log.info("[KOMM] Same change on both sides, komm_id=%s", entry.komm_id)
        self.claimed.add(entry.key)
        if self._write(r.value_marker_update(entry, entry.tlf, "same value on both sides")):
            self.plan.changes += 1

    def _restore_in_espocrm(self, entry: Entry) -> None:
        """One-way to EspoCRM: Advoware is the source, so its value goes (back) to EspoCRM."""
        assert entry.key is not None
        log.info("[KOMM] Advoware value restored in EspoCRM, komm_id=%s", entry.komm_id)
        r.check_for_espocrm(entry, self.table)
        self._add_to_espocrm(entry, self.table.phone_type(entry.kommkz), like=None)
        reason = "direction to_espocrm: Advoware value restored"
        self._write(r.value_marker_update(entry, entry.tlf, reason))
        self.plan.changes += 1

    def _unclaimed_partner(self, entry: Entry) -> EspoValue | None:
        """An EspoCRM value no entry holds, of the same channel and (phones) the same type:
        the entry's value was changed in EspoCRM. ``kommKz`` cannot change, hence same type."""
        for key, value in self.espo.items():
            if key in self.claimed or key in self.removals or value.channel != entry.channel:
                continue
            if entry.channel == PHONE and value.phone_type != self.table.phone_type(entry.kommkz):
                continue
            return value
        return None

    def _changed_in_advoware(self, entry: Entry) -> bool:
        return bool(entry.tlf) and entry.key != entry.base_key

    def _var5(self, entry: Entry, partner: EspoValue) -> None:
        log.info("[KOMM] Var5: changed in EspoCRM, komm_id=%s", entry.komm_id)
        if self._changed_in_advoware(entry):
            self._revert_to_espocrm(entry, partner, "changed on both sides: EspoCRM wins")
            return
        self.claimed.add(partner.key)
        self._write_value(entry, partner.value, "Var5: changed in EspoCRM")
        self.plan.changes += 1

    def _var2(self, entry: Entry) -> None:
        log.info("[KOMM] Var2: removed in EspoCRM, komm_id=%s", entry.komm_id)
        if self._changed_in_advoware(entry):
            why = "removed in EspoCRM, changed in Advoware: EspoCRM wins"
            self.plan.note_lines.append(r.note_emptied(entry, self.table, why))
        self._write(r.empty_slot(entry, "Var2: removed in EspoCRM"))
        self.plan.changes += 1

    # -- EspoCRM values no entry holds: Var1, or Var3 for an entry deleted in Advoware ---------

    def _new_in_espocrm(self) -> None:
        for key, value in self.espo.items():
            if key in self.claimed or key in self.removals:
                continue
            if self._deleted_in_advoware(key):
                log.info("[KOMM] Var3: entry deleted in Advoware, value removed in EspoCRM")
                self.removals.add(key)
                self.plan.changes += 1
            elif not self.to_advoware:
                self.plan.warnings.append("Var1 skipped (direction to_espocrm)")
            else:
                self._var1(value)

    def _deleted_in_advoware(self, key: Key) -> bool:
        """The value was on both sides after the last sync and no entry holds it now: its
        entry was deleted in Advoware's own program (the API cannot delete). Advoware must be
        the source for it (EspoCRM did not win a conflict, the run writes EspoCRM)."""
        return self._was_synced(key) and self.to_espocrm and not self.espocrm_wins

    def _var1(self, value: EspoValue) -> None:
        kommkz = self.table.kommkz_for_new(value.channel, value.phone_type)
        slot = find_empty_slot(
            kommkz, self.kommunikation, exclude_ids=self.used_slots, table=self.table
        )
        self.claimed.add(value.key)
        self.plan.changes += 1
        if slot is None:
            log.info("[KOMM] Var1: new in EspoCRM, creating kommKz=%s", kommkz)
            self._write(r.new_entry(value, kommkz, "Var1: new in EspoCRM"))
            return
        self.used_slots.add(slot["id"])
        log.info("[KOMM] Var1: new in EspoCRM, reusing empty slot komm_id=%s", slot["id"])
        self._write(r.slot_reuse(slot, value, kommkz))

    # -- writing -------------------------------------------------------------------------------

    def _write(self, op: Op | None) -> bool:
        """Add ``op`` to the plan; False when there is nothing to write."""
        if op is None:
            return False
        self.plan.advoware_ops.append(op)
        return True

    def _write_value(self, entry: Entry, value: str, reason: str) -> None:
        """Put ``value`` into the Advoware entry, with a fresh value marker."""
        r.check_tlf_length(value, f"Kommunikation {entry.komm_id}")
        self._write(r.value_marker_update(entry, value, reason))

    def _refresh_marker(self, entry: Entry, reason: str) -> None:
        """Bookkeeping only (not a change): the marker says the entry's value and kind."""
        self._write(r.value_marker_update(entry, entry.tlf, reason))

    def _add_to_espocrm(
        self, entry: Entry, phone_type: str | None, *, like: Mapping[str, Any] | None
    ) -> None:
        """Plan adding the entry's value to EspoCRM."""
        assert entry.key is not None
        phone_type = phone_type or self.table.fallback_phone_type
        self.additions[entry.key] = r.espocrm_item(entry, phone_type, like)
        self.claimed.add(entry.key)

    def _skip(self, entry: Entry, variant: str) -> None:
        self.plan.warnings.append(f"Kommunikation {entry.komm_id}: {variant} skipped (direction)")

    # -- EspoCRM result ------------------------------------------------------------------------

    def _build_espocrm_fields(self) -> None:
        removed = self.removals - self.claimed
        for channel in (EMAIL, PHONE):
            kept = [v for k, v in self.espo.items() if k[0] == channel and k not in removed]
            new = [v for k, v in self.additions.items() if k[0] == channel and k not in self.espo]
            if not new and not any(k[0] == channel for k in removed):
                continue
            self.plan.espocrm_fields[DATA_FIELD[channel]] = r.with_one_primary(
                kept + new, self.table
            )


def check_direction(direction: str) -> None:
    """Refuse a direction that is not one of :data:`DIRECTIONS` (ValueError)."""
    Direction.of(direction)


def _plan_for_new_party(espo: Mapping[str, Any], table: KommKzTable) -> KommunikationPlan:
    """The party is about to be created in Advoware: every EspoCRM value becomes an entry."""
    plan = KommunikationPlan()
    for value in read_espo(espo, table).values():
        kommkz = table.kommkz_for_new(value.channel, value.phone_type)
        plan.advoware_ops.append(r.new_entry(value, kommkz, "Var1: new in EspoCRM (new party)"))
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

    :param espo: the whole EspoCRM ``CBeteiligte`` record (with ``emailAddressData``,
        ``phoneNumberData`` and the synced-values baseline ``kommunikationSynced`` if stored).
    :param advo: the Advoware Beteiligte including ``kommunikation``; ``None`` when the party is
        about to be created (then every EspoCRM value becomes a ``CreateKommunikation``).
    :param direction: ``"both"``, ``"to_advoware"`` or ``"to_espocrm"``.
    :param espocrm_wins: the entity is in conflict and EspoCRM wins (Var4 -> empty slots).
    :param initial: first sync of the pair (no baseline). Equal values are matched on every
        sync, so this only changes the log line.
    :raises EntityError: a value cannot be held by the other side (too long, invalid email,
        not text); the message names ids and kinds, never full values.
    """
    check_direction(direction)
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
