"""One Celery worker versus two: the same ``beteiligte_sync`` run on the distributed set-up.

``python -m include.tools.bench_workers`` (needs PostgreSQL and Redis on 127.0.0.1 and
``requirements-distributed.txt``). Sets up a fresh PostgreSQL database and Redis db (both
removed afterwards), the sandbox with ``--entities`` parties (most of them changed in EspoCRM)
and ``--latency-ms`` per API call, and an api-server, scheduler and dag-processor
(CeleryExecutor). Then for each worker count in ``--workers`` (default 1 and 2): reload the same
world, start that many ``airflow celery worker --concurrency <--slots>``, trigger one run through
the REST API and time it from its start to its end. Prints a table; ``--json FILE`` writes it.

All workers share this machine's cores; on separate machines a second worker also adds CPU.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from include.tools.airflow_runtime import AirflowComponents
from sandbox.generate import generate_scenario
from sandbox.server import Sandbox

DAG = "beteiligte_sync"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
REDIS_URL = "redis://127.0.0.1:6379"


def dirty_world(count: int, seed: int) -> dict[str, Any]:
    """The generated mix with three in four linked parties changed in EspoCRM (``dirty``)."""
    scenario = generate_scenario(count, seed=seed)
    for index, record in enumerate(scenario["espocrm"]["CBeteiligte"]):
        if record.get("syncStatus") == "clean" and index % 4 != 0:
            record["name"] = f"{record['name']} (neu)"
            record["syncStatus"] = "dirty"
    return scenario


@contextmanager
def scratch_database(prefix: str = "beteiligte_bench") -> Iterator[str]:
    """A fresh PostgreSQL database ``<prefix>_<random>``, dropped on exit (components that
    outlived their test or run may still hold connections: they are terminated first)."""
    import psycopg2

    name = f"{prefix}_{secrets.token_hex(4)}"
    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()


@contextmanager
def scratch_redis_db(db: int) -> Iterator[int]:
    """Redis db ``db``, flushed before and after."""
    import redis

    client = redis.Redis.from_url(f"{REDIS_URL}/{db}")
    client.flushdb()
    try:
        yield db
    finally:
        client.flushdb()
        client.close()


def _seconds(info: dict[str, Any]) -> float:
    start = datetime.fromisoformat(info["start_date"])
    end = datetime.fromisoformat(info["end_date"])
    return (end - start).total_seconds()


def measure(
    af: AirflowComponents, sb: Sandbox, world: dict[str, Any], workers: int, slots: int
) -> dict[str, Any]:
    """One run with ``workers`` Celery workers of ``slots`` each; its duration and outcome."""
    sb.load(world)
    sb.espocrm_admin.reset_counters()
    sb.advoware_admin.reset_counters()
    keys = []
    for n in range(workers):
        args = ("--concurrency", str(slots), "--celery-hostname", f"bench{n}@%h")
        af.start("celery worker", *args, "--skip-serve-logs")
        keys.append(" ".join(["celery worker", *args, "--skip-serve-logs"]))
    time.sleep(15)  # the workers connect to Redis before the first task is queued
    try:
        run_id = af.trigger(DAG, {"direction": "both"})
        state = af.wait_for_run(DAG, run_id, timeout=3600)
        report = af.xcom(DAG, run_id, "report")
        return {
            "workers": workers,
            "slots_per_worker": slots,
            "state": state,
            "entities": report["entities"],
            "seconds": round(_seconds(af.run_info(DAG, run_id)), 1),
            "max_concurrent_espocrm": sb.espocrm_admin.counters()["max_concurrent"],
            "max_concurrent_advoware": sb.advoware_admin.counters()["max_concurrent"],
        }
    finally:
        for key in keys:
            af.stop(key)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Set everything up once, measure every worker count, tear everything down."""
    world = dirty_world(args.entities, args.seed)
    results = []
    with (
        scratch_database() as database,
        scratch_redis_db(args.redis_db) as redis_db,
        Sandbox(scenario=world, latency_ms=args.latency_ms) as sb,
        tempfile.TemporaryDirectory(prefix="bench-workers-") as home,
    ):
        env = {
            "BETEILIGTE_SYNC_SCHEDULE": "none",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            **sb.airflow_conn_env(),
        }
        setup_args = ("--database", database, "--redis-db", str(redis_db))
        with AirflowComponents(Path(home), env, profile="distributed", setup_args=setup_args) as af:
            af.wait_for_dag(DAG)
            af.api("PATCH", f"/dags/{DAG}", json={"is_paused": False}).raise_for_status()
            for workers in args.workers:
                results.append(measure(af, sb, world, workers, args.slots))
                print(json.dumps(results[-1]), flush=True)
    return results


def _counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--workers", type=_counts, default=[1, 2], help="e.g. 1,2")
    parser.add_argument("--slots", type=int, default=2, help="worker_concurrency per worker")
    parser.add_argument("--redis-db", type=int, default=6)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = run(args)
    print(f"{'workers':>8} {'slots':>6} {'entities':>9} {'seconds':>8} {'peak calls E/A':>15}")
    for r in results:
        peak = f"{r['max_concurrent_espocrm']}/{r['max_concurrent_advoware']}"
        print(
            f"{r['workers']:>8} {r['slots_per_worker']:>6} {r['entities']:>9} "
            f"{r['seconds']:>8} {peak:>15}  {r['state']}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
