"""The product on Airflow's distributed set-up: PostgreSQL metadata DB, CeleryExecutor with Redis,
api-server, scheduler, dag-processor and two Celery workers, each its own process on 127.0.0.1.

Run 1 syncs a few hundred dirty entities and shows that the work spreads over both workers while
the API pools still cap the concurrent calls per API across them (the sandbox counts requests in
flight). Run 2 loses one worker (its whole process tree, as when the machine dies) in the middle
of the run: the run still completes, nothing stays locked, nothing is half-written.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from include.beteiligte_sync import planner
from include.tools.airflow_runtime import AirflowComponents
from include.tools.bench_workers import dirty_world
from include.tools.setup_airflow import POOLS
from sandbox.server import Sandbox

pytestmark = [pytest.mark.distributed, pytest.mark.airflow_server]

DAG = "beteiligte_sync"
ENTITIES = 300
#: Slots per worker: together more than a pool has, so only the pool can keep the calls down.
WORKER_SLOTS = 3
FAST = {"retry_wait_base": 0.05, "retry_wait_max": 0.5}
#: Makes a lost worker's tasks come back quickly (the defaults are made for production).
RECOVERY_ENV = {
    # A task whose supervisor stopped heartbeating for 20 s counts as lost and is retried.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    # A task queued to the dead worker but never started goes back to the scheduler.
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    # Retry a lost task after 10 s instead of the DAG's 1-2 minutes.
    "AIRFLOW__CORE__MAX_TASK_RETRY_DELAY": "10",
    # The lost task's locks are stale by the time its retry starts (>= 20 + 10 s after the loss).
    "BETEILIGTE_SYNC_LOCK_TTL_SECONDS": "20",
}


@dataclass
class Cluster:
    """The running installation and what the tests need to know about it."""

    sb: Sandbox
    airflow: AirflowComponents
    workers: dict[str, str]  # name -> component key

    def worker_log(self, name: str) -> str:
        path = self.airflow.airflow_home / f"{self.workers[name].replace(' ', '_')}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def cluster(
    pg_database: str, redis_db: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    scenario = dirty_world(ENTITIES, seed=11)
    with Sandbox(scenario=scenario, latency_ms=30) as sb:
        # Only the runs this test triggers: no schedule, and the other DAGs (backfill,
        # monitoring) stay paused so they neither touch the sandbox nor take pool slots.
        env = {
            "BETEILIGTE_SYNC_SCHEDULE": "none",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            **RECOVERY_ENV,
        }
        for name, value in sb.airflow_conn_env().items():
            conn = json.loads(value)
            conn["extra"] = {**conn.get("extra", {}), **FAST}
            env[name] = json.dumps(conn)
        home: Path = tmp_path_factory.mktemp("airflow_home_distributed")
        setup_args = ("--database", pg_database, "--redis-db", str(redis_db))
        with AirflowComponents(home, env, profile="distributed", setup_args=setup_args) as af:
            workers = {}
            for name in ("w1", "w2"):
                args = ("--concurrency", str(WORKER_SLOTS), "--celery-hostname", f"{name}@%h")
                # No log server: two workers on one machine would both want port 8793; the
                # api-server reads the task logs from the shared log folder instead.
                args += ("--skip-serve-logs",)
                af.start("celery worker", *args)
                workers[name] = " ".join(["celery worker", *args])
            af.wait_for_dag(DAG)
            af.api("PATCH", f"/dags/{DAG}", json={"is_paused": False}).raise_for_status()
            yield Cluster(sb, af, workers)


# --- observations ---------------------------------------------------------------------------


def _espo(sb: Sandbox) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in sb.espocrm_admin.state()["CBeteiligte"]}


def _parties(sb: Sandbox) -> dict[int, dict[str, Any]]:
    return {p["betNr"]: p for p in sb.advoware_admin.state()["Beteiligte"]}


def _as_read(party: Mapping[str, Any]) -> dict[str, Any]:
    """The party as the Advoware API reports it (kommKz always 0), for the engine's comparison."""
    return {**party, "kommunikation": [{**k, "kommKz": 0} for k in party["kommunikation"]]}


def _todo(sb: Sandbox) -> list[str]:
    return [i for i, r in _espo(sb).items() if r.get("syncStatus") in ("pending_sync", "dirty")]


def _assert_converged(sb: Sandbox, todo: list[str], parties_before: set[int]) -> None:
    """Nothing locked, every entity of the run done (or failed readably), both sides equal,
    no Advoware party that no EspoCRM entity links to (a half-written create)."""
    records, parties = _espo(sb), _parties(sb)
    locked = [i for i, r in records.items() if r.get("syncStatus") == "syncing"]
    assert not locked, f"{len(locked)} entities left locked: {locked[:5]}"
    for entity_id in todo:
        record = records[entity_id]
        assert record["syncStatus"] in ("clean", "failed"), (entity_id, record["syncStatus"])
        if record["syncStatus"] == "failed":
            assert record.get("syncErrorMessage"), entity_id
            continue
        assert record["betnr"] in parties, entity_id
        diffs = planner.differences(record, _as_read(parties[record["betnr"]]))
        assert diffs == [], (entity_id, len(diffs))
    linked = [r["betnr"] for r in records.values() if r.get("betnr")]
    assert len(linked) == len(set(linked)), "an Advoware party is linked twice"
    orphans = set(parties) - parties_before - set(linked)
    assert not orphans, f"Advoware parties created but not linked: {sorted(orphans)[:5]}"


def _task_instances(af: AirflowComponents, run_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = af.api(
            "GET",
            f"/dags/{DAG}/dagRuns/{run_id}/taskInstances",
            params={"limit": 100, "offset": len(items)},
        ).json()
        items += page["task_instances"]
        if len(items) >= page["total_entries"] or not page["task_instances"]:
            return items


_RECEIVED = re.compile(r"\[([0-9a-f-]{36})\] received")
_WORKLOAD = re.compile(r"\[([0-9a-f-]{36})\] Executing workload.*?task_id='(\w+)'")
_FINISHED = re.compile(r"\[([0-9a-f-]{36})\] (?:succeeded|raised|failed)")


def _celery_tasks(log: str) -> tuple[set[str], set[str]]:
    """Celery task ids a worker received and finished, from its log."""
    return set(_RECEIVED.findall(log)), set(_FINISHED.findall(log))


def _reset_counters(sb: Sandbox) -> None:
    sb.espocrm_admin.reset_counters()
    sb.advoware_admin.reset_counters()


def _max_concurrent(sb: Sandbox) -> dict[str, int]:
    return {
        "espocrm": sb.espocrm_admin.counters()["max_concurrent"],
        "advoware": sb.advoware_admin.counters()["max_concurrent"],
    }


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_two_workers_sync_a_few_hundred_dirty_entities_within_the_pools(
    cluster: Cluster,
) -> None:
    sb, af = cluster.sb, cluster.airflow
    todo = _todo(sb)
    assert len(todo) >= 150, len(todo)
    parties_before = set(_parties(sb))
    _reset_counters(sb)

    run_id = af.trigger(DAG, {"direction": "both"})
    assert af.wait_for_run(DAG, run_id, timeout=300) == "success", af.logs()

    report = af.xcom(DAG, run_id, "report")
    assert report["entities"] >= len(todo)
    _assert_converged(sb, todo, parties_before)
    failed = {f["entity_id"] for f in report["failures"]}
    assert failed == {i for i, r in _espo(sb).items() if r["syncStatus"] == "failed"}

    # The pools hold across both workers: never more calls in flight per API than pool slots,
    # although the workers together have more task slots than that.
    assert POOLS["advoware_api"][0] < 2 * WORKER_SLOTS
    peak = _max_concurrent(sb)
    assert peak["advoware"] <= POOLS["advoware_api"][0], peak
    assert peak["espocrm"] <= POOLS["advoware_api"][0], peak
    assert peak["advoware"] >= 2, f"the tasks should overlap: {peak}"
    # Both workers did part of the run.
    for name in cluster.workers:
        received, _ = _celery_tasks(cluster.worker_log(name))
        assert received, f"worker {name} ran no task\n{af.logs()}"


@pytest.mark.timeout(600)
def test_a_worker_lost_mid_run_leaves_nothing_locked_or_half_written(cluster: Cluster) -> None:
    sb, af = cluster.sb, cluster.airflow
    records = list(_espo(sb).values())
    clean = [r for r in records if r.get("syncStatus") == "clean"]
    for record in clean[:150]:
        sb.espocrm_admin.edit(id=record["id"], fields={"name": f"{record['name']} II"})
    todo = _todo(sb)
    assert len(todo) >= 100, len(todo)
    parties_before = set(_parties(sb))
    # Slower APIs make the units long enough to be caught mid-write.
    sb.espocrm.latency_ms = sb.advoware.latency_ms = 80
    received_before, _ = _celery_tasks(cluster.worker_log("w1"))

    run_id = af.trigger(DAG, {"direction": "both"})
    _wait_until_w1_syncs(cluster, received_before)  # entities are locked now
    _kill_tree(af, cluster.workers["w1"])

    assert af.wait_for_run(DAG, run_id, timeout=420) == "success", af.logs()
    tis = _task_instances(af, run_id)
    retried = {ti["task_id"] for ti in tis if (ti.get("try_number") or 0) > 1}
    assert "sync" in retried, f"the lost worker's sync task was not retried: {retried}"
    assert all(ti["state"] == "success" for ti in tis if ti["task_id"] in ("sync", "report"))
    _assert_converged(sb, todo, parties_before)


def _wait_until_w1_syncs(cluster: Cluster, before: set[str], timeout: float = 180) -> int:
    """Until worker w1 has run one of the run's ``sync`` units for a few seconds while entities
    are locked (with more sync units than a worker has slots, both workers get some); return
    how many entities are locked at that moment."""
    deadline = time.monotonic() + timeout
    started: dict[str, float] = {}
    while time.monotonic() < deadline:
        log = cluster.worker_log("w1")
        _, finished = _celery_tasks(log)
        for celery_id, task_id in _WORKLOAD.findall(log):
            if task_id == "sync" and celery_id not in before and celery_id not in finished:
                started.setdefault(celery_id, time.monotonic())
        if any(time.monotonic() - t > 3 for t in started.values()):
            locked = sum(r.get("syncStatus") == "syncing" for r in _espo(cluster.sb).values())
            if locked:
                return locked
        time.sleep(0.5)
    raise TimeoutError(f"worker w1 got no sync task of the run\n{cluster.airflow.logs()}")


def _kill_tree(af: AirflowComponents, key: str) -> None:
    """SIGKILL a worker and every process below it (task runners have process groups of their
    own), as when its machine dies."""
    proc = af.procs.pop(key)
    root = psutil.Process(proc.pid)
    victims = [root, *root.children(recursive=True)]
    for victim in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    psutil.wait_procs(victims, timeout=10)
