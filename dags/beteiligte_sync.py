"""``beteiligte_sync``: EspoCRM <-> Advoware parties in sync, every 15 minutes and on demand."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from beteiligte_tasks import (
    DEFAULT_ARGS,
    fetch_candidates,
    reset_permanently_failed,
    sync_validate_report,
)

DOC = """
### Beteiligte sync (EspoCRM <-> Advoware)

Runs every 15 minutes (environment variable `BETEILIGTE_SYNC_SCHEDULE` of the scheduler and
dag-processor: another cron, or `none` for manual runs only) and on demand. Tasks:

1. **reset_permanently_failed**: entities whose `syncAutoResetAt` has passed go back to `failed`.
2. **fetch_candidates**: `pending_sync`, `dirty`, `failed` with backoff over, stale locks, and the
   `clean` entities checked longest ago; cut into work units (one per entity, batches when many).
3. **sync** (mapped): compare, plan, lock, apply; an entity's own failure is written to the
   entity (`syncErrorMessage`, backoff), not retried by Airflow.
4. **validate** (mapped with its sync, in the group `entities`): re-read both sides of every
   entity that unit wrote; `clean` only if they match. It starts as soon as its own sync is done,
   and is *skipped* when its sync wrote nothing (no change, dry run).
5. **report**: counts per outcome, failed entities with their messages, API calls.

**Trigger with config** (form): `entity_ids` (empty = normal selection), `direction`, `force`
(ignore backoff), `dry_run` (plan only, writes nothing; the plan is in the sync task log), `limit`.
"""


PARAMS = {
    "entity_ids": Param(
        [],
        type=["array", "null"],
        items={"type": "string"},
        title="EspoCRM entity ids",
        description="Sync only these CBeteiligte ids. Leave empty for the normal selection.",
    ),
    "direction": Param(
        "both",
        enum=["both", "to_advoware", "to_espocrm"],
        title="Direction",
        description="both: full two-way sync; to_advoware / to_espocrm: write only that side.",
    ),
    "force": Param(
        False,
        type="boolean",
        title="Force",
        description="Ignore the retry backoff (syncNextRetry).",
    ),
    "dry_run": Param(
        False,
        type="boolean",
        title="Dry run",
        description="Plan only and show the plan in the sync task log; write nothing anywhere.",
    ),
    "limit": Param(
        None,
        type=["integer", "null"],
        minimum=1,
        title="Limit",
        description="Process at most this many entities (empty = no limit).",
    ),
}


#: Cron of the scheduled runs; ``BETEILIGTE_SYNC_SCHEDULE=none`` leaves only manual runs.
SCHEDULE = os.environ.get("BETEILIGTE_SYNC_SCHEDULE", "*/15 * * * *")


@dag(
    dag_id="beteiligte_sync",
    schedule=None if SCHEDULE.strip().lower() in ("", "none") else SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    tags=["beteiligte", "espocrm", "advoware"],
    doc_md=DOC,
)
def beteiligte_sync() -> None:
    @task(task_id="reset_permanently_failed", pool="espocrm_api")
    def reset() -> dict[str, Any]:
        return reset_permanently_failed(get_current_context()["params"])

    @task(task_id="fetch_candidates", pool="espocrm_api")
    def candidates() -> list[Any]:
        return list(fetch_candidates(get_current_context()["params"]))

    reset_output = reset()
    units = candidates()
    reset_output >> units
    sync_validate_report(units, reset_output)


beteiligte_sync()
