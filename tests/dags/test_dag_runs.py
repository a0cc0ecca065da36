"""The DAGs run end to end with ``dag.test()``: real tasks, hooks, connections, XCom and metadata
DB (the project's AIRFLOW_HOME, set up by ``make setup``), against the sandbox over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

from include.beteiligte_sync.fanout import DEFAULT_MAX_UNITS
from sandbox.server import Sandbox

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
FAST = {"retry_wait_base": 0.01, "retry_wait_max": 0.05, "retry_attempts": 3}
WRITES = ("POST ", "PUT ", "DELETE ")


def person(n: int, **fields: Any) -> dict[str, Any]:
    return {"name": f"Muster{n}", "vorname": "Erika", "syncStatus": "pending_sync", **fields}


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    return bag.dags


@pytest.fixture
def sb(monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        for name, value in sandbox.airflow_conn_env().items():
            conn = json.loads(value)
            conn["extra"] = {**conn.get("extra", {}), **FAST}
            monkeypatch.setenv(name, json.dumps(conn))
        yield sandbox


DEFAULT_CONF = {
    "entity_ids": [],
    "direction": "both",
    "force": False,
    "dry_run": False,
    "limit": None,
}


def run(dag: Any, conf: dict[str, Any] | None = None, **kw: Any) -> tuple[Any, dict[str, Any]]:
    """Run the DAG once; return the DagRun and the report task's XCom.

    The full conf is passed every time: ``dag.test()`` keeps params of an earlier call in the
    same process (a real scheduler run does not).
    """
    if dag.dag_id == "beteiligte_sync":
        conf = {**DEFAULT_CONF, **(conf or {})}
    dag_run = dag.test(run_conf=conf or {}, **kw)
    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(
                dag_id=dag.dag_id, run_id=dag_run.run_id, task_id="report", key="return_value"
            )
            .one()
        )
        value = row.value if isinstance(row.value, dict) else json.loads(row.value)
    return dag_run, value


def espo_state(sb: Sandbox) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in sb.espocrm_admin.state()["CBeteiligte"]}


def write_calls(sb: Sandbox) -> int:
    total = 0
    for admin in (sb.espocrm_admin, sb.advoware_admin):
        for request, statuses in admin.counters()["calls"].items():
            if request.startswith(WRITES) and "/Token" not in request:
                total += sum(statuses.values())
    return total


def test_scheduled_path_creates_updates_and_reports(dags: dict[str, Any], sb: Sandbox) -> None:
    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": [person(1), person(2)]}})
    dag_run, report = run(dags["beteiligte_sync"])
    assert dag_run.state == "success"
    state = espo_state(sb)
    assert all(r["syncStatus"] == "clean" and r["betnr"] for r in state.values())
    parties = sb.advoware_admin.state()["Beteiligte"]
    assert sorted(p["name"] for p in parties) == ["Muster1", "Muster2"]
    assert report["counts"]["created"] == 2
    assert report["counts"]["clean"] == 2
    assert report["api_calls"]["advoware"] > 0 and report["api_calls"]["espocrm"] > 0

    # A person changes one party in EspoCRM: the next scheduled run carries it to Advoware.
    changed = next(iter(state))
    sb.espocrm_admin.edit({"id": changed, "fields": {"titel": "Dr."}})
    _, report = run(dags["beteiligte_sync"])
    assert report["counts"]["espocrm_newer"] == 1
    betnr = espo_state(sb)[changed]["betnr"]
    party = next(p for p in sb.advoware_admin.state()["Beteiligte"] if p["betNr"] == betnr)
    assert party["titel"] == "Dr."
    assert espo_state(sb)[changed]["syncStatus"] == "clean"


def test_dry_run_writes_nothing_and_shows_the_plan(dags: dict[str, Any], sb: Sandbox) -> None:
    due = person(3, syncStatus="permanently_failed", syncAutoResetAt="2026-01-01 00:00:00")
    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": [person(1), person(2), due]}})
    before = espo_state(sb)
    sb.espocrm_admin.reset_counters()
    sb.advoware_admin.reset_counters()
    dag_run, report = run(dags["beteiligte_sync"], {"dry_run": True})
    assert dag_run.state == "success"
    assert write_calls(sb) == 0
    assert espo_state(sb) == before
    assert sb.advoware_admin.state()["Beteiligte"] == []
    assert report["counts"]["dry_run"] == 2
    assert report["counts"]["resets"] == 0


def test_scheduled_run_auto_resets_permanently_failed(dags: dict[str, Any], sb: Sandbox) -> None:
    due = person(1, syncStatus="permanently_failed", syncAutoResetAt="2026-01-01 00:00:00")
    due["syncRetryCount"] = 5
    later = person(2, syncStatus="permanently_failed", syncAutoResetAt="2099-01-01 00:00:00")
    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": [due, later]}})
    _, report = run(dags["beteiligte_sync"])
    assert report["counts"]["resets"] == 1
    statuses = sorted(r["syncStatus"] for r in espo_state(sb).values())
    assert statuses == ["clean", "permanently_failed"]  # reset, then synced in the same run


def test_manual_run_honours_entity_ids_direction_force_and_limit(
    dags: dict[str, Any], sb: Sandbox
) -> None:
    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": [person(n) for n in range(1, 5)]}})
    ids = sorted(espo_state(sb))
    _, report = run(dags["beteiligte_sync"], {"entity_ids": ids[:2]})
    state = espo_state(sb)
    assert [state[i]["syncStatus"] for i in ids] == [
        "clean",
        "clean",
        "pending_sync",
        "pending_sync",
    ]
    assert report["entities"] == 2

    # limit: only one more entity this run
    _, report = run(dags["beteiligte_sync"], {"limit": 1})
    assert report["entities"] == 1

    # direction to_espocrm: an EspoCRM edit is not written to Advoware
    sb.espocrm_admin.edit({"id": ids[0], "fields": {"titel": "Prof."}})
    _, report = run(dags["beteiligte_sync"], {"entity_ids": [ids[0]], "direction": "to_espocrm"})
    betnr = espo_state(sb)[ids[0]]["betnr"]
    party = next(p for p in sb.advoware_admin.state()["Beteiligte"] if p["betNr"] == betnr)
    assert party.get("titel") in (None, "")
    assert report["counts"].get("skipped_direction") == 1

    # force: an entity in backoff is synced anyway
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    sb.espocrm_admin.edit(
        {"id": ids[1], "fields": {"syncStatus": "failed", "syncNextRetry": future, "titel": "Dr."}}
    )
    _, report = run(dags["beteiligte_sync"], {"entity_ids": [ids[1]]})
    assert report["counts"].get("skipped_backoff") == 1
    _, report = run(dags["beteiligte_sync"], {"entity_ids": [ids[1]], "force": True})
    assert report["counts"].get("espocrm_newer") == 1
    assert espo_state(sb)[ids[1]]["syncStatus"] == "clean"


def test_unknown_entity_id_is_reported_not_crashed(dags: dict[str, Any], sb: Sandbox) -> None:
    dag_run, report = run(dags["beteiligte_sync"], {"entity_ids": ["doesnotexist00001"]})
    assert dag_run.state == "success"
    assert report["failures"][0]["entity_id"] == "doesnotexist00001"
    assert "not found" in report["failures"][0]["error"]


def test_a_unit_failing_for_good_does_not_hold_back_the_others(
    dags: dict[str, Any], sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each unit's validation follows its own sync: a sync task that fails for good (here:
    no retry) leaves its entity untouched and unvalidated; the other units are synced,
    validated and reported, and the run itself ends ``failed``."""
    import beteiligte_tasks
    from airflow.sdk.exceptions import AirflowFailException

    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": [person(1), person(2), person(3)]}})
    ids = sorted(espo_state(sb))
    broken = ids[1]
    real_sync_unit = beteiligte_tasks.sync_unit

    def sync_unit(unit: dict[str, Any], params: Any) -> dict[str, Any]:
        if broken in unit["entity_ids"]:
            raise AirflowFailException("EspoCRM unreachable (simulated)")
        return real_sync_unit(unit, params)

    monkeypatch.setattr(beteiligte_tasks, "sync_unit", sync_unit)
    dag_run, report = run(dags["beteiligte_sync"], {"entity_ids": ids})
    assert dag_run.state == "failed"
    state = espo_state(sb)
    assert {i: state[i]["syncStatus"] for i in ids} == {
        ids[0]: "clean",
        broken: "pending_sync",
        ids[2]: "clean",
    }
    assert report["counts"]["created"] == 2 and report["counts"]["clean"] == 2
    with create_session() as session:
        states = {
            (ti.task_id, ti.map_index): ti.state
            for ti in session.query(TaskInstance).filter_by(
                dag_id="beteiligte_sync", run_id=dag_run.run_id
            )
        }
    assert states[("sync", 1)] == "failed" and states[("validate", 1)] == "upstream_failed"
    assert states[("validate", 0)] == states[("validate", 2)] == "success"
    assert states[("fail_if_a_task_failed", -1)] == "failed"


def test_backfill_covers_three_intervals(dags: dict[str, Any], sb: Sandbox) -> None:
    days = ["2025-03-01 10:00:00", "2025-03-02 10:00:00", "2025-03-03 10:00:00"]
    records = [
        person(n, createdAt=day, modifiedAt=day, syncStatus="clean")
        for n, day in enumerate(days, start=1)
    ]
    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": records}})
    dag = dags["beteiligte_backfill"]
    synced: list[int] = []
    for day in (1, 2, 3):
        start = datetime(2025, 3, day, tzinfo=UTC)
        _, report = run(dag, logical_date=start)
        synced.append(report["entities"])
    assert synced == [1, 1, 1]
    assert all(r["betnr"] for r in espo_state(sb).values())
    assert len(sb.advoware_admin.state()["Beteiligte"]) == 3


def test_two_thousand_candidates_stay_within_the_mapped_instance_bound(
    dags: dict[str, Any], sb: Sandbox
) -> None:
    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": [person(n) for n in range(2000)]}})
    dag_run, report = run(dags["beteiligte_sync"])
    assert dag_run.state == "success"
    with create_session() as session:
        mapped = {
            task_id: session.query(TaskInstance)
            .filter_by(dag_id="beteiligte_sync", run_id=dag_run.run_id, task_id=task_id)
            .count()
            for task_id in ("sync", "validate")
        }
    assert 1 < mapped["sync"] <= DEFAULT_MAX_UNITS
    assert 1 < mapped["validate"] <= DEFAULT_MAX_UNITS
    assert report["entities"] == 2000
    assert report["counts"]["created"] == 2000 and report["counts"]["clean"] == 2000
    assert len(sb.advoware_admin.state()["Beteiligte"]) == 2000


def test_report_reads_one_several_or_no_pulled_outputs() -> None:
    """Airflow hands a task outside the mapped group one XCom as the value itself, several as a
    list (without the failed or skipped instances), none as ``None``: the report counts all."""
    import beteiligte_tasks

    def output(entity_id: str, outcome: str) -> dict[str, Any]:
        result = {"entity_id": entity_id, "betnr": 1, "outcome": outcome}
        return {"label": entity_id, "results": [result], "calls": {"espocrm": 2}}

    one = beteiligte_tasks.report(None, output("a", "no_change"), None)
    several = beteiligte_tasks.report(
        {"reset_ids": ["c"], "calls": {"espocrm": 1}},
        [output("a", "no_change"), None, output("b", "espocrm_newer")],
        output("b", "clean"),
    )
    assert one["counts"]["no_change"] == 1 and one["api_calls"] == {"espocrm": 2}
    assert several["counts"]["no_change"] == 1 and several["counts"]["clean"] == 1
    assert several["counts"]["resets"] == 1 and several["api_calls"] == {"espocrm": 7}
