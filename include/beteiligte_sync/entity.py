"""One entity through fetch -> compare -> plan -> lock -> apply -> validate.

Each step costs as few API calls as possible: an unchanged party costs one Advoware GET and one
EspoCRM write (planned from the candidate list's record); a changed one reads its whole record
first, then GET, lock, write, and validation's two reads and final write. The lock is released
on every path; nothing half-written is marked ``clean``; only validation (or a no-op comparison
of freshly read data) writes ``clean``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from include.beteiligte_sync import baseline, mapping, planner, status
from include.beteiligte_sync import compare as compare_mod
from include.beteiligte_sync.apply import ApplyState, apply_plan
from include.beteiligte_sync.bookkeeping import (
    _fail_unlocked,
    _failure_fields,
    _failure_result,
    _names,
    _not_found,
    _success_fields,
)
from include.beteiligte_sync.clients import AdvowareClient, EspoCrmClient, Record
from include.beteiligte_sync.errors import ApiError, Conflict, EntityError, NotFound
from include.beteiligte_sync.options import RunOptions, SyncContext
from include.beteiligte_sync.plan import Plan, render
from include.beteiligte_sync.prepare import GoneInEspoCrm, Planning, plan_entity, skip_reason
from include.beteiligte_sync.results import (
    LOG,
    EntityResult,
    _result,
    _unrecorded_failure,
    describe_error,
)
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.status import Outcome, SyncStatus
from include.beteiligte_sync.timefmt import Clock
from include.beteiligte_sync.validation import validate_in


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
    options: RunOptions | None = None,
) -> EntityResult:
    """Sync one entity; ``record`` is its EspoCRM record as the candidate list returned it.

    ``options`` (or ``direction``, ``force``, ``dry_run``) say what to do. Never raises for
    problems of this entity (they end in its status); raises ValueError for an unknown
    ``direction``.
    """
    options = options or RunOptions.of(direction, force=force, dry_run=dry_run)
    ctx = SyncContext(espocrm, advoware, clock, settings or SyncSettings(), log)
    try:
        return _sync_entity(record, ctx, options, validate_inline)
    except ApiError as exc:
        return _unrecorded_failure(record, exc, log)


def _sync_entity(
    record: Record, ctx: SyncContext, options: RunOptions, validate_inline: bool
) -> EntityResult:
    now, log, settings = ctx.clock(), ctx.log, ctx.settings
    entity_id = str(record["id"])
    skipped = skip_reason(record, now, options.force, settings)
    if skipped:
        log.info("entity %s: %s", entity_id, skipped.value)
        return EntityResult(entity_id, record.get("betnr"), skipped.value)
    try:
        planning = plan_entity(
            record,
            ctx.espocrm,
            ctx.advoware,
            direction=options.direction,
            now=now,
            settings=settings,
        )
    except NotFound:
        return _not_found(record, ctx.espocrm, now, options.dry_run, settings, log)
    except GoneInEspoCrm as exc:
        log.warning("entity %s: %s", entity_id, exc)
        return EntityResult(entity_id, record.get("betnr"), Outcome.FAILED.value, error=str(exc))
    except Exception as exc:
        # Bad data found while planning, or Advoware unreachable: one failure write.
        if options.dry_run:
            return EntityResult(
                entity_id, record.get("betnr"), Outcome.DRY_RUN.value, error=describe_error(exc)
            )
        return _fail_unlocked(record, ctx.espocrm, exc, now, settings, log)
    if planning.record is not record and status.is_locked(planning.record, now, settings.lock_ttl):
        # The whole record, read after the candidate list, shows another run's live lock.
        log.info("entity %s: %s", entity_id, Outcome.SKIPPED_LOCKED.value)
        return EntityResult(entity_id, record.get("betnr"), Outcome.SKIPPED_LOCKED.value)
    planned = planning.planned
    _log_plan(planned.plan, planned, log)
    if options.dry_run:
        return _result(planned.plan, Outcome.DRY_RUN.value)
    if not planned.plan.ops:
        return _finish_without_ops(planning, now, ctx)
    return _apply_locked(planning.record, planned, ctx, validate_inline)


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


def _finish_without_ops(planning: Planning, now: datetime, ctx: SyncContext) -> EntityResult:
    """Nothing to write: one EspoCRM write records the check (clean with fresh baselines), or
    the differences that remain (never clean while the data differ, seed #13)."""
    record, planned = planning.record, planning.planned
    plan, entity_id = planned.plan, str(record["id"])
    espocrm, settings, log = ctx.espocrm, ctx.settings, ctx.log
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


def _apply_locked(
    record: Record, planned: planner.Planned, ctx: SyncContext, validate_inline: bool
) -> EntityResult:
    """Take the lock, apply the plan, release on failure; validation releases on success."""
    plan, entity_id = planned.plan, str(record["id"])
    token = status.new_lock_token()
    lock_fields = status.lock(record, ctx.clock(), token)
    if plan.create_pending:
        lock_fields["advowareRowId"] = plan.create_pending
        # What is sent, so a party left by an interrupted create is recognised even after a
        # person's edit (no baseline exists yet; the success overwrites it).
        lock_fields["syncedHash"] = mapping.business_hash(mapping.from_espocrm(record))
    elif planned.comparison is not None and planned.advoware_record is not None:
        lock_fields.update(_lock_baseline(record, planned.comparison, planned.advoware_record))
    try:
        locked = ctx.espocrm.update_beteiligte(
            entity_id, lock_fields, version_number=record.get("versionNumber")
        )
    except Conflict:
        ctx.log.info("entity %s: lock taken by someone else, skipped", entity_id)
        return _result(plan, Outcome.SKIPPED_LOCKED.value)
    except ApiError as exc:
        return _result(plan, Outcome.FAILED.value, error=describe_error(exc))
    state = ApplyState(betnr=plan.betnr, espocrm_record=locked)
    try:
        apply_plan(plan, ctx.espocrm, ctx.advoware, state)
    except Exception as exc:  # whatever happened, the lock is released with a failure
        return _release_failed(plan, state, token, exc, ctx)
    ctx.log.info("entity %s: applied %d ops", entity_id, state.ops_applied)
    result = _result(
        plan,
        plan.outcome,
        betnr=state.betnr,
        status=SyncStatus.SYNCING.value,
        needs_validation=True,
        ops_applied=state.ops_applied,
        lock_token=token,
        espocrm_version=state.espocrm_record.get("versionNumber"),
    )
    if not validate_inline:
        return result
    return validate_in(result, ctx, plan.direction)


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
    before = {name: advo_canon.get(name) for name in cmp.to_advoware}
    return {"syncBaseline": baseline.render(synced, pending, before=before)}


def _release_failed(
    plan: Plan, state: ApplyState, token: str, exc: BaseException, ctx: SyncContext
) -> EntityResult:
    """Release our lock with a failure, after checking it is still ours (a lock that outlived
    its TTL may have been taken over: then the new holder's record is left alone)."""
    espocrm, settings, log, now = ctx.espocrm, ctx.settings, ctx.log, ctx.clock()
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
        if state.advoware_party_written and "syncBaseline" not in data:
            promoted = baseline.promote(current)  # our Advoware write landed: synced
            if promoted is not None:
                data["syncBaseline"] = promoted
                current = {**current, "syncBaseline": promoted}
        if state.noted:
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
