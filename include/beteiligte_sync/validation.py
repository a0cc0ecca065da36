"""The round-trip check after a write (seed #13), its own step so a DAG runs it as a task."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from include.beteiligte_sync import baseline, mapping, planner, status
from include.beteiligte_sync import compare as compare_mod
from include.beteiligte_sync import kommunikation as komm
from include.beteiligte_sync.bookkeeping import (
    _baseline_fields,
    _checked_values,
    _failure_fields,
    _names,
    _not_found,
    _success_fields,
    _write_validation,
)
from include.beteiligte_sync.clients import AdvowareClient, EspoCrmClient, Record
from include.beteiligte_sync.errors import ApiError, Conflict, EntityError, NotFound
from include.beteiligte_sync.options import SyncContext
from include.beteiligte_sync.prepare import _checked_betnr, _checked_party
from include.beteiligte_sync.results import LOG, EntityResult, _unrecorded_failure, describe_error
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.status import Outcome, SyncStatus
from include.beteiligte_sync.timefmt import Clock


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
    validated.kommunikation_changes, validated.warnings = (
        result.kommunikation_changes,
        result.warnings,
    )
    if validated.outcome == Outcome.CLEAN.value:
        validated.outcome = result.outcome  # report what was done; status says it is clean
    return validated


def validate_in(result: EntityResult, ctx: SyncContext, direction: str) -> EntityResult:
    """:func:`validate_written` with what a run works with (its :class:`SyncContext`)."""
    return validate_written(
        result,
        ctx.espocrm,
        ctx.advoware,
        clock=ctx.clock,
        settings=ctx.settings,
        direction=direction,
        log=ctx.log,
    )


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
    # The sync step applied its whole plan (it waits for this check): our writes landed.
    landed = written is not None and written.needs_validation
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
        data = _failure_fields(record, now, describe_error(exc), settings)
        promoted = baseline.promote(record) if landed else None
        if promoted is not None:  # our write succeeded: its values are synced
            data["syncBaseline"] = promoted
        return _write_validation(record, espocrm, data, Outcome.FAILED, log)
    if diffs:
        log.warning("entity %s: validation failed for %s", entity_id, _names(diffs))
        message = "Validation failed: " + "; ".join(diffs)
        data = _failure_fields(record, now, message, settings)
        values = _checked_values(record, advo, landed=landed)
        data.update(_baseline_fields(values))
        noted = baseline.read(record).noted  # the same conflict next time: not noted again
        if noted:
            data["syncBaseline"] = baseline.render(values, noted=noted)
        data[komm.SYNCED_VALUES_FIELD] = komm.synced_values_baseline(record, advo)
        return _write_validation(record, espocrm, data, Outcome.VALIDATION_FAILED, log)
    data = _success_fields(record, advo, now, log, direction)
    if written is not None and written.warnings:
        # What the sync noticed and mended (a damaged marker, ...): said on the party.
        data["syncErrorMessage"] = ("Warning: " + "; ".join(written.warnings))[:2000]
    return _write_validation(record, espocrm, data, Outcome.CLEAN, log)


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
        values = _checked_values(record, advo, landed=written is not None)
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
