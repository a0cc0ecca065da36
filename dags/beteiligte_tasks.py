"""Task bodies shared by the Beteiligte DAGs: build clients, call the engine, return plain dicts.

Kept out of the DAG files so those stay a picture of the wiring. No sync decisions here: every
decision is the engine's (``include.beteiligte_sync``); this module only connects it to Airflow
(hooks from connections, the run's params, XCom-friendly results).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import get_current_context, task, task_group
from airflow.sdk.definitions.xcom_arg import XComArg
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from beteiligte_monitoring import monitor_report, on_failure
from hooks.advoware import AdvowareHook
from hooks.espocrm import EspoCrmHook

from include.beteiligte_sync import sync as engine
from include.beteiligte_sync.backfill import modified_between
from include.beteiligte_sync.fanout import (
    API_CONCURRENCY,
    DEFAULT_MAX_UNITS,
    WorkUnit,
    split_into_units,
)
from include.beteiligte_sync.monitoring import sync_settings_from_env
from include.beteiligte_sync.report import build_report, merge_results
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.sync import EntityResult

log = logging.getLogger(__name__)

#: Engine settings of the DAG runs (defaults, see include/beteiligte_sync/settings.py; the alert
#: thresholds may be overridden by BETEILIGTE_SYNC_ALERT_* environment variables).
SETTINGS: SyncSettings = sync_settings_from_env()

DEFAULT_ARGS = {
    "owner": "kanzlei-it",
    # Airflow retries infrastructure failures only (API down, worker lost): the engine records an
    # entity's own failure on the entity and does not raise for it.
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    # A task that failed for good (after its retries) alerts: log, metric, optional webhook.
    "on_failure_callback": on_failure,
}


def utc_now() -> datetime:
    """The clock handed to the engine."""
    return datetime.now(UTC)


def call_counts(**hooks: Any) -> dict[str, int]:
    """API calls made by each hook, keyed by system name (``espocrm=hook, advoware=hook``)."""
    return {system: hook.stats.total_calls for system, hook in hooks.items()}


def reset_permanently_failed(params: Mapping[str, Any]) -> dict[str, Any]:
    """Seed #12: put permanently failed entities whose auto-reset time passed back to ``failed``.

    A dry run writes nothing, so it resets nothing either."""
    if params.get("dry_run"):
        log.info("Dry run: auto-reset of permanently failed entities skipped")
        return {"reset_ids": [], "calls": {}}
    espocrm = EspoCrmHook()
    ids = engine.reset_due_permanently_failed(espocrm, clock=utc_now, settings=SETTINGS)
    log.info("Auto-reset %d permanently failed entities", len(ids))
    return {"reset_ids": ids, "calls": call_counts(espocrm=espocrm)}


def fetch_candidates(
    params: Mapping[str, Any], max_units: int = DEFAULT_MAX_UNITS
) -> list[WorkUnit]:
    """Select the entities of this run and cut them into work units for the mapped sync task."""
    entity_ids = list(params.get("entity_ids") or [])
    limit = params.get("limit")
    if entity_ids:
        ids = entity_ids[:limit] if limit else entity_ids
        log.info("Manual run for %d requested entities", len(ids))
    else:
        espocrm = EspoCrmHook()
        records = engine.select_candidates(espocrm, clock=utc_now, settings=SETTINGS, limit=limit)
        ids = [record["id"] for record in records]
        log.info("Selected %d candidates", len(ids))
    units = split_into_units(ids, max_units, batches=API_CONCURRENCY)
    log.info("Fan-out: %d work units", len(units))
    return units


def fetch_modified_between(
    start: datetime, end: datetime, max_units: int = DEFAULT_MAX_UNITS
) -> list[WorkUnit]:
    """Backfill selection: every entity modified within ``[start, end)``."""
    espocrm = EspoCrmHook()
    ids = [record["id"] for record in modified_between(espocrm, start, end)]
    log.info(
        "Backfill interval %s .. %s: %d entities", start.isoformat(), end.isoformat(), len(ids)
    )
    return split_into_units(ids, max_units, batches=API_CONCURRENCY)


def sync_unit(unit: WorkUnit, params: Mapping[str, Any]) -> dict[str, Any]:
    """Sync every entity of one work unit (the engine's unit runner); an entity's failure is
    recorded on the entity. Written entities wait, locked, for the unit's ``validate`` task."""
    espocrm, advoware = EspoCrmHook(), AdvowareHook()
    results = engine.sync_unit(
        unit["entity_ids"],
        espocrm,
        advoware,
        clock=utc_now,
        settings=SETTINGS,
        direction=params.get("direction", "both"),
        force=bool(params.get("force")),
        dry_run=bool(params.get("dry_run")),
        log=log,
    )
    if params.get("dry_run"):
        for result in results:
            log.info("Dry run plan for %s:\n%s", result.entity_id, result.plan_text)
    log.info("Unit %s: %d entities synced", unit["label"], len(results))
    return {
        "label": unit["label"],
        "results": [result.to_dict() for result in results],
        "calls": call_counts(espocrm=espocrm, advoware=advoware),
    }


def written_unit(sync_output: Mapping[str, Any]) -> WorkUnit:
    """The entities of one synced work unit that were written and wait for their validation,
    with what their sync step left (lock token, version, expected hash)."""
    written = [r for r in sync_output["results"] if r.get("needs_validation")]
    return {
        "label": sync_output["label"],
        "entity_ids": [r["entity_id"] for r in written],
        "written": {r["entity_id"]: r for r in written},
    }


def validate_unit(unit: WorkUnit, params: Mapping[str, Any]) -> dict[str, Any]:
    """Seed #13 round trip: re-read both sides; ``clean`` only when they match."""
    espocrm, advoware = EspoCrmHook(), AdvowareHook()
    written = unit.get("written") or {}
    results = [
        engine.validate_entity(
            entity_id,
            espocrm,
            advoware,
            clock=utc_now,
            settings=SETTINGS,
            direction=params.get("direction", "both"),
            written=EntityResult.from_dict(written[entity_id]) if entity_id in written else None,
        )
        for entity_id in unit["entity_ids"]
    ]
    results = engine.confirm_deletions(results, espocrm, clock=utc_now, settings=SETTINGS, log=log)
    return {
        "label": unit["label"],
        "results": [result.to_dict() for result in results],
        "calls": call_counts(espocrm=espocrm, advoware=advoware),
    }


def _sum_calls(outputs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for output in outputs:
        for system, n in output.get("calls", {}).items():
            total[system] = total.get(system, 0) + n
    return total


#: What a task outside the mapped ``entities`` group pulls from a task inside it.
Pulled = Sequence[Mapping[str, Any] | None] | Mapping[str, Any] | None


def _outputs(pulled: Pulled) -> list[dict[str, Any]]:
    """The outputs of a task in the mapped ``entities`` group, as a list. Airflow hands a single
    XCom over as the value itself (one unit, or all but one skipped), several as a list, none as
    ``None``; a mapped instance that failed for good or was skipped left no XCom (no gap kept)."""
    if pulled is None:
        return []
    if isinstance(pulled, Mapping):
        return [dict(pulled)]
    return [dict(o) for o in pulled if o]


def report(
    reset_output: Mapping[str, Any] | None, sync_outputs: Pulled, validate_outputs: Pulled
) -> dict[str, Any]:
    """Build the run summary from the pulled XComs, log it as a table and return it (the task's
    XCom)."""
    synced, validated = _outputs(sync_outputs), _outputs(validate_outputs)
    reset_output = reset_output or {}
    results = merge_results(
        (r for output in synced for r in output["results"]),
        (r for output in validated for r in output["results"]),
    )
    calls = _sum_calls([reset_output, *synced, *validated])
    summary = build_report(
        results,
        resets=len(reset_output.get("reset_ids", [])),
        api_calls=calls,
        permanently_failed_threshold=SETTINGS.alert_permanently_failed,
        validation_failure_threshold=SETTINGS.alert_validation_failures,
    )
    log.info("\n%s", summary.render())
    return summary.to_dict()


def _label_unit(unit: Mapping[str, Any]) -> Mapping[str, Any]:
    """Name the mapped task instance in the UI after its unit (``map_index_template``)."""
    context = get_current_context()
    context["unit_label"] = unit["label"]  # type: ignore[typeddict-unknown-key]
    return context["params"]


@task(pool="advoware_api", map_index_template="{{ unit_label }}")
def sync(unit: WorkUnit) -> dict[str, Any]:
    """Mapped: sync the entities of one work unit."""
    return sync_unit(unit, _label_unit(unit))


@task(pool="advoware_api", map_index_template="{{ unit_label }}")
def validate(sync_output: dict[str, Any]) -> dict[str, Any]:
    """Mapped with its ``sync``: the seed #13 round trip for the entities that sync wrote.

    It starts as soon as its own unit's sync is done (not after every unit's), and it is
    skipped when its sync wrote nothing (no change, dry run): nothing waits for validation.
    """
    unit = written_unit(sync_output)
    params = _label_unit(unit)
    if not unit["entity_ids"]:
        raise AirflowSkipException("nothing written in this unit, nothing to validate")
    return validate_unit(unit, params)


@task(task_id="report", trigger_rule="all_done")
def report_task(
    reset_output: dict[str, Any] | None,
    sync_outputs: Pulled,
    validate_outputs: Pulled,
) -> dict[str, Any]:
    """Run summary: table in the log, dict as XCom; metrics and threshold alerts."""
    summary = report(reset_output, sync_outputs, validate_outputs)
    run_id = str(get_current_context().get("run_id") or "run")
    monitor_report(summary, run=run_id, espocrm=EspoCrmHook())
    return summary


@task(task_id="fail_if_a_task_failed", trigger_rule="one_failed", retries=0)
def fail_if_a_task_failed() -> None:
    """Leaf that fails the run when any task before the report failed for good: the report
    runs anyway (``all_done``), and without this leaf the run itself would show success."""
    raise AirflowFailException("A task of this run failed; see its log. The report lists the rest.")


def sync_validate_report(units: XComArg, reset_output: XComArg | None = None) -> None:
    """Wire ``sync`` -> ``validate`` per work unit (a mapped task group), then ``report``.

    Each unit's validation follows its own sync, so there is no wave in between; a unit whose
    sync failed for good is not validated (its entities' locks expire after the lock TTL), the
    others are. Shared by the scheduled/manual DAG and the backfill DAG: one code path.
    """
    # Airflow's decorators take XComArgs where the task function takes their values (resolved
    # at run time); their type hints do not say so, hence the Any below.
    inner: dict[str, Any] = {}

    @task_group(group_id="entities", prefix_group_id=False)
    def entities(unit: WorkUnit) -> Any:
        inner["synced"] = sync(unit)
        inner["validated"] = validate(inner["synced"])
        return inner["validated"]

    per_unit = entities.expand(unit=units)
    report: Any = report_task
    report(reset_output, inner["synced"], inner["validated"])
    # ``report`` is a leaf itself (a failed report fails the run); the other leaf needs not wait
    # for it, so a successful run ends as soon as its report is written.
    upstream = [units, per_unit]
    if reset_output is not None:
        upstream.append(reset_output)
    upstream >> fail_if_a_task_failed()
