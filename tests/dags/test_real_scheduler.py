"""The product under a real Airflow: api-server, scheduler and dag-processor as separate processes
(LocalExecutor, SQLite), runs triggered through the REST API, both systems checked afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.tools.airflow_runtime import AirflowComponents
from sandbox.generate import generate_scenario
from sandbox.server import Sandbox

pytestmark = pytest.mark.airflow_server

FAST = {"retry_wait_base": 0.05, "retry_wait_max": 0.5}


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(scenario=generate_scenario(24, seed=7)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def airflow(sb: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowComponents]:
    env = {"BETEILIGTE_SYNC_SCHEDULE": "none"}  # only the runs this test triggers
    for name, value in sb.airflow_conn_env().items():
        conn = json.loads(value)
        conn["extra"] = {**conn.get("extra", {}), **FAST}
        env[name] = json.dumps(conn)
    home: Path = tmp_path_factory.mktemp("airflow_home")
    with AirflowComponents(home, env) as components:
        components.wait_for_dag("beteiligte_sync")
        yield components


def _espo(sb: Sandbox) -> list[dict]:
    return list(sb.espocrm_admin.state()["CBeteiligte"])


def test_triggered_run_syncs_both_systems_under_the_scheduler(
    sb: Sandbox, airflow: AirflowComponents
) -> None:
    todo = [r for r in _espo(sb) if r.get("syncStatus") in ("pending_sync", "dirty")]
    assert todo, "the generated scenario should have work to do"
    run_id = airflow.trigger("beteiligte_sync", {"direction": "both"})
    assert airflow.wait_for_run("beteiligte_sync", run_id) == "success", airflow.logs()
    report = airflow.xcom("beteiligte_sync", run_id, "report")
    assert report["entities"] >= len(todo)

    records = {r["id"]: r for r in _espo(sb)}
    parties = {p["betNr"]: p for p in sb.advoware_admin.state()["Beteiligte"]}
    for before in todo:
        after = records[before["id"]]
        assert after["betnr"] in parties, before["id"]
        assert after["syncStatus"] in ("clean", "failed"), after["syncStatus"]
        if after["syncStatus"] == "clean":
            assert parties[after["betnr"]]["name"] == after["name"]
    assert not any(r["syncStatus"] == "syncing" for r in records.values())
    failed = {f["entity_id"] for f in report["failures"]}
    assert failed == {r["id"] for r in records.values() if r["syncStatus"] == "failed"}
    # The mapped sync tasks ran, each labelled by its work unit.
    answer = airflow.api(
        "GET", f"/dags/beteiligte_sync/dagRuns/{run_id}/taskInstances/sync/listMapped"
    )
    labels = [ti.get("rendered_map_index") for ti in answer.json()["task_instances"]]
    assert labels and all(label and label.startswith(("entity ", "batch ")) for label in labels)


def test_manual_dry_run_through_the_rest_api_writes_nothing(
    sb: Sandbox, airflow: AirflowComponents
) -> None:
    target = _espo(sb)[0]
    sb.espocrm_admin.edit({"id": target["id"], "fields": {"titel": "Dr. h.c."}})
    before_advoware = sb.advoware_admin.state()
    run_id = airflow.trigger("beteiligte_sync", {"entity_ids": [target["id"]], "dry_run": True})
    assert airflow.wait_for_run("beteiligte_sync", run_id) == "success", airflow.logs()
    assert sb.advoware_admin.state() == before_advoware
    assert airflow.xcom("beteiligte_sync", run_id, "report")["counts"]["dry_run"] == 1
