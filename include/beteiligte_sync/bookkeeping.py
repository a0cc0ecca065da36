"""The EspoCRM writes that record an outcome: failures with backoff, checked successes
with fresh baselines, Advoware's 404s (confirmed on a second look).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from include.beteiligte_sync import baseline, mapping, planner, status
from include.beteiligte_sync import compare as compare_mod
from include.beteiligte_sync import kommunikation as komm
from include.beteiligte_sync.clients import EspoCrmClient, Record
from include.beteiligte_sync.errors import ApiError, Conflict
from include.beteiligte_sync.results import LOG, EntityResult, describe_error
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.status import Outcome, SyncStatus
from include.beteiligte_sync.timefmt import Clock, format_espocrm


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
    fields[komm.SYNCED_VALUES_FIELD] = komm.synced_values_baseline(record, advo)
    if pending:
        fields["syncStatus"] = SyncStatus.DIRTY.value
    return fields


def _checked_values(
    record: Mapping[str, Any], advo: Mapping[str, Any], *, landed: bool = False
) -> mapping.Canonical:
    """The per-field baseline after both sides were read: equal fields are synced, the others
    keep what was synced before (our landed writes included), see :mod:`baseline`."""
    return baseline.after_check(
        baseline.read(record),
        mapping.from_espocrm(record),
        mapping.from_advoware(advo),
        landed=landed,
    )


def _baseline_fields(values: mapping.Canonical) -> dict[str, Any]:
    return {"syncedHash": mapping.business_hash(values), "syncBaseline": baseline.render(values)}


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
