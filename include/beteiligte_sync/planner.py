"""compare -> plan: pure functions that turn both records and the baseline into a Plan.

No I/O here: the caller fetched the Advoware party (or the adoption candidates) already. Raises
:class:`EntityError` for data that cannot be synced as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from include.beteiligte_sync import baseline, mapping, status
from include.beteiligte_sync import kommunikation as komm
from include.beteiligte_sync.compare import (
    CREATE_PENDING_PREFIX,
    ROW_ID_MAX_LENGTH,
    Comparison,
    baseline_row_id,
    compare,
    has_baseline,
)
from include.beteiligte_sync.errors import EntityError
from include.beteiligte_sync.ops import (
    CreateAdvowareBeteiligte,
    Op,
    PostNote,
    UpdateAdvowareBeteiligte,
    UpdateEspoCrm,
)
from include.beteiligte_sync.options import Direction
from include.beteiligte_sync.plan import Plan
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.status import Outcome
from include.beteiligte_sync.timefmt import format_iso_utc, parse_advoware, parse_iso_utc

DIRECTIONS = tuple(d.value for d in Direction)


def check_direction(direction: str) -> Direction:
    """The direction named ``direction``; ValueError (a caller error, not an entity error)."""
    return Direction.of(direction)


def may_write_advoware(direction: str) -> bool:
    """True if the direction allows writing to Advoware."""
    return direction in (Direction.BOTH, Direction.TO_ADVOWARE)


def may_write_espocrm(direction: str) -> bool:
    """True if the direction allows writing business data to EspoCRM."""
    return direction in (Direction.BOTH, Direction.TO_ESPOCRM)


@dataclass
class Planned:
    """A plan plus what the decision was based on.

    :param blocked: a write was needed that ``direction`` forbids (nothing planned for it).
    :param unresolved: canonical fields that still differ after the plan (equal timestamps on an
        initial sync, or blocked by the direction): the entity must not become clean.
    """

    plan: Plan
    comparison: Comparison | None = None
    blocked: bool = False
    unresolved: tuple[str, ...] = ()
    kommunikation: komm.KommunikationPlan | None = None
    advoware_record: Mapping[str, Any] | None = None


def plan_create(record: Mapping[str, Any], *, direction: str, now: datetime) -> Planned:
    """Plan the create of an EspoCRM entity without betnr in Advoware (+ its Kommunikation)."""
    entity_id = str(record["id"])
    if not may_write_advoware(direction):
        plan = Plan(entity_id, None, Outcome.CREATED.value, direction)
        return Planned(plan, blocked=True)
    canon = mapping.from_espocrm(record)
    mapping.check_fits(canon, "Advoware")
    k = komm.plan_kommunikation(
        dict(record), None, direction=direction, espocrm_wins=False, initial=True
    )
    ops: list[Op] = [
        CreateAdvowareBeteiligte(
            reason="new in EspoCRM", entity_id=entity_id, fields=mapping.to_advoware(canon)
        ),
        *k.advoware_ops,
    ]
    if k.espocrm_fields:
        ops.append(
            UpdateEspoCrm(reason="Kommunikation", entity_id=entity_id, fields=k.espocrm_fields)
        )
    plan = Plan(
        entity_id,
        None,
        Outcome.CREATED.value,
        direction,
        ops=ops,
        initial=True,
        create_pending=create_pending_marker(now, canon.get("name") or ""),
        kommunikation_changes=k.changes,
        warnings=list(k.warnings),
    )
    return Planned(plan, kommunikation=k)


def plan_unchanged(
    record: Mapping[str, Any], advo: Mapping[str, Any], *, direction: str
) -> Planned | None:
    """The plan for a list record (no email and phone arrays) when neither side changed since
    the last sync, else None (the whole record must be read and planned from).

    EspoCRM provably did not change: the record is ``clean`` (the firm's mark-dirty rule makes
    any business change ``dirty``) and its Stammdaten hash equals ``syncedHash``. Advoware did
    not: its ``rowId`` and the hash of its sync-relevant Kommunikationen equal the baselines.
    """
    if status.current_status(record) is not status.SyncStatus.CLEAN or not has_baseline(record):
        return None
    try:
        espo_canon, advo_canon = mapping.from_espocrm(record), mapping.from_advoware(advo)
    except EntityError:
        return None
    if mapping.business_hash(espo_canon) != record.get("syncedHash"):
        return None
    if baseline_row_id(advo.get("rowId")) != record.get("advowareRowId"):
        return None
    kommunikation = advo.get("kommunikation") or []
    if not isinstance(kommunikation, list) or not all(_well_formed(k) for k in kommunikation):
        return None  # the full plan names the problem
    if komm.kommunikation_hash(kommunikation) != record.get("kommunikationHash"):
        return None
    cmp = Comparison(Outcome.NO_CHANGE, False, False, False, (), "baseline")
    plan = Plan(str(record["id"]), int(advo["betNr"]), Outcome.NO_CHANGE.value, direction)
    differing = mapping.differing_fields(espo_canon, advo_canon)
    if differing:
        return None  # the baseline says "same" but the data differ: plan from the whole record
    return Planned(plan, cmp, advoware_record=advo)


def _well_formed(entry: object) -> bool:
    return isinstance(entry, Mapping) and isinstance(entry.get("tlf"), str | None)


def plan_linked(
    record: Mapping[str, Any],
    advo: Mapping[str, Any],
    *,
    direction: str,
    settings: SyncSettings,
    adopted: bool = False,
) -> Planned:
    """Plan the sync of a linked pair (EspoCRM record with betnr, Advoware party).

    ``adopted``: the party was found after an interrupted create; its betnr is written first.
    """
    entity_id, betnr = str(record["id"]), int(advo["betNr"])
    espo_canon, advo_canon = mapping.from_espocrm(record), mapping.from_advoware(advo)
    cmp = compare(
        record, espo_canon, advo, advo_canon, advoware_timezone=settings.advoware_timezone
    )
    if adopted:
        cmp = Comparison.whole(
            Outcome.ESPOCRM_NEWER, True, True, False, cmp.differing, "timestamps"
        )
    stammdaten = _stammdaten_ops(
        entity_id, betnr, cmp, espo_canon, advo_canon, direction, note_initial=not adopted
    )
    k = komm.plan_kommunikation(
        dict(record),
        dict(advo),
        direction=direction,
        espocrm_wins=cmp.outcome is Outcome.CONFLICT,
        initial=cmp.initial,
    )
    espo_fields: dict[str, Any] = {"betnr": betnr} if adopted else {}
    espo_fields.update(stammdaten.espocrm_fields)
    espo_fields.update(k.espocrm_fields)
    if stammdaten.espocrm_fields and not adopted:
        # Our copy of Advoware's values moves the baseline in the same save: a later edit in
        # Advoware is then a change in Advoware, never a conflict with our own write.
        espo_fields[baseline.BASELINE_FIELD] = baseline_after_espocrm_write(
            record, cmp, espo_canon, advo_canon
        )
    ops: list[Op] = []
    # Noted: Stammdaten a person changed in Advoware that EspoCRM overwrites (a conflict, or
    # a first sync in which EspoCRM was newer), and the Kommunikation lines (always a person's).
    conflict = cmp.outcome is Outcome.CONFLICT
    note = overwrite_note(stammdaten.overwritten, k.note_lines, conflict=conflict)
    if note and baseline.read(record).noted == baseline.fingerprint(note):
        note = ""  # this very Note was posted by an earlier attempt that failed after it
    if note:
        # Posted before Advoware is overwritten: if anything fails later, the old values are
        # already on record.
        why = "conflict: espocrm wins" if conflict else "Advoware values overwritten"
        ops.append(PostNote(reason=why, entity_id=entity_id, text=note))
    if espo_fields:
        # EspoCRM before Advoware: a value marker says "this value is on both sides". Were it
        # written first and the run crashed before EspoCRM got the value, the next run would
        # read the value as removed in EspoCRM and empty it (Var2). This way round a crash
        # leaves an unmarked value equal on both sides, which is matched.
        reason = f"{cmp.outcome.value}" if stammdaten.espocrm_fields else "Kommunikation"
        ops.append(
            UpdateEspoCrm(
                reason=reason, entity_id=entity_id, fields=espo_fields, old=stammdaten.espocrm_old
            )
        )
    ops += stammdaten.advoware_ops
    ops += k.advoware_ops
    outcome = Outcome.CREATED if adopted else cmp.outcome
    plan = Plan(
        entity_id,
        betnr,
        outcome.value,
        direction,
        ops=ops,
        initial=cmp.initial,
        kommunikation_changes=k.changes,
        warnings=list(k.warnings),
    )
    if cmp.basis == "baseline_mismatch":
        plan.warnings.append("baseline says unchanged but the data differ: decided by timestamps")
    blocked = stammdaten.blocked or k.blocked
    return Planned(plan, cmp, blocked, stammdaten.unresolved, k, advo)


def baseline_after_espocrm_write(
    record: Mapping[str, Any],
    cmp: Comparison,
    espo: mapping.Canonical,
    advo: mapping.Canonical,
) -> str:
    """``syncBaseline`` once the EspoCRM write of a plan landed: the fields copied from
    Advoware count as synced; what goes to Advoware after it stays pending (see
    :mod:`baseline`). A first sync counts the side that lost as the synced state."""
    synced = baseline.effective(baseline.read(record), advo)
    if synced is None:
        synced = advo if cmp.outcome is Outcome.ESPOCRM_NEWER else espo
    values = dict(synced)
    values.update({name: advo.get(name) for name in cmp.to_espocrm})
    return baseline.render(
        values,
        {name: espo.get(name) for name in cmp.to_advoware},
        before={name: advo.get(name) for name in cmp.to_advoware},
    )


@dataclass
class _Stammdaten:
    advoware_ops: list[Op] = field(default_factory=list)
    espocrm_fields: dict[str, Any] = field(default_factory=dict)
    espocrm_old: dict[str, Any] = field(default_factory=dict)
    overwritten: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    blocked: bool = False
    unresolved: tuple[str, ...] = ()


def _stammdaten_ops(
    entity_id: str,
    betnr: int,
    cmp: Comparison,
    espo: mapping.Canonical,
    advo: mapping.Canonical,
    direction: str,
    *,
    note_initial: bool = True,
) -> _Stammdaten:
    """Per differing field, the write the comparison decided (to Advoware, to EspoCRM). A
    change needing a write ``direction`` forbids blocks the Stammdaten as a whole."""
    names = cmp.differing
    if not names:
        return _Stammdaten()
    to_advoware, to_espocrm = cmp.to_advoware, cmp.to_espocrm
    if (to_advoware and not may_write_advoware(direction)) or (
        to_espocrm and not may_write_espocrm(direction)
    ):
        return _Stammdaten(blocked=True, unresolved=names)
    out = _Stammdaten(unresolved=tuple(n for n in names if n not in (*to_advoware, *to_espocrm)))
    if to_advoware:
        mapping.check_fits(espo, "Advoware")
        out.advoware_ops.append(
            UpdateAdvowareBeteiligte(
                reason=cmp.outcome.value,
                betnr=betnr,
                fields=mapping.to_advoware(espo, to_advoware),
                old=mapping.to_advoware(advo, to_advoware),
            )
        )
        if cmp.initial and note_initial:  # a first sync: what Advoware held and loses
            noted = tuple(n for n in to_advoware if advo.get(n))
        else:
            noted = cmp.conflicting
        out.overwritten = {n: (advo.get(n), espo.get(n)) for n in noted}
    if to_espocrm:
        mapping.check_fits(advo, "EspoCRM")
        out.espocrm_fields = mapping.to_espocrm(advo, to_espocrm)
        out.espocrm_old = mapping.to_espocrm(espo, to_espocrm)
    return out


def overwrite_note(
    overwritten: Mapping[str, tuple[Any, Any]],
    kommunikation_lines: Sequence[str],
    *,
    conflict: bool = True,
) -> str:
    """The stream note that keeps every Advoware value a person typed and the sync overwrote:
    the Stammdaten fields of a conflict (field, old Advoware value, new value) and the
    Kommunikation lines (per-entry conflicts, one-way runs). Empty if nothing was overwritten.

    :param conflict: the entity as a whole was in conflict (changes the heading only).
    """
    if not overwritten and not kommunikation_lines:
        return ""
    if conflict:
        lines = [
            "Sync-Konflikt: EspoCRM gewinnt. Überschriebene Advoware-Werte:",
            "Sync conflict: EspoCRM wins. Advoware values overwritten:",
        ]
    else:
        lines = [
            "Sync: in Advoware geänderte Werte wurden mit EspoCRM-Werten überschrieben:",
            "Sync: values changed in Advoware were overwritten with EspoCRM values:",
        ]
    for name, (old, new) in overwritten.items():
        lines.append(f"- {name}: {_shown(old)} -> {_shown(new)}")
    if kommunikation_lines:
        lines.append("Kommunikation:")
        lines += [f"- {line}" for line in kommunikation_lines]
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return "(leer/empty)" if value in (None, "") else f"'{value}'"


def differences(
    record: Mapping[str, Any],
    advo: Mapping[str, Any],
    *,
    direction: str = "both",
    kommunikation: bool = True,
) -> list[str]:
    """Validation differences (seed #13): every mapped field, then the Kommunikation, as
    ``"<field>: <espocrm> != <advoware>"``. Empty when both sides hold the same data.

    ``direction``: a one-way run checks only that the target holds the source's Kommunikation
    values (a value only on the target side is left alone by design, see kommunikation.py).
    Stammdaten are always compared in full: one record per side, no "extra" values.
    """
    espo_canon, advo_canon = mapping.from_espocrm(record), mapping.from_advoware(advo)
    out = [
        f"{name}: {_plain(espo_canon.get(name))} != {_plain(advo_canon.get(name))}"
        for name in mapping.differing_fields(espo_canon, advo_canon)
    ]
    if not kommunikation:  # a list record: its email and phone arrays are not there to compare
        return out
    return out + list(komm.compare_kommunikation(dict(record), dict(advo), direction=direction))


def _plain(value: Any) -> str:
    return "(empty)" if value in (None, "") else str(value)


def choose_adoption(
    record: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]], *, settings: SyncSettings
) -> Mapping[str, Any] | None:
    """The party an interrupted create left behind, or None if there is none.

    A candidate matches when its mapped fields equal the entity's and its ``geaendertAm`` is not
    older than the create-pending marker (minus the allowed clock skew). Several matches are
    ambiguous: EntityError, a person must decide.
    """
    marker = str(record.get("advowareRowId") or "")
    started = parse_iso_utc(marker.removeprefix(CREATE_PENDING_PREFIX).split("|", 1)[0])
    if started is None:
        return None
    canon = mapping.from_espocrm(record)
    matches = []
    for party in candidates:
        changed = parse_advoware(party.get("geaendertAm"), settings.advoware_timezone)
        if changed is None or changed < started - settings.create_pending_grace:
            continue
        try:
            theirs = mapping.from_advoware(party)
        except EntityError:
            continue
        # Equal to the entity now, or to what was sent (a person may have edited meanwhile).
        same = theirs == canon or mapping.business_hash(theirs) == record.get("syncedHash")
        if same:
            matches.append(party)
    if len(matches) > 1:
        ids = ", ".join(str(p.get("betNr")) for p in matches)
        raise EntityError(
            f"interrupted create: {len(matches)} matching Advoware parties ({ids}); "
            "link the right one by setting betnr"
        )
    return matches[0] if matches else None


def create_pending_marker(now: datetime, name: str = "") -> str:
    """``create-pending:<UTC time>|<name sent>``: a create in Advoware started then and is not
    confirmed. The name lets a later run find the party after a person renamed the entity; it is
    left out where the marker would not fit ``advowareRowId`` (100 characters in the shipped
    entity definition)."""
    marker = f"{CREATE_PENDING_PREFIX}{format_iso_utc(now)}"
    with_name = f"{marker}|{name}"
    return with_name if name and len(with_name) <= ROW_ID_MAX_LENGTH else marker


def pending_name(record: Mapping[str, Any]) -> str | None:
    """The name an interrupted create sent (from the create-pending marker), if recorded."""
    marker = str(record.get("advowareRowId") or "")
    if not marker.startswith(CREATE_PENDING_PREFIX) or "|" not in marker:
        return None
    return marker.split("|", 1)[1] or None


def interrupted_create_message(record: Mapping[str, Any]) -> str:
    """``syncErrorMessage`` of a party whose create may have reached Advoware although no
    answer came back, where Advoware offers no search to find out: a person decides."""
    marker = str(record.get("advowareRowId") or "")
    started = marker.removeprefix(CREATE_PENDING_PREFIX).split("|", 1)[0] or "unknown time"
    return (
        f"Create in Advoware interrupted (started {started}): it may or may not have created "
        "the party, and the sync cannot check that by itself (Advoware offers no party search, "
        "or the entity was renamed since). Look in Advoware for a party named like this one "
        "created since then. If it exists, link it: "
        f"beteiligte link {record.get('id')} --betnr <betNr>. "
        f"If not, allow a new create: beteiligte link {record.get('id')} --create"
    )


def is_create_pending(record: Mapping[str, Any]) -> bool:
    """True if a create in Advoware was started for this record and not confirmed."""
    return str(record.get("advowareRowId") or "").startswith(CREATE_PENDING_PREFIX)
