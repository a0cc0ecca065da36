"""Orchestration: one entity through fetch -> compare -> plan -> lock -> apply -> validate.

The public API the DAGs and the CLI call. Each step costs as few API calls as possible: an
entity with no change costs one Advoware GET and one EspoCRM write (the EspoCRM record comes
from the candidate list); a Stammdaten change costs six (GET, lock, write, and validation's two
reads and final write). The lock is released on every path; nothing half-written is marked
``clean``; only validation (or a no-op comparison of freshly read data) writes ``clean``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from include.beteiligte_sync import baseline, mapping, planner, status
from include.beteiligte_sync import compare as compare_mod
from include.beteiligte_sync import kommunikation as komm
from include.beteiligte_sync.apply import ApplyState, apply_plan
from include.beteiligte_sync.clients import AdvowareClient, EspoCrmClient, Record, WhereItem
from include.beteiligte_sync.errors import ApiError, BadResponse, Conflict, EntityError, NotFound
from include.beteiligte_sync.plan import Plan, render
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.status import OUTCOMES, Outcome, SyncStatus
from include.beteiligte_sync.timefmt import Clock, format_espocrm

__all__ = [
    "OUTCOMES",
    "Clock",
    "EntityResult",
    "Planning",
    "candidate_filters",
    "confirm_deletions",
    "plan_entity",
    "records_by_id",
    "reset_due_permanently_failed",
    "select_candidates",
    "skip_reason",
    "sync_all",
    "sync_entity",
    "sync_unit",
    "validate_entity",
    "validate_written",
]

LOG = logging.getLogger("beteiligte_sync")


@dataclass
class EntityResult:
    """What one step did with one entity (JSON-serialisable via :meth:`to_dict` for XCom).

    :param outcome: one of :data:`OUTCOMES`.
    :param status: ``syncStatus`` written at the end (None if none was written).
    :param error: the message written to ``syncErrorMessage``, if any.
    :param needs_validation: something was written and the lock is still held for validation.
    :param plan_text: the rendered plan, personal values masked.
    """

    entity_id: str
    betnr: int | None
    outcome: str
    status: str | None = None
    error: str | None = None
    needs_validation: bool = False
    plan_text: str = ""
    kommunikation_changes: int = 0
    ops_applied: int = 0
    #: Set while ``needs_validation``: the token of our lock, the EspoCRM ``versionNumber`` our
    #: last write left and the Stammdaten hash EspoCRM holds after our writes. Validation uses
    #: them to tell our own writes from a person's edit made while we held the lock.
    lock_token: str | None = None
    espocrm_version: int | None = None
    expected_hash: str | None = None
    #: Advoware answered 404 a second time: marked at the end of the unit (confirm_deletions)
    confirm_deletion: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for XCom."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EntityResult:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def describe_error(exc: BaseException) -> str:
    """A readable, value-free description for ``syncErrorMessage``."""
    if isinstance(exc, EntityError):
        return str(exc)
    if isinstance(exc, ApiError):
        parts = [type(exc).__name__]
        if exc.request:
            parts.append(exc.request)
        if exc.status is not None:
            parts.append(f"status {exc.status}")
        if exc.reason:
            parts.append(f"reason {exc.reason}")
        text = "API error: " + ", ".join(parts)
        if isinstance(exc, BadResponse) and exc.args:
            text += f" ({exc.args[0]})"  # what was wrong with the answer; never its content
        return text
    return f"internal error: {type(exc).__name__}"


# --- sync ----------------------------------------------------------------------------------------


def sync_entity(
    record: Record,
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    direction: str = "both",
    force: bool = False,
    dry_run: bool = False,
    clock: Clock,
    settings: SyncSettings | None = None,
    validate_inline: bool = False,
    log: logging.Logger = LOG,
) -> EntityResult:
    """Sync one entity; ``record`` is its EspoCRM record as the candidate list returned it.

    Never raises for problems of this entity (they end in its status); raises ValueError for
    an unknown ``direction``.
    """
    planner.check_direction(direction)
    try:
        return _sync_entity(
            record,
            espocrm,
            advoware,
            direction=direction,
            force=force,
            dry_run=dry_run,
            clock=clock,
            settings=settings,
            validate_inline=validate_inline,
            log=log,
        )
    except ApiError as exc:
        return _unrecorded_failure(record, exc, log)


def _unrecorded_failure(
    record: Mapping[str, Any], exc: ApiError, log: logging.Logger
) -> EntityResult:
    """A write that records the outcome failed (API down, token refused): the entity's status
    could not be written. Its lock, if one is held, goes stale after the TTL and is taken over;
    the run goes on with the other entities."""
    entity_id = str(record.get("id"))
    log.error("entity %s: could not record the outcome: %s", entity_id, type(exc).__name__)
    return EntityResult(
        entity_id, record.get("betnr"), Outcome.FAILED.value, error=describe_error(exc)
    )


def _sync_entity(
    record: Record,
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    direction: str,
    force: bool,
    dry_run: bool,
    clock: Clock,
    settings: SyncSettings | None,
    validate_inline: bool,
    log: logging.Logger,
) -> EntityResult:
    settings = settings or SyncSettings()
    now = clock()
    entity_id = str(record["id"])
    skipped = skip_reason(record, now, force, settings)
    if skipped:
        log.info("entity %s: %s", entity_id, skipped.value)
        return EntityResult(entity_id, record.get("betnr"), skipped.value)
    try:
        planning = plan_entity(
            record, espocrm, advoware, direction=direction, now=now, settings=settings
        )
    except NotFound:
        return _not_found(record, espocrm, now, dry_run, settings, log)
    except GoneInEspoCrm as exc:
        log.warning("entity %s: %s", entity_id, exc)
        return EntityResult(entity_id, record.get("betnr"), Outcome.FAILED.value, error=str(exc))
    except Exception as exc:
        # Bad data found while planning, or Advoware unreachable: one failure write.
        if dry_run:
            return EntityResult(
                entity_id, record.get("betnr"), Outcome.DRY_RUN.value, error=describe_error(exc)
            )
        return _fail_unlocked(record, espocrm, exc, now, settings, log)
    if planning.record is not record and status.is_locked(planning.record, now, settings.lock_ttl):
        # The whole record, read after the candidate list, shows another run's live lock.
        log.info("entity %s: %s", entity_id, Outcome.SKIPPED_LOCKED.value)
        return EntityResult(entity_id, record.get("betnr"), Outcome.SKIPPED_LOCKED.value)
    record, planned = planning.record, planning.planned
    plan = planned.plan
    _log_plan(plan, planned, log)
    if dry_run:
        return _result(plan, Outcome.DRY_RUN.value)
    if not plan.ops:
        return _finish_without_ops(planning, now, espocrm, settings, log)
    return _apply_locked(record, planned, espocrm, advoware, clock, settings, validate_inline, log)


def skip_reason(
    record: Mapping[str, Any], now: datetime, force: bool, settings: SyncSettings
) -> Outcome | None:
    """Why the sync leaves ``record`` alone now (a live lock, or backoff unless forced)."""
    if status.is_locked(record, now, settings.lock_ttl):
        return Outcome.SKIPPED_LOCKED  # even a forced run never breaks a live lock
    if not force and status.in_backoff(record, now):
        return Outcome.SKIPPED_BACKOFF
    return None


@dataclass
class Planning:
    """What :func:`plan_entity` decided, and from which EspoCRM record.

    :param record: the EspoCRM record the plan is based on: the whole record (read by id)
        whenever the Kommunikation or a change in EspoCRM matters, else the list record.
    :param planned: the plan and what it was based on.
    :param whole_record: ``record`` carries ``emailAddressData``/``phoneNumberData``. A list
        record does not (EspoCRM fills them only on ``GET /CBeteiligte/{id}``); it is planned
        from only when both sides provably did not change since the last sync.
    """

    record: Record
    planned: planner.Planned
    whole_record: bool = True


class GoneInEspoCrm(EntityError):
    """The EspoCRM record disappeared between the candidate list and its read."""


def is_whole_record(record: Mapping[str, Any]) -> bool:
    """True if ``record`` came from ``GET /CBeteiligte/{id}`` (list records carry no email and
    phone arrays, SPEC §4)."""
    return "emailAddressData" in record and "phoneNumberData" in record


def plan_entity(
    record: Record,
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    direction: str,
    now: datetime,
    settings: SyncSettings,
) -> Planning:
    """The one planning step of the sync, the dry run and the CLI's ``compare``: fetch what the
    decision needs and plan. Writes nothing.

    One Advoware GET for a linked party; the whole EspoCRM record is read only when the list
    record cannot prove that nothing changed. ``NotFound`` from Advoware propagates (the party
    is gone); ``GoneInEspoCrm`` when the EspoCRM record is.
    """
    betnr = record.get("betnr")
    if betnr:
        advo = _checked_party(advoware.get_beteiligte(_checked_betnr(betnr)))
        if not is_whole_record(record):
            unchanged = planner.plan_unchanged(record, advo, direction=direction)
            if unchanged is not None:
                return Planning(record, unchanged, whole_record=False)
            record = _whole(record, espocrm)
        return Planning(
            record, planner.plan_linked(record, advo, direction=direction, settings=settings)
        )
    record = _whole(record, espocrm)
    if planner.is_create_pending(record):
        # A previous run started a create and may have been interrupted after the POST.
        candidates = _adoption_candidates(record, advoware)
        if candidates is None:
            raise EntityError(planner.interrupted_create_message(record))
        found = planner.choose_adoption(record, candidates, settings=settings)
        if found is not None:
            planned = planner.plan_linked(
                record, found, direction=direction, settings=settings, adopted=True
            )
            return Planning(record, planned)
    return Planning(record, planner.plan_create(record, direction=direction, now=now))


def _whole(record: Record, espocrm: EspoCrmClient) -> Record:
    if is_whole_record(record):
        return record
    try:
        return espocrm.get_beteiligte(str(record["id"]))
    except NotFound:
        raise GoneInEspoCrm("the record no longer exists in EspoCRM") from None


def _checked_betnr(betnr: object) -> int:
    """The EspoCRM ``betnr`` as a number (EntityError for anything else)."""
    if isinstance(betnr, bool) or not isinstance(betnr, int | str):
        raise EntityError("betnr is not a number; correct it in EspoCRM")
    try:
        return int(betnr)
    except ValueError:
        raise EntityError("betnr is not a number; correct it in EspoCRM") from None


def _checked_party(party: object) -> Record:
    """The Advoware answer in the shape the planner reads, else a readable EntityError."""
    if not isinstance(party, dict) or not party:
        raise EntityError("Advoware answered the party GET with something that is not a party")
    if isinstance(party.get("betNr"), bool) or not isinstance(party.get("betNr"), int):
        raise EntityError("Advoware party answer has no numeric betNr")
    kommunikation = party.get("kommunikation")
    if kommunikation is not None and not (
        isinstance(kommunikation, list) and all(isinstance(k, dict) for k in kommunikation)
    ):
        raise EntityError("Advoware party answer: kommunikation is not a list of entries")
    return party


def _adoption_candidates(record: Record, advoware: AdvowareClient) -> list[Record] | None:
    """Parties named like the entity now or like the interrupted create sent it; None where
    that cannot be searched: Advoware offers no search (none is confirmed for the real API), or
    the name sent is unknown (too long for the marker) and the entity changed since."""
    canon = mapping.from_espocrm(record)
    sent = planner.pending_name(record)
    if sent is None and mapping.business_hash(canon) != record.get("syncedHash"):
        return None
    found: dict[Any, Record] = {}
    for name in dict.fromkeys(n for n in (canon.get("name"), sent) if n):
        parties = advoware.find_beteiligte(name)
        if parties is None:
            return None
        for party in parties:
            found.setdefault(party.get("betNr"), party)
    return list(found.values())


def _log_plan(plan: Plan, planned: planner.Planned, log: logging.Logger) -> None:
    """One line per entity: INFO when something is to be written, DEBUG when nothing is (a
    scheduled run over thousands of unchanged parties stays quiet; the report counts them)."""
    k = planned.kommunikation
    differing = planned.comparison.differing if planned.comparison else ()
    log.log(
        logging.INFO if plan.ops or differing else logging.DEBUG,
        "entity %s betnr %s: %s, %d ops, Kommunikation changes %d (based on %d sync-relevant of "
        "%d total)%s",
        plan.entity_id,
        plan.betnr,
        plan.outcome,
        len(plan.ops),
        plan.kommunikation_changes,
        k.relevant_count if k else 0,
        k.total_count if k else 0,
        f"; differing fields: {', '.join(differing)}" if differing else "",
    )


def _result(plan: Plan, outcome: str, **kw: Any) -> EntityResult:
    return EntityResult(
        plan.entity_id,
        kw.pop("betnr", plan.betnr),
        outcome,
        plan_text=render(plan),
        kommunikation_changes=plan.kommunikation_changes,
        **kw,
    )


def _not_found(
    record: Record,
    espocrm: EspoCrmClient,
    now: datetime,
    dry_run: bool,
    settings: SyncSettings,
    log: logging.Logger,
) -> EntityResult:
    """Advoware answered 404 for the party's betnr. A 404 is a deletion only when a second
    look in a later run confirms it (a proxy or a wrong base URL answers 404 too): the first
    look records the time and retries like a failure; the second is confirmed at the end of
    its unit (:func:`confirm_deletions`), unless the whole unit looks misrouted."""
    entity_id, betnr = str(record["id"]), int(record["betnr"])
    gone = baseline.read(record).gone
    already = status.current_status(record) is SyncStatus.DELETED_IN_ADVOWARE
    if dry_run:
        text = "deleted_in_advoware" if gone or already else "not found once (404)"
        return EntityResult(entity_id, betnr, Outcome.DRY_RUN.value, plan_text=text)
    if gone or already:
        log.warning("entity %s: Advoware party %s not found again (404)", entity_id, betnr)
        return EntityResult(
            entity_id, betnr, Outcome.DELETED_IN_ADVOWARE.value, confirm_deletion=True
        )
    log.warning("entity %s: Advoware party %s not found (404), looked at again", entity_id, betnr)
    message = (
        f"Advoware answered 404 (not found) for party {betnr}. The next run looks again; if it "
        "is still not found, the entity is marked deleted_in_advoware (nothing is deleted)."
    )
    data = _failure_fields(record, now, message, settings)
    data["syncBaseline"] = baseline.with_gone(record, format_espocrm(now))
    try:
        espocrm.update_beteiligte(entity_id, data, version_number=record.get("versionNumber"))
    except Conflict:
        return EntityResult(entity_id, betnr, Outcome.CHANGED_DURING_SYNC.value)
    return EntityResult(
        entity_id, betnr, Outcome.NOT_FOUND_ONCE.value, status=data["syncStatus"], error=message
    )


def confirm_deletions(
    results: list[EntityResult],
    espocrm: EspoCrmClient,
    *,
    clock: Clock,
    settings: SyncSettings | None = None,
    log: logging.Logger = LOG,
) -> list[EntityResult]:
    """Mark the parties whose 404 a second look confirmed ``deleted_in_advoware`` (nothing is
    deleted anywhere), unless the unit looks misrouted: no party of it could be read from
    Advoware while several were looked at, or more than ``not_found_limit`` (and more than
    half) answered 404. Then none is marked, and the report alerts."""
    settings = settings or SyncSettings()
    pending = [r for r in results if r.confirm_deletion]
    if not pending:
        return results
    not_found = sum(r.confirm_deletion or r.outcome == Outcome.NOT_FOUND_ONCE for r in results)
    readable = any(r.outcome in _ADVOWARE_READ for r in results)
    misrouted = (not readable and len(results) > 1) or (
        not_found > settings.not_found_limit and not_found * 2 > len(results)
    )
    if misrouted:
        log.error(
            "%d of %d parties answered 404 in Advoware: a wrong base URL or route? "
            "None is marked deleted_in_advoware",
            not_found,
            len(results),
        )
    now = clock()
    for result in pending:
        result.confirm_deletion = False
        if misrouted:
            result.outcome = Outcome.NOT_FOUND_UNCONFIRMED.value
            continue
        _confirm_deletion(result, espocrm, now, log)
    return results


#: Outcomes that mean Advoware answered the party GET with a party.
_ADVOWARE_READ = frozenset(
    o.value
    for o in (
        Outcome.NO_CHANGE,
        Outcome.ESPOCRM_NEWER,
        Outcome.ADVOWARE_NEWER,
        Outcome.MERGED,
        Outcome.CONFLICT,
        Outcome.CLEAN,
        Outcome.VALIDATION_FAILED,
    )
)


def _confirm_deletion(
    result: EntityResult, espocrm: EspoCrmClient, now: datetime, log: logging.Logger
) -> None:
    try:
        record = espocrm.get_beteiligte(result.entity_id)
        data = status.deleted(record, now, int(result.betnr or 0))
        espocrm.update_beteiligte(
            result.entity_id, data, version_number=record.get("versionNumber")
        )
    except Conflict:
        result.outcome = Outcome.CHANGED_DURING_SYNC.value
        return
    except ApiError as exc:
        log.error("entity %s: could not mark deleted: %s", result.entity_id, type(exc).__name__)
        result.outcome, result.error = Outcome.FAILED.value, describe_error(exc)
        return
    log.warning(
        "entity %s: Advoware party %s not found twice: marked deleted_in_advoware, nothing deleted",
        result.entity_id,
        result.betnr,
    )
    result.status, result.error = data["syncStatus"], data["syncErrorMessage"]


def _fail_unlocked(
    record: Record,
    espocrm: EspoCrmClient,
    exc: BaseException,
    now: datetime,
    settings: SyncSettings,
    log: logging.Logger,
) -> EntityResult:
    entity_id = str(record["id"])
    message = describe_error(exc)
    log.warning("entity %s: failed before the lock: %s", entity_id, type(exc).__name__)
    data = _failure_fields(record, now, message, settings)
    try:
        espocrm.update_beteiligte(entity_id, data, version_number=record.get("versionNumber"))
    except Conflict:
        return EntityResult(entity_id, record.get("betnr"), Outcome.CHANGED_DURING_SYNC.value)
    except ApiError as write_exc:
        log.error(
            "entity %s: could not record the failure: %s", entity_id, type(write_exc).__name__
        )
        return EntityResult(entity_id, record.get("betnr"), Outcome.FAILED.value, error=message)
    return _failure_result(entity_id, record.get("betnr"), data, Outcome.FAILED)


def _failure_fields(
    record: Mapping[str, Any], now: datetime, message: str, settings: SyncSettings
) -> dict[str, Any]:
    return status.failure(
        record,
        now,
        message,
        ladder=settings.backoff_minutes,
        auto_reset_hours=settings.auto_reset_hours,
    )


def _failure_result(
    entity_id: str, betnr: int | None, data: Mapping[str, Any], outcome: Outcome
) -> EntityResult:
    final = data["syncStatus"]
    if final == SyncStatus.PERMANENTLY_FAILED.value and outcome is Outcome.FAILED:
        outcome = Outcome.PERMANENTLY_FAILED
    return EntityResult(
        entity_id, betnr, outcome.value, status=final, error=data["syncErrorMessage"]
    )


def _finish_without_ops(
    planning: Planning,
    now: datetime,
    espocrm: EspoCrmClient,
    settings: SyncSettings,
    log: logging.Logger,
) -> EntityResult:
    """Nothing to write: one EspoCRM write records the check (clean with fresh baselines), or
    the differences that remain (never clean while the data differ, seed #13)."""
    record, planned = planning.record, planning.planned
    plan, entity_id = planned.plan, str(record["id"])
    if planned.blocked:
        log.info("entity %s: change needs a write direction %s forbids", entity_id, plan.direction)
        return _result(plan, Outcome.SKIPPED_DIRECTION.value)
    advo = _advoware_record(planned)
    diffs = planner.differences(
        record, advo, direction=plan.direction, kommunikation=planning.whole_record
    )
    if diffs:
        message = "Validation failed: " + "; ".join(diffs)
        log.warning("entity %s: data differ without a planned write: %s", entity_id, _names(diffs))
        data = _failure_fields(record, now, message, settings)
        outcome = Outcome.VALIDATION_FAILED
    elif planning.whole_record:
        data = _success_fields(record, advo, now, log, plan.direction)
        outcome = Outcome(plan.outcome)
    else:
        # Planned from the list record because nothing changed: the baselines stay as they are.
        data = status.success(
            record,
            now,
            synced_hash=str(record.get("syncedHash")),
            advoware_row_id=compare_mod.baseline_row_id(advo.get("rowId")),
            baseline_json=baseline.render(mapping.from_espocrm(record)),
        )
        outcome = Outcome(plan.outcome)
    try:
        espocrm.update_beteiligte(entity_id, data, version_number=record.get("versionNumber"))
    except Conflict:
        return _result(plan, Outcome.CHANGED_DURING_SYNC.value)
    return _result(
        plan, outcome.value, status=data["syncStatus"], error=data.get("syncErrorMessage")
    )


def _advoware_record(planned: planner.Planned) -> Mapping[str, Any]:
    if planned.advoware_record is None:  # a create always has ops; this is a programming error
        raise RuntimeError("no Advoware record for an entity without ops")
    return planned.advoware_record


def _names(diffs: Sequence[str]) -> str:
    return ", ".join(d.split(":", 1)[0] for d in diffs)


def _success_fields(
    record: Mapping[str, Any],
    advo: Mapping[str, Any],
    now: datetime,
    log: logging.Logger,
    direction: str = "both",
) -> dict[str, Any]:
    """Fields of a checked success: ``clean`` with fresh baselines. A one-way run that leaves
    differences the other direction would sync writes ``dirty`` instead and keeps the old
    Kommunikation baseline, so the next two-way run plans from the whole record and carries
    them over (a stale ``clean`` would hide them)."""
    kommunikation = advo.get("kommunikation") or []
    new_hash = komm.kommunikation_hash(kommunikation)
    pending = direction != "both" and bool(planner.differences(record, advo, direction="both"))
    if pending:
        log.info("entity %s: one-way run leaves changes for the other direction", record.get("id"))
    elif new_hash != record.get("kommunikationHash"):
        relevant = sum(komm.is_sync_relevant(k) for k in kommunikation)
        log.info(
            "entity %s: Kommunikation hash updated (based on %d sync-relevant of %d total)",
            record.get("id"),
            relevant,
            len(kommunikation),
        )
    values = _checked_values(record, advo)
    fields = status.success(
        record,
        now,
        synced_hash=mapping.business_hash(values),
        advoware_row_id=compare_mod.baseline_row_id(advo.get("rowId")),
        kommunikation_hash=None if pending else new_hash,
        baseline_json=baseline.render(values),
    )
    if pending:
        fields["syncStatus"] = SyncStatus.DIRTY.value
    return fields


def _checked_values(record: Mapping[str, Any], advo: Mapping[str, Any]) -> mapping.Canonical:
    """The per-field baseline after both sides were read: equal fields are synced, the others
    keep what was synced before (our landed writes included), see :mod:`baseline`."""
    return baseline.after_check(
        baseline.read(record), mapping.from_espocrm(record), mapping.from_advoware(advo)
    )


def _baseline_fields(values: mapping.Canonical) -> dict[str, Any]:
    return {"syncedHash": mapping.business_hash(values), "syncBaseline": baseline.render(values)}


def _apply_locked(
    record: Record,
    planned: planner.Planned,
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    clock: Clock,
    settings: SyncSettings,
    validate_inline: bool,
    log: logging.Logger,
) -> EntityResult:
    """Take the lock, apply the plan, release on failure; validation releases on success."""
    plan, entity_id = planned.plan, str(record["id"])
    token = status.new_lock_token()
    lock_fields = status.lock(record, clock(), token)
    if plan.create_pending:
        lock_fields["advowareRowId"] = plan.create_pending
        # What is sent, so a party left by an interrupted create is recognised even after a
        # person's edit (no baseline exists yet; the success overwrites it).
        lock_fields["syncedHash"] = mapping.business_hash(mapping.from_espocrm(record))
    elif planned.comparison is not None and planned.advoware_record is not None:
        lock_fields.update(_lock_baseline(record, planned.comparison, planned.advoware_record))
    try:
        locked = espocrm.update_beteiligte(
            entity_id, lock_fields, version_number=record.get("versionNumber")
        )
    except Conflict:
        log.info("entity %s: lock taken by someone else, skipped", entity_id)
        return _result(plan, Outcome.SKIPPED_LOCKED.value)
    except ApiError as exc:
        return _result(plan, Outcome.FAILED.value, error=describe_error(exc))
    state = ApplyState(betnr=plan.betnr, espocrm_record=locked)
    try:
        apply_plan(plan, espocrm, advoware, state)
    except Exception as exc:  # whatever happened, the lock is released with a failure
        return _release_failed(plan, state, token, espocrm, exc, clock(), settings, log)
    log.info("entity %s: applied %d ops", entity_id, state.ops_applied)
    result = _result(
        plan,
        plan.outcome,
        betnr=state.betnr,
        status=SyncStatus.SYNCING.value,
        needs_validation=True,
        ops_applied=state.ops_applied,
        lock_token=token,
        espocrm_version=state.espocrm_record.get("versionNumber"),
        expected_hash=_expected_hash(record, plan),
    )
    if not validate_inline:
        return result
    return validate_written(
        result, espocrm, advoware, clock=clock, settings=settings, direction=plan.direction, log=log
    )


def validate_written(
    result: EntityResult,
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    clock: Clock,
    settings: SyncSettings | None = None,
    direction: str = "both",
    log: logging.Logger = LOG,
) -> EntityResult:
    """``result`` of a sync step validated now, if it waits for its validation (else as it
    is); the validated result reports what the sync did and the status validation wrote."""
    if not result.needs_validation:
        return result
    validated = validate_entity(
        result.entity_id,
        espocrm,
        advoware,
        clock=clock,
        settings=settings,
        direction=direction,
        written=result,
        log=log,
    )
    validated.plan_text, validated.ops_applied = result.plan_text, result.ops_applied
    validated.kommunikation_changes = result.kommunikation_changes
    if validated.outcome == Outcome.CLEAN.value:
        validated.outcome = result.outcome  # report what was done; status says it is clean
    return validated


def _lock_baseline(
    record: Mapping[str, Any], cmp: compare_mod.Comparison, advo: Mapping[str, Any]
) -> dict[str, Any]:
    """The baseline the lock write records: the values synced so far, and as ``pending`` what
    is about to be written to Advoware. A run that dies after the write finds Advoware holding
    the pending values and knows they are ours. On a first sync the side that lost counts as
    the synced state, so a retry keeps the decision the timestamps made before any write of
    ours moved ``modifiedAt``."""
    try:
        espo, advo_canon = mapping.from_espocrm(record), mapping.from_advoware(advo)
    except EntityError:
        return {}
    synced = baseline.effective(baseline.read(record), advo_canon)
    if synced is None:
        if cmp.outcome is Outcome.ESPOCRM_NEWER:
            synced = advo_canon
        elif cmp.outcome is Outcome.ADVOWARE_NEWER:
            synced = espo
        else:
            return {}
    pending = {name: espo.get(name) for name in cmp.to_advoware}
    return {"syncBaseline": baseline.render(synced, pending)}


def _expected_hash(record: Mapping[str, Any], plan: Plan) -> str | None:
    """The Stammdaten hash EspoCRM holds once the plan's EspoCRM writes landed."""
    try:
        return mapping.business_hash(
            mapping.from_espocrm({**record, **plan.espocrm_fields_written()})
        )
    except EntityError:
        return None


def _release_failed(
    plan: Plan,
    state: ApplyState,
    token: str,
    espocrm: EspoCrmClient,
    exc: BaseException,
    now: datetime,
    settings: SyncSettings,
    log: logging.Logger,
) -> EntityResult:
    """Release our lock with a failure, after checking it is still ours (a lock that outlived
    its TTL may have been taken over: then the new holder's record is left alone)."""
    message = describe_error(exc)
    log.warning(
        "entity %s: apply failed (%s), releasing the lock", plan.entity_id, type(exc).__name__
    )
    try:
        current = espocrm.get_beteiligte(plan.entity_id)
        if not status.holds_lock(current, token):
            log.warning("entity %s: lock taken over meanwhile, not released", plan.entity_id)
            return _result(plan, Outcome.CHANGED_DURING_SYNC.value, error=message)
        data = _failure_fields(current, now, message, settings)
        if plan.create_pending and not current.get("betnr"):
            if state.betnr is not None:
                # The create answered, recording its betnr did not: record it now, with the
                # baseline of what was sent (the rowId follows at the next success).
                data.update(betnr=state.betnr, advowareRowId=None, syncedHash=state.created_hash)
                if state.created_values is not None:
                    data["syncBaseline"] = baseline.render(state.created_values)
            elif definitely_not_done(exc):
                # Advoware refused the create outright: nothing was created, so the next run
                # may create again without asking a person first.
                data.update(advowareRowId=None, syncedHash=None)
        if state.noted and "syncBaseline" not in data:
            noted = baseline.with_noted(current, state.noted)
            if noted is not None:
                data["syncBaseline"] = noted
        espocrm.update_beteiligte(plan.entity_id, data, version_number=current.get("versionNumber"))
    except Exception as write_exc:  # the stale-lock TTL heals this one
        log.error(
            "entity %s: could not release the lock: %s", plan.entity_id, type(write_exc).__name__
        )
        return _result(plan, Outcome.FAILED.value, error=message)
    res = _failure_result(plan.entity_id, current.get("betnr") or plan.betnr, data, Outcome.FAILED)
    res.plan_text, res.kommunikation_changes = render(plan), plan.kommunikation_changes
    return res


def definitely_not_done(exc: BaseException) -> bool:
    """True if the server answered the write with a refusal (4xx other than a timeout or rate
    limit): it did not carry it out. Timeouts, resets and 5xx leave it open."""
    if isinstance(exc, EntityError):
        return True
    if isinstance(exc, ApiError) and exc.status is not None:
        return 400 <= exc.status < 500 and exc.status not in (408, 429)
    return False


# --- validate ------------------------------------------------------------------------------------


def validate_entity(
    entity_id: str,
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    clock: Clock,
    settings: SyncSettings | None = None,
    direction: str = "both",
    written: EntityResult | None = None,
    log: logging.Logger = LOG,
) -> EntityResult:
    """Round-trip check after a write (seed #13), its own step so a DAG runs it as a task.

    Re-reads both sides and compares every mapped field and the Kommunikation. Equal: ``clean``
    with fresh baselines (this releases the lock). Different: ``failed`` + backoff with
    ``"Validation failed: <field>: <espocrm> != <advoware>"``. Only the field names are logged.
    ``direction`` is the sync run's: a one-way run leaves values that exist only on its target
    side alone, so validation checks only that the target holds the source's Kommunikation.
    ``written`` is the sync step's result (lock token, version and hash after our writes):
    validation writes nothing unless the lock is still ours, and a person's edit made while we
    held the lock is left ``dirty`` for the next run instead of being validated away.
    """
    planner.check_direction(direction)
    try:
        return _validate_entity(
            entity_id, espocrm, advoware, clock, settings, direction, written, log
        )
    except ApiError as exc:
        return _unrecorded_failure({"id": entity_id}, exc, log)


def _validate_entity(
    entity_id: str,
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    clock: Clock,
    settings: SyncSettings | None,
    direction: str,
    written: EntityResult | None,
    log: logging.Logger,
) -> EntityResult:
    settings = settings or SyncSettings()
    record = espocrm.get_beteiligte(entity_id)
    betnr = record.get("betnr")
    now = clock()
    token = written.lock_token if written else None
    if not status.holds_lock(record, token):
        # A takeover after a stale lock, or (without a token) a person's edit meanwhile.
        log.warning("entity %s: our lock is gone at validation, left to its holder", entity_id)
        return EntityResult(entity_id, betnr, Outcome.CHANGED_DURING_SYNC.value)
    age = status.lock_age(record, now)
    if age is not None and age >= settings.lock_ttl:
        log.warning("entity %s: validated after the lock's TTL (still ours)", entity_id)
    try:
        if not betnr:
            raise EntityError("Validation failed: no betnr after the sync")
        advo = _checked_party(advoware.get_beteiligte(_checked_betnr(betnr)))
        if _edited_during_lock(record, written):
            return _release_edited(record, advo, written, espocrm, log)
        diffs = planner.differences(record, advo, direction=direction)
    except NotFound:
        return _not_found(record, espocrm, now, False, settings, log)
    except Exception as exc:
        return _write_validation(
            record,
            espocrm,
            _failure_fields(record, now, describe_error(exc), settings),
            Outcome.FAILED,
            log,
        )
    if diffs:
        log.warning("entity %s: validation failed for %s", entity_id, _names(diffs))
        message = "Validation failed: " + "; ".join(diffs)
        data = _failure_fields(record, now, message, settings)
        values = _checked_values(record, advo)
        data.update(_baseline_fields(values))
        noted = baseline.read(record).noted  # the same conflict next time: not noted again
        if noted:
            data["syncBaseline"] = baseline.render(values, noted=noted)
        return _write_validation(record, espocrm, data, Outcome.VALIDATION_FAILED, log)
    return _write_validation(
        record, espocrm, _success_fields(record, advo, now, log, direction), Outcome.CLEAN, log
    )


def _edited_during_lock(record: Mapping[str, Any], written: EntityResult | None) -> bool:
    """True if a person changed business data while we held the lock.

    The firm's mark-dirty rule also fires on our own writes (SPEC §4), so ``dirty`` alone says
    nothing: it is a person's edit when someone else saved the record after our last write
    (its ``versionNumber`` moved) and the Stammdaten or the status show a business change."""
    if status.current_status(record) is not SyncStatus.DIRTY:
        return False
    if written is None or written.espocrm_version is None:
        return True
    return record.get("versionNumber") != written.espocrm_version


def _release_edited(
    record: Record,
    advo: Mapping[str, Any],
    written: EntityResult | None,
    espocrm: EspoCrmClient,
    log: logging.Logger,
) -> EntityResult:
    """A person edited the record while we held the lock: release it and leave the record
    ``dirty`` so the next run syncs the edit. The baseline moves to what our writes left (our
    own writes must not look like a person's change next time)."""
    entity_id, betnr = str(record["id"]), record.get("betnr")
    log.info("entity %s: edited while locked, left dirty for the next run", entity_id)
    data = status.release(record)
    try:
        values = _checked_values(record, advo)
        data.update(_baseline_fields(values))
        if mapping.from_advoware(advo) == values:  # Advoware holds what was synced
            data["advowareRowId"] = compare_mod.baseline_row_id(advo.get("rowId"))
    except EntityError:
        pass  # unreadable values: the next run's plan names them
    try:
        espocrm.update_beteiligte(entity_id, data, version_number=record.get("versionNumber"))
    except Conflict:
        log.info("entity %s: changed again during validation, left for the next run", entity_id)
    return EntityResult(entity_id, betnr, Outcome.CHANGED_DURING_SYNC.value, status="dirty")


def _write_validation(
    record: Record,
    espocrm: EspoCrmClient,
    data: Mapping[str, Any],
    outcome: Outcome,
    log: logging.Logger,
) -> EntityResult:
    entity_id, betnr = str(record["id"]), record.get("betnr")
    try:
        espocrm.update_beteiligte(entity_id, data, version_number=record.get("versionNumber"))
    except Conflict:
        log.info("entity %s: changed during validation, left for the next run", entity_id)
        return EntityResult(entity_id, betnr, Outcome.CHANGED_DURING_SYNC.value)
    if outcome is Outcome.CLEAN:
        return EntityResult(entity_id, betnr, outcome.value, status=data["syncStatus"])
    return _failure_result(entity_id, betnr, data, outcome)


# --- runs ----------------------------------------------------------------------------------------


def reset_due_permanently_failed(
    espocrm: EspoCrmClient, *, clock: Clock, settings: SyncSettings | None = None
) -> list[str]:
    """Give ``permanently_failed`` entities whose ``syncAutoResetAt`` has passed another chance
    (status ``failed``, retry count 0; seed #12). Returns the ids reset."""
    now = clock()
    where: list[WhereItem] = [
        {"type": "equals", "attribute": "syncStatus", "value": SyncStatus.PERMANENTLY_FAILED.value},
        {
            "type": "or",
            "value": [
                {"type": "before", "attribute": "syncAutoResetAt", "value": format_espocrm(now)},
                {"type": "isNull", "attribute": "syncAutoResetAt"},
            ],
        },
    ]
    select = ["id", "syncStatus", "syncAutoResetAt", "versionNumber"]
    # Collected first: writing while paging through the same filter would skip records.
    due = [r for r in espocrm.iter_beteiligte(where, select=select) if status.reset_due(r, now)]
    done = []
    for record in due:
        try:
            espocrm.update_beteiligte(
                str(record["id"]), status.reset(record), version_number=record.get("versionNumber")
            )
        except Conflict:
            continue  # changed meanwhile; the next run looks again
        done.append(str(record["id"]))
    LOG.info("auto-reset %d permanently_failed entities", len(done))
    return done


def candidate_filters(*, clock: Clock, settings: SyncSettings | None = None) -> list[WhereItem]:
    """Server-side ``where`` of the scheduled run: new, changed, failed with backoff over, and
    stale locks. (Clean entities are re-checked separately, oldest check first.)"""
    settings = settings or SyncSettings()
    now = clock()
    stale_before = format_espocrm(now - settings.lock_ttl)

    def due(attribute: str, before: str) -> WhereItem:
        return {
            "type": "or",
            "value": [
                {"type": "isNull", "attribute": attribute},
                {"type": "before", "attribute": attribute, "value": before},
            ],
        }

    def status_is(value: SyncStatus) -> WhereItem:
        return {"type": "equals", "attribute": "syncStatus", "value": value.value}

    return [
        {
            "type": "or",
            "value": [
                {"type": "in", "attribute": "syncStatus", "value": ["pending_sync", "dirty"]},
                {
                    "type": "and",
                    "value": [
                        status_is(SyncStatus.FAILED),
                        due("syncNextRetry", format_espocrm(now)),
                    ],
                },
                {
                    "type": "and",
                    "value": [status_is(SyncStatus.SYNCING), due("syncLockedAt", stale_before)],
                },
            ],
        }
    ]


def clean_filters() -> list[WhereItem]:
    """``where`` of the clean entities re-checked for changes made in Advoware."""
    return [{"type": "equals", "attribute": "syncStatus", "value": SyncStatus.CLEAN.value}]


def select_candidates(
    espocrm: EspoCrmClient,
    *,
    clock: Clock,
    settings: SyncSettings | None = None,
    entity_ids: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[Record]:
    """The EspoCRM records one run works on.

    With ``entity_ids`` (manual run): exactly those, in that order. Otherwise the candidates of
    :func:`candidate_filters` (oldest change first) plus a bounded share of ``clean`` entities
    not checked for the longest time.
    """
    settings = settings or SyncSettings()
    if entity_ids:
        where: list[WhereItem] = [{"type": "in", "attribute": "id", "value": list(entity_ids)}]
        found = {str(r["id"]): r for r in espocrm.iter_beteiligte(where)}
        return [found[i] for i in entity_ids if i in found]
    if limit is not None:
        clean_quota = int(limit * settings.clean_share)
        work_limit: int | None = limit - clean_quota
    else:
        clean_quota, work_limit = settings.clean_batch, None
    work = list(
        espocrm.iter_beteiligte(
            candidate_filters(clock=clock, settings=settings),
            order_by="modifiedAt",
            order="asc",
            limit=work_limit,
        )
    )
    if work_limit is not None:
        clean_quota += work_limit - len(work)  # unused capacity goes to the re-checks
    if clean_quota <= 0:
        return work
    clean = espocrm.iter_beteiligte(
        clean_filters(), order_by="advowareLastSync", order="asc", limit=clean_quota
    )
    return work + list(clean) + _deleted_to_recheck(espocrm, clock(), settings)


def _deleted_to_recheck(
    espocrm: EspoCrmClient, now: datetime, settings: SyncSettings
) -> list[Record]:
    """A few ``deleted_in_advoware`` parties not looked at for days: one restored in Advoware
    comes back."""
    if settings.deleted_recheck_batch <= 0:
        return []
    before = format_espocrm(now - timedelta(days=settings.deleted_recheck_days))
    where: list[WhereItem] = [
        {
            "type": "equals",
            "attribute": "syncStatus",
            "value": SyncStatus.DELETED_IN_ADVOWARE.value,
        },
        {
            "type": "or",
            "value": [
                {"type": "isNull", "attribute": "advowareLastSync"},
                {"type": "before", "attribute": "advowareLastSync", "value": before},
            ],
        },
    ]
    return list(
        espocrm.iter_beteiligte(
            where, order_by="advowareLastSync", order="asc", limit=settings.deleted_recheck_batch
        )
    )


def sync_all(
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    clock: Clock,
    settings: SyncSettings | None = None,
    direction: str = "both",
    force: bool = False,
    dry_run: bool = False,
    entity_ids: Sequence[str] | None = None,
    limit: int | None = None,
    log: logging.Logger = LOG,
) -> list[EntityResult]:
    """A whole run in one loop (CLI, benchmark): reset, select, sync and validate each entity."""
    planner.check_direction(direction)
    settings = settings or SyncSettings()
    if not dry_run:
        reset_due_permanently_failed(espocrm, clock=clock, settings=settings)
    results = []
    for record in select_candidates(
        espocrm, clock=clock, settings=settings, entity_ids=entity_ids, limit=limit
    ):
        results.append(
            sync_entity(
                record,
                espocrm,
                advoware,
                direction=direction,
                force=force,
                dry_run=dry_run,
                clock=clock,
                settings=settings,
                validate_inline=True,
                log=log,
            )
        )
    return confirm_deletions(results, espocrm, clock=clock, settings=settings, log=log)


#: Ids per list call when a unit fetches its records (EspoCRM's maxSize limit; the hook cuts
#: the ``in`` filter further where the request line would be too long).
UNIT_PAGE = 200


def records_by_id(espocrm: EspoCrmClient, entity_ids: Sequence[str]) -> dict[str, Record]:
    """The list records of ``entity_ids``, one list call per :data:`UNIT_PAGE` ids."""
    found: dict[str, Record] = {}
    for start in range(0, len(entity_ids), UNIT_PAGE):
        where: list[WhereItem] = [
            {"type": "in", "attribute": "id", "value": list(entity_ids[start : start + UNIT_PAGE])}
        ]
        found.update((str(r["id"]), r) for r in espocrm.iter_beteiligte(where))
    return found


def sync_unit(
    entity_ids: Sequence[str],
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    clock: Clock,
    settings: SyncSettings | None = None,
    direction: str = "both",
    force: bool = False,
    dry_run: bool = False,
    validate_inline: bool = False,
    log: logging.Logger = LOG,
) -> list[EntityResult]:
    """One work unit, the way every run works: fetch the records page by page, sync each.

    The DAG's mapped ``sync`` task, the CLI and the benchmark all run this. Written entities
    wait, locked, for their validation (``validate_inline`` does it right after each write).
    A unit that runs long (a third of the lock TTL) validates what it wrote so far at once and
    every later entity right after its write, so no lock it holds runs past its TTL unnoticed.
    """
    planner.check_direction(direction)
    settings = settings or SyncSettings()
    started = time.monotonic()
    results: list[EntityResult] = []
    for start in range(0, len(entity_ids), UNIT_PAGE):
        page = list(entity_ids[start : start + UNIT_PAGE])
        records = records_by_id(espocrm, page)
        for entity_id in page:
            record = records.pop(entity_id, None)
            if record is None:
                log.warning("entity %s: not found in EspoCRM", entity_id)
                results.append(
                    EntityResult(
                        entity_id, None, Outcome.FAILED.value, error="not found in EspoCRM"
                    )
                )
                continue
            late = time.monotonic() - started > settings.lock_ttl.total_seconds() / 3
            if late and not validate_inline:
                validate_inline = True
                results = [
                    validate_written(
                        r,
                        espocrm,
                        advoware,
                        clock=clock,
                        settings=settings,
                        direction=direction,
                        log=log,
                    )
                    for r in results
                ]
            results.append(
                sync_entity(
                    record,
                    espocrm,
                    advoware,
                    direction=direction,
                    force=force,
                    dry_run=dry_run,
                    clock=clock,
                    settings=settings,
                    validate_inline=validate_inline,
                    log=log,
                )
            )
    return confirm_deletions(results, espocrm, clock=clock, settings=settings, log=log)
