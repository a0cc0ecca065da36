"""``beteiligte_backfill``: sync every party changed in a historical interval."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task
from beteiligte_tasks import DEFAULT_ARGS, fetch_modified_between, sync_validate_report

DOC = """
### Beteiligte backfill (history)

Each run covers one day (its data interval) and syncs every EspoCRM party created or modified in
it; changes made only in Advoware are found while those parties are synced. Same engine, lock and
validation as `beteiligte_sync`, so it may overlap with the 15-minute runs safely (a locked
entity is skipped and picked up later).

Never scheduled on its own: create a backfill for the range you need, e.g.

```
airflow backfill create --dag-id beteiligte_backfill \\
    --from-date 2025-01-01 --to-date 2025-12-31 --max-active-runs 1
```

A manual trigger of this DAG covers the (UTC) day of its logical date.

Up to 16 parties of an interval get one task each; more are dealt into one batch per slot of the
`advoware_api` pool, so even tens of thousands of parties per day do not flood the scheduler.
"""


@dag(
    dag_id="beteiligte_backfill",
    schedule="@daily",
    start_date=datetime(2020, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={"direction": "both", "force": True, "dry_run": False},
    tags=["beteiligte", "espocrm", "advoware", "backfill"],
    doc_md=DOC,
    is_paused_upon_creation=True,
)
def beteiligte_backfill() -> None:
    @task(task_id="fetch_interval", pool="espocrm_api")
    def fetch_interval() -> list[Any]:
        context = get_current_context()
        start: datetime | None = context["data_interval_start"]
        end: datetime | None = context["data_interval_end"]
        if start is None or end is None or end <= start:
            # A manual trigger has an empty interval: it covers the day of its logical date.
            moment: datetime = context["logical_date"] or context["dag_run"].run_after
            start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            end = start + timedelta(days=1)
        return list(fetch_modified_between(start, end))

    sync_validate_report(fetch_interval())


beteiligte_backfill()
