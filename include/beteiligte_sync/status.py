"""The status machine of ``syncStatus`` (SPEC §6) and the outcomes of a sync step.

Every change of an entity's sync bookkeeping goes through the pure functions here: they check
that the transition is allowed and return the EspoCRM field dict to write. Nothing else in the
engine writes ``syncStatus``, ``syncRetryCount``, ``syncNextRetry`` or ``syncLockedAt``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from include.beteiligte_sync.timefmt import format_espocrm, parse_espocrm

#: Backoff ladder in minutes (seed #12): the n-th failure waits BACKOFF_MINUTES[n-1].
BACKOFF_MINUTES: tuple[int, ...] = (1, 5, 15, 60, 240)
#: A ``permanently_failed`` entity gets another chance after this many hours (seed #12).
AUTO_RESET_HOURS = 24
#: A lock older than this is stale and may be taken over.
LOCK_TTL = timedelta(minutes=15)
#: EspoCRM field holding the token of the current lock holder (SPEC §6).
LOCK_TOKEN_FIELD = "syncLockToken"
#: syncErrorMessage is for a person; keep it readable in the EspoCRM UI.
_MESSAGE_LIMIT = 2000


class SyncStatus(StrEnum):
    """Values of the EspoCRM field ``syncStatus``."""

    PENDING_SYNC = "pending_sync"
    DIRTY = "dirty"
    SYNCING = "syncing"
    CLEAN = "clean"
    FAILED = "failed"
    PERMANENTLY_FAILED = "permanently_failed"
    CONFLICT = "conflict"
    DELETED_IN_ADVOWARE = "deleted_in_advoware"


class Outcome(StrEnum):
    """What one sync or validate step did with one entity (the run report counts these)."""

    CREATED = "created"
    ESPOCRM_NEWER = "espocrm_newer"  # Advoware updated from EspoCRM
    ADVOWARE_NEWER = "advoware_newer"  # EspoCRM updated from Advoware
    CONFLICT = "conflict"  # both changed; EspoCRM won, Advoware values noted
    MERGED = "merged"  # each side changed other fields; each copied to the other side
    NO_CHANGE = "no_change"
    DELETED_IN_ADVOWARE = "deleted_in_advoware"
    NOT_FOUND_ONCE = "not_found_once"  # first 404: a second look in a later run decides
    NOT_FOUND_UNCONFIRMED = "not_found_unconfirmed"  # 404 again, but so many: nothing marked
    FAILED = "failed"
    PERMANENTLY_FAILED = "permanently_failed"
    SKIPPED_LOCKED = "skipped_locked"
    SKIPPED_BACKOFF = "skipped_backoff"
    SKIPPED_DIRECTION = "skipped_direction"  # a write was needed that the direction forbids
    CHANGED_DURING_SYNC = "changed_during_sync"  # someone edited while we held the lock
    VALIDATION_FAILED = "validation_failed"
    DRY_RUN = "dry_run"
    CLEAN = "clean"  # validated


OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)

S = SyncStatus
_ANY_IDLE = {S.PENDING_SYNC, S.DIRTY, S.CLEAN, S.FAILED, S.CONFLICT, None}
#: Allowed transitions: new status -> statuses it may come from (None = field empty).
_ALLOWED_FROM: dict[SyncStatus, set[SyncStatus | None]] = {
    # Taking the lock; a stale "syncing" lock may be taken over; deleted/permanently_failed
    # entities only when an operator forces a run.
    S.SYNCING: _ANY_IDLE | {S.SYNCING, S.PERMANENTLY_FAILED, S.DELETED_IN_ADVOWARE},
    S.CLEAN: _ANY_IDLE | {S.SYNCING, S.PERMANENTLY_FAILED, S.DELETED_IN_ADVOWARE},
    S.FAILED: _ANY_IDLE | {S.SYNCING, S.PERMANENTLY_FAILED, S.DELETED_IN_ADVOWARE},
    S.PERMANENTLY_FAILED: _ANY_IDLE | {S.SYNCING, S.PERMANENTLY_FAILED, S.DELETED_IN_ADVOWARE},
    S.DELETED_IN_ADVOWARE: _ANY_IDLE | {S.SYNCING, S.PERMANENTLY_FAILED, S.DELETED_IN_ADVOWARE},
}


class TransitionError(ValueError):
    """A status change the machine does not allow (a programming error, not bad data)."""


def current_status(record: Mapping[str, Any]) -> SyncStatus | None:
    """The record's ``syncStatus``; unknown or empty values count as ``None``."""
    try:
        return SyncStatus(str(record.get("syncStatus")))
    except ValueError:
        return None


def check_transition(record: Mapping[str, Any], new: SyncStatus) -> None:
    """Raise :class:`TransitionError` unless ``record`` may move to ``new``."""
    old = current_status(record)
    if old not in _ALLOWED_FROM.get(new, set()):
        raise TransitionError(f"syncStatus {old} -> {new} is not allowed")


def lock_age(record: Mapping[str, Any], now: datetime) -> timedelta | None:
    """How long the lock has been held, or ``None`` if the entity is not locked.

    A lock is held while the status is ``syncing`` or a lock token is set: the firm's mark-dirty
    rule turns a record ``dirty`` when our own write (or a person) changes a business field while
    we hold the lock, and that must not hand the entity to a second run."""
    if current_status(record) is not S.SYNCING and not record.get(LOCK_TOKEN_FIELD):
        return None
    locked_at = parse_espocrm(record.get("syncLockedAt"))
    # A "syncing" record without a lock time was left by something broken: treat it as stale.
    return now - locked_at if locked_at else timedelta.max


def is_locked(record: Mapping[str, Any], now: datetime, ttl: timedelta = LOCK_TTL) -> bool:
    """True while another run holds a lock that is not yet stale."""
    age = lock_age(record, now)
    return age is not None and age < ttl


def in_backoff(record: Mapping[str, Any], now: datetime) -> bool:
    """True while ``syncNextRetry`` lies in the future, or a ``permanently_failed`` entity
    waits for its auto-reset."""
    if current_status(record) is S.PERMANENTLY_FAILED:
        return True
    next_retry = parse_espocrm(record.get("syncNextRetry"))
    return next_retry is not None and next_retry > now


def new_lock_token() -> str:
    """A token unique to one lock holder (EspoCRM refuses a stale ``X-Version-Number`` only when
    a written value differs: two runs locking in the same second must write different values)."""
    return uuid.uuid4().hex


def lock(record: Mapping[str, Any], now: datetime, token: str) -> dict[str, Any]:
    """Fields that take the lock (write them with ``X-Version-Number``)."""
    check_transition(record, S.SYNCING)
    return {
        "syncStatus": S.SYNCING.value,
        "syncLockedAt": format_espocrm(now),
        LOCK_TOKEN_FIELD: token,
    }


def holds_lock(record: Mapping[str, Any], token: str | None) -> bool:
    """True if ``record`` is still locked with ``token`` (nobody took the lock over). Without a
    token (an older caller) the status alone tells."""
    if token is None:
        return current_status(record) is S.SYNCING
    if LOCK_TOKEN_FIELD not in record:
        # An EspoCRM without the field (not yet upgraded) drops the token: the status tells.
        return current_status(record) in (S.SYNCING, S.DIRTY)
    return record.get(LOCK_TOKEN_FIELD) == token


def release(record: Mapping[str, Any]) -> dict[str, Any]:
    """Fields that only release the lock and leave the status as it is (a person changed the
    record while we held it: it stays ``dirty`` for the next run)."""
    return {"syncLockedAt": None, LOCK_TOKEN_FIELD: None}


def success(
    record: Mapping[str, Any],
    now: datetime,
    *,
    synced_hash: str,
    advoware_row_id: str | None,
    kommunikation_hash: str | None = None,
    baseline_json: str | None = None,
) -> dict[str, Any]:
    """Fields of a validated success: ``clean``, fresh baselines, counters cleared, lock released.

    ``kommunikation_hash`` is only written when it changed (``None`` = leave as it is).
    """
    check_transition(record, S.CLEAN)
    fields: dict[str, Any] = {
        "syncStatus": S.CLEAN.value,
        "syncRetryCount": 0,
        "syncNextRetry": None,
        "syncAutoResetAt": None,
        "syncErrorMessage": None,
        "syncLockedAt": None,
        LOCK_TOKEN_FIELD: None,
        "advowareLastSync": format_espocrm(now),
        "syncedHash": synced_hash,
        "advowareRowId": advoware_row_id,
    }
    if kommunikation_hash is not None and kommunikation_hash != record.get("kommunikationHash"):
        fields["kommunikationHash"] = kommunikation_hash
    if baseline_json is not None:
        fields["syncBaseline"] = baseline_json
    return fields


def retry_count(record: Mapping[str, Any]) -> int:
    """``syncRetryCount`` as a number; anything unreadable counts as 0 (a party's own data
    must never fail the task that records its failure)."""
    value = record.get("syncRetryCount")
    if isinstance(value, bool):
        return 0
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def failure(
    record: Mapping[str, Any],
    now: datetime,
    message: str,
    *,
    ladder: Sequence[int] = BACKOFF_MINUTES,
    auto_reset_hours: int = AUTO_RESET_HOURS,
) -> dict[str, Any]:
    """Fields of a failure: retry count + 1, next retry from the ladder, lock released.

    The ``len(ladder)``-th failure makes the entity ``permanently_failed`` with an auto-reset
    time (seed #12).
    """
    count = retry_count(record) + 1
    permanent = count >= len(ladder)
    new = S.PERMANENTLY_FAILED if permanent else S.FAILED
    check_transition(record, new)
    wait = ladder[min(count, len(ladder)) - 1]
    return {
        "syncStatus": new.value,
        "syncRetryCount": count,
        "syncNextRetry": format_espocrm(now + timedelta(minutes=wait)),
        "syncAutoResetAt": (
            format_espocrm(now + timedelta(hours=auto_reset_hours)) if permanent else None
        ),
        "syncErrorMessage": message[:_MESSAGE_LIMIT],
        "syncLockedAt": None,
        LOCK_TOKEN_FIELD: None,
    }


def reset(record: Mapping[str, Any]) -> dict[str, Any]:
    """Fields that give a ``permanently_failed`` entity another chance (status ``failed``,
    count 0, no backoff); the next run retries it normally."""
    if current_status(record) is not S.PERMANENTLY_FAILED:
        raise TransitionError("only permanently_failed entities are reset")
    return {
        "syncStatus": S.FAILED.value,
        "syncRetryCount": 0,
        "syncNextRetry": None,
        "syncAutoResetAt": None,
    }


def reset_due(record: Mapping[str, Any], now: datetime) -> bool:
    """True if ``record`` is ``permanently_failed`` and its auto-reset time has passed."""
    reset_at = parse_espocrm(record.get("syncAutoResetAt"))
    return current_status(record) is S.PERMANENTLY_FAILED and (reset_at is None or reset_at <= now)


def deleted(record: Mapping[str, Any], now: datetime, betnr: int) -> dict[str, Any]:
    """Fields for a party Advoware no longer knows (404): marked, nothing deleted."""
    check_transition(record, S.DELETED_IN_ADVOWARE)
    return {
        "syncStatus": S.DELETED_IN_ADVOWARE.value,
        "syncErrorMessage": f"Advoware party {betnr} not found (404); nothing was deleted.",
        "syncLockedAt": None,
        LOCK_TOKEN_FIELD: None,
        "syncRetryCount": 0,
        "syncNextRetry": None,
        "syncAutoResetAt": None,
        "advowareLastSync": format_espocrm(now),
    }


def link(record: Mapping[str, Any], betnr: int) -> dict[str, Any]:
    """Fields a person writes (``beteiligte link --betnr``) to link an entity without betnr to
    an existing Advoware party: no baseline yet, so the next run syncs it like a first sync."""
    if record.get("betnr"):
        raise TransitionError("the entity is already linked (betnr is set)")
    return {
        "betnr": betnr,
        "advowareRowId": None,
        "syncedHash": None,
        "syncStatus": S.DIRTY.value,
        "syncRetryCount": 0,
        "syncNextRetry": None,
        "syncAutoResetAt": None,
        "syncErrorMessage": None,
    }


def allow_create(record: Mapping[str, Any]) -> dict[str, Any]:
    """Fields a person writes (``beteiligte link --create``) after checking that an interrupted
    create left no party in Advoware: the next run creates the party."""
    if record.get("betnr"):
        raise TransitionError("the entity is already linked (betnr is set)")
    fields = link(record, 0)
    fields.update(betnr=None, syncStatus=S.PENDING_SYNC.value)
    return fields
