"""Settings of the sync engine (plain dataclass; the DAGs and the CLI fill it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from include.beteiligte_sync.status import AUTO_RESET_HOURS, BACKOFF_MINUTES, LOCK_TTL


@dataclass(frozen=True)
class SyncSettings:
    """Knobs of one sync run.

    :param lock_ttl: age after which a ``syncing`` lock is stale and may be taken over.
    :param backoff_minutes: the retry ladder; its length is the number of failures that makes
        an entity ``permanently_failed``.
    :param auto_reset_hours: how long a ``permanently_failed`` entity waits for another chance.
    :param advoware_timezone: time zone of Advoware's offset-less ``geaendertAm``.
    :param clean_share: share of a scheduled run's ``limit`` spent on re-checking ``clean``
        entities (oldest ``advowareLastSync`` first) to catch changes made in Advoware.
    :param clean_batch: how many ``clean`` entities to re-check when no ``limit`` is given. The
        default re-checks 10,000 entities at least once a day at 96 runs a day (10,000 / 96 = 105).
    :param not_found_limit: a unit in which more parties than this (and more than half of its
        parties) answer 404 is taken for a wrong route or base URL: no deletion is confirmed.
    :param deleted_recheck_batch: ``deleted_in_advoware`` parties a scheduled run looks at again
        (a party restored in Advoware comes back), those looked at longest ago first ...
    :param deleted_recheck_days: ... and only once this many days have passed since.
    :param alert_permanently_failed: the run report warns above this many permanently failed.
    :param alert_validation_failures: the run report warns above this many validation failures.
    :param create_pending_grace: clock skew allowed when adopting a party from an interrupted
        create (its ``geaendertAm`` may be this much older than the create-pending marker).
    """

    lock_ttl: timedelta = LOCK_TTL
    backoff_minutes: tuple[int, ...] = BACKOFF_MINUTES
    auto_reset_hours: int = AUTO_RESET_HOURS
    advoware_timezone: str = "Europe/Berlin"
    clean_share: float = 0.2
    clean_batch: int = 120
    create_pending_grace: timedelta = timedelta(minutes=5)
    not_found_limit: int = 10
    deleted_recheck_batch: int = 10
    deleted_recheck_days: int = 7
    alert_permanently_failed: int = 10
    alert_validation_failures: int = 5
