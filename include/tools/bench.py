"""``make bench``: throughput, API calls per outcome, Airflow's cost and memory of the sync.

Against the sandbox (a separate process) with a fixed latency added to every API call
(``--latency-ms``, default 20) and the configured API concurrency (the pool slots,
:data:`~include.beteiligte_sync.fanout.API_CONCURRENCY`), for each size (``--sizes``, default
1,000 and 10,000 entities):

1. **World.** N linked, already synced parties in three groups of equal size: *unchanged*,
   *Stammdaten* changed in EspoCRM, and *one Kommunikation* (a phone number) changed in EspoCRM.
   Built once from a small generated scenario synced through the engine, then copied N times.
2. **Calls per entity by outcome.** A sample of each group, synced group by group; the sandbox's
   own counters per API (the token request and the list calls of selection/record fetch, one per
   200 entities, are shown apart).
3. **Direct engine loop** over all N in a fresh process: reset, select, one worker per pool slot
   (each works through its round-robin share, sync + validation), entities per second, the ratio
   of wall time to the API-bound minimum (calls x latency / concurrency) of the same run, the
   highest number of calls the sandbox saw in flight, and peak RSS.
4. **Airflow** (``--airflow-sizes``, default 1,000): the same world, one full ``beteiligte_sync``
   run under a real api-server, scheduler and dag-processor (LocalExecutor, SQLite, fresh
   AIRFLOW_HOME), from trigger to the run's end; ratio to the direct loop.

Figures are printed as tables; ``--json FILE`` writes them for the README. The machine's noise
shows in the figures: compare ratios of one run, not absolute times between machines.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.console import Console
from rich.table import Table

from include.beteiligte_sync import sync as engine
from include.beteiligte_sync.clients import EspoCrmClient, Record
from include.beteiligte_sync.fanout import API_CONCURRENCY, WorkUnit, split_into_units
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.status import SyncStatus
from sandbox.admin import SandboxAdmin
from sandbox.generate import generate_scenario

if TYPE_CHECKING:
    from include.beteiligte_sync.clients import AdvowareClient

PROJECT_DIR = Path(__file__).resolve().parents[2]
GROUPS = ("unchanged", "stammdaten", "kommunikation")
TOKEN_CALL = "POST /api/v1/Token"
#: The list call: candidate selection and a unit's record fetch (up to 200 records per call).
LIST_CALL = "GET /api/v1/CBeteiligte"
#: Size of the generated scenario that is synced once and copied into every world.
TEMPLATE_SIZE = 120
CALIBRATION_SAMPLE = 60
console = Console(width=160)


def utc_now() -> datetime:
    """The clock handed to the engine."""
    return datetime.now(UTC)


# --- the direct engine loop (also run as a worker process: ``bench direct``) -------------------


class _IdsOnly:
    """The EspoCRM client as the selection sees it: list calls return ids only.

    A run needs only the candidates' ids up front (records are fetched per page by the unit that
    syncs them), so memory does not grow with the number of candidates.
    """

    def __init__(self, espocrm: EspoCrmClient) -> None:
        self._espocrm = espocrm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._espocrm, name)

    def iter_beteiligte(self, where: Any = (), **kwargs: Any) -> Iterator[Record]:
        """Same call, ``select=["id"]``."""
        kwargs["select"] = ["id"]
        return self._espocrm.iter_beteiligte(where, **kwargs)


def select_ids(
    espocrm: EspoCrmClient, *, settings: SyncSettings, limit: int | None = None
) -> list[str]:
    """The candidate ids of a scheduled run (the engine's selection, ids only)."""
    view = cast(EspoCrmClient, _IdsOnly(espocrm))
    records = engine.select_candidates(view, clock=utc_now, settings=settings, limit=limit)
    return [str(record["id"]) for record in records]


def sync_unit_inline(
    unit: WorkUnit, espocrm: EspoCrmClient, advoware: AdvowareClient, settings: SyncSettings
) -> Counter[str]:
    """The engine's unit runner (the path of the DAG's ``sync`` task), validating inline."""
    results = engine.sync_unit(
        unit["entity_ids"],
        espocrm,
        advoware,
        clock=utc_now,
        settings=settings,
        validate_inline=True,
    )
    return Counter(result.outcome for result in results)


def direct_loop(
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    concurrency: int,
    settings: SyncSettings,
    limit: int | None = None,
    entity_ids: Sequence[str] | None = None,
) -> Counter[str]:
    """A whole run without Airflow: reset, select, then one worker per pool slot.

    Each worker handles one round-robin share of the candidates sequentially, exactly like one
    mapped ``sync`` task instance does, so at most ``concurrency`` calls are in flight.
    """
    engine.reset_due_permanently_failed(espocrm, clock=utc_now, settings=settings)
    ids = list(entity_ids) if entity_ids else select_ids(espocrm, settings=settings, limit=limit)
    units = split_into_units(ids, max_units=1, batches=concurrency)
    outcomes: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="unit") as pool:
        for counts in pool.map(
            lambda unit: sync_unit_inline(unit, espocrm, advoware, settings), units
        ):
            outcomes.update(counts)
    return outcomes


def _rss_kb() -> int:
    """Current resident set size of this process in KiB (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class RssSampler:
    """RSS of this process every ``interval`` seconds while the loop runs (a daemon thread).

    Memory is flat in the number of entities when the RSS stops growing once the loop is under
    way: the growth over the last three quarters of the loop is compared across sizes, where
    per-entity data would grow ten times with ten times the entities.
    """

    interval: float = 0.2
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RssSampler:
        started = time.perf_counter()

        def sample() -> None:
            while not self._stop.wait(self.interval):
                self.samples.append((time.perf_counter() - started, _rss_kb()))

        self._thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, fraction: float, wall: float) -> int:
        """RSS (KiB) at ``fraction`` of the loop's wall time (the last sample before it)."""
        before = [rss for when, rss in self.samples if when <= fraction * wall]
        return before[-1] if before else _rss_kb()


def worker_main(args: argparse.Namespace) -> int:
    """``bench direct``: one direct loop in this (fresh) process; prints one JSON line."""
    sys.path.insert(0, str(PROJECT_DIR / "plugins"))
    from airflow.sdk.log import configure_logging
    from hooks.advoware import AdvowareHook
    from hooks.espocrm import EspoCrmHook

    # The engine logs at INFO, as in a task: to a file, like a task's log, not to stdout.
    log_file = open(args.log_file, "a")  # noqa: SIM115  (open for the process's lifetime)
    configure_logging(log_level="INFO", output=log_file, colored_console_log=False)

    ids = json.loads(Path(args.ids_file).read_text()) if args.ids_file else None
    espocrm, advoware = EspoCrmHook(), AdvowareHook()
    rss_before = _rss_kb()
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    started = time.perf_counter()
    with RssSampler() as rss:
        outcomes = direct_loop(
            espocrm,
            advoware,
            concurrency=args.concurrency,
            settings=SyncSettings(),
            limit=args.limit,
            entity_ids=ids,
        )
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "wall_seconds": wall,
                "outcomes": dict(outcomes),
                "rss_before_kb": rss_before,
                "rss_peak_kb": usage.ru_maxrss,  # KiB on Linux
                "rss_quarters_kb": [rss.at(q / 4, wall) for q in (1, 2, 3, 4)],
                "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu_before,
            }
        ),
        flush=True,
    )
    return 0


# --- the sandbox process ---------------------------------------------------------------------


@dataclass
class SandboxProcess:
    """The sandbox in its own process (its state must not count as the loop's memory)."""

    latency_ms: int
    proc: subprocess.Popen[str] | None = None
    conn_env: dict[str, str] = field(default_factory=dict)
    espocrm: SandboxAdmin | None = None
    advoware: SandboxAdmin | None = None

    def __enter__(self) -> SandboxProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "sandbox", "--espocrm-port", "0", "--advoware-port", "0",
                "--latency-ms", str(self.latency_ms), "--print-conn-env",
            ],
            cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        urls: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            found = re.match(r"(AIRFLOW_CONN_\w+)='(.*)'$", line.strip())
            if found:
                self.conn_env[found.group(1)] = found.group(2)
            elif "sandbox:" in line:
                urls.append(line.split()[2].removesuffix("/api/v1"))
            if len(self.conn_env) == 2:
                break
        if len(urls) != 2 or len(self.conn_env) != 2:
            self.__exit__()
            raise RuntimeError("the sandbox did not start")
        self.espocrm, self.advoware = SandboxAdmin(urls[0]), SandboxAdmin(urls[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    @property
    def admins(self) -> tuple[SandboxAdmin, SandboxAdmin]:
        """Admin clients of EspoCRM and Advoware."""
        assert self.espocrm is not None and self.advoware is not None
        return self.espocrm, self.advoware

    def load(self, world: Mapping[str, Any]) -> None:
        """Replace both systems' data by ``world`` and forget the counters."""
        for admin in self.admins:
            admin.load(world)
            admin.reset_counters()

    def configure_latency(self, latency_ms: int) -> None:
        """Set the latency added to every product call."""
        for admin in self.admins:
            admin.configure(latency_ms=latency_ms)

    def counters(self) -> dict[str, Any]:
        """Calls per API and template, and the highest number of calls in flight at once."""
        espocrm, advoware = (admin.counters() for admin in self.admins)
        return {
            "espocrm": _flatten(espocrm["calls"]),
            "advoware": _flatten(advoware["calls"]),
            "max_concurrent": max(espocrm["max_concurrent"], advoware["max_concurrent"]),
        }

    def state(self) -> dict[str, Any]:
        """Both systems' data in scenario shape."""
        espocrm, advoware = (admin.state() for admin in self.admins)
        return {"espocrm": espocrm, "advoware": advoware}


def _flatten(calls: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    return {key: sum(by_status.values()) for key, by_status in calls.items()}


def run_direct(
    sb: SandboxProcess,
    *,
    concurrency: int,
    workdir: Path,
    limit: int | None = None,
    entity_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run :func:`worker_main` in a fresh process against ``sb``; return its figures."""
    ids_file = ""
    if entity_ids:
        path = workdir / "ids.json"
        path.write_text(json.dumps(list(entity_ids)))
        ids_file = str(path)
    command = [
        sys.executable, "-m", "include.tools.bench", "direct",
        "--concurrency", str(concurrency), "--log-file", str(workdir / "direct.log"),
    ]  # fmt: skip
    if limit:
        command += ["--limit", str(limit)]
    if ids_file:
        command += ["--ids-file", ids_file]
    env = {**os.environ, **sb.conn_env, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "*"}
    done = subprocess.run(
        command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"direct loop failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@dataclass
class InProcess:
    """The hooks in this process (template sync and calibration: no process start per step)."""

    conn_env: Mapping[str, str]
    log_file: Path
    _clients: tuple[Any, Any] | None = None

    def clients(self) -> tuple[EspoCrmClient, AdvowareClient]:
        """EspoCRM and Advoware hooks pointed at the sandbox (engine logs to ``log_file``)."""
        if self._clients is None:
            os.environ.update(self.conn_env)
            sys.path.insert(0, str(PROJECT_DIR / "plugins"))
            from airflow.sdk.log import configure_logging
            from hooks.advoware import AdvowareHook
            from hooks.espocrm import EspoCrmHook

            output = open(self.log_file, "a")  # noqa: SIM115  (open for the process's lifetime)
            configure_logging(log_level="INFO", output=output, colored_console_log=False)
            self._clients = (EspoCrmHook(), AdvowareHook())
        return self._clients

    def run(
        self, *, limit: int | None = None, entity_ids: Sequence[str] | None = None
    ) -> Counter[str]:
        """:func:`direct_loop` in this process."""
        espocrm, advoware = self.clients()
        return direct_loop(
            espocrm,
            advoware,
            concurrency=API_CONCURRENCY,
            settings=SyncSettings(),
            limit=limit,
            entity_ids=entity_ids,
        )


# --- the world: N synced parties in three groups ---------------------------------------------


def synced_template(
    sb: SandboxProcess, local: InProcess, *, seed: int, size: int = TEMPLATE_SIZE
) -> list[dict[str, Any]]:
    """Pairs ``{"record", "party"}`` that the engine synced to ``clean`` (latency off)."""
    sb.configure_latency(0)
    sb.load(generate_scenario(size, seed))
    for _ in range(2):  # the second pass settles what the first one left dirty
        local.run(limit=size * 2)
    state = sb.state()
    parties = {p["betNr"]: p for p in state["advoware"]["Beteiligte"]}
    pairs = [
        {"record": record, "party": parties[record["betnr"]]}
        for record in state["espocrm"]["CBeteiligte"]
        if record.get("syncStatus") == SyncStatus.CLEAN and record.get("betnr") in parties
    ]
    if not any(_has_phone(pair["record"]) for pair in pairs):
        raise RuntimeError("the synced template has no party with a phone number")
    return pairs


def _has_phone(record: Mapping[str, Any]) -> bool:
    return bool(record.get("phoneNumberData"))


def build_world(
    template: Sequence[Mapping[str, Any]], size: int
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``size`` copies of synced pairs (new ids and betNr), dealt into :data:`GROUPS`.

    The Kommunikation group only takes parties that have a phone number in EspoCRM.
    """
    with_phone = [pair for pair in template if _has_phone(pair["record"])]
    records: list[dict[str, Any]] = []
    parties: list[dict[str, Any]] = []
    groups: dict[str, list[str]] = {name: [] for name in GROUPS}
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    for index in range(size):
        group = GROUPS[index % len(GROUPS)]
        source = with_phone if group == "kommunikation" else template
        record, party = _copy_pair(source[index % len(source)], index)
        if group == "stammdaten":
            record.update(
                name=f"{record['name']} jun.", syncStatus=SyncStatus.DIRTY.value, modifiedAt=stamp
            )
        elif group == "kommunikation":
            phone = record["phoneNumberData"][0]
            phone["phoneNumber"] = f"+49 30 {5000000 + index}"
            record.update(syncStatus=SyncStatus.DIRTY.value, modifiedAt=stamp)
        groups[group].append(record["id"])
        records.append(record)
        parties.append(party)
    world = {"espocrm": {"CBeteiligte": records, "Note": []}, "advoware": {"Beteiligte": parties}}
    return world, groups


def _copy_pair(pair: Mapping[str, Any], index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    record, party = deepcopy(dict(pair["record"])), deepcopy(dict(pair["party"]))
    betnr = 100000 + index
    record.update(id=f"b{index:016x}", betnr=betnr)
    for key in ("phoneNumber", "emailAddress"):
        record.pop(key, None)  # derived from the *Data lists on load
    party["betNr"] = betnr
    for komm in party.get("kommunikation") or []:
        komm.pop("id", None)  # the sandbox numbers them; rowIds (in the hash) stay
        komm.pop("betNr", None)
    return record, party


# --- measurements ----------------------------------------------------------------------------


def calls_per_outcome(
    sb: SandboxProcess,
    world: Mapping[str, Any],
    groups: Mapping[str, Sequence[str]],
    local: InProcess,
) -> dict[str, dict[str, Any]]:
    """Per group: business calls per entity per API, list calls, outcomes (group by group)."""
    sb.load(world)
    figures: dict[str, dict[str, Any]] = {}
    for group in GROUPS:
        sample = list(groups[group][:CALIBRATION_SAMPLE])
        before = sb.counters()
        outcomes = local.run(entity_ids=sample)
        after = sb.counters()
        calls = {api: Counter(after[api]) - Counter(before[api]) for api in ("espocrm", "advoware")}
        business = {
            api: sum(n for key, n in c.items() if key not in (TOKEN_CALL, LIST_CALL))
            for api, c in calls.items()
        }
        figures[group] = {
            "entities": len(sample),
            "espocrm": business["espocrm"] / len(sample),
            "advoware": business["advoware"] / len(sample),
            "per_entity": sum(business.values()) / len(sample),
            "list_calls": calls["espocrm"][LIST_CALL],
            "outcomes": dict(outcomes),
        }
    return figures


def _total_calls(counters: Mapping[str, Any]) -> int:
    return sum(counters["espocrm"].values()) + sum(counters["advoware"].values())


def measure_direct(
    sb: SandboxProcess, world: Mapping[str, Any], size: int, *, latency_ms: int, workdir: Path
) -> dict[str, Any]:
    """The direct loop over all ``size`` entities, with the figures of that same run."""
    sb.load(world)
    result = run_direct(sb, concurrency=API_CONCURRENCY, workdir=workdir, limit=size)
    counters = sb.counters()
    return _run_figures(result["wall_seconds"], counters, size, latency_ms) | {
        "outcomes": result["outcomes"],
        "rss_before_mib": result["rss_before_kb"] / 1024,
        "rss_peak_mib": result["rss_peak_kb"] / 1024,
        # Growth in the 2nd, 3rd and 4th quarter of the loop's wall time.
        "rss_growth_per_quarter_mib": [
            (later - earlier) / 1024
            for earlier, later in itertools.pairwise(result["rss_quarters_kb"])
        ],
    }


def _run_figures(
    wall: float, counters: Mapping[str, Any], size: int, latency_ms: int
) -> dict[str, Any]:
    calls = _total_calls(counters)
    api_bound = calls * latency_ms / 1000 / API_CONCURRENCY
    return {
        "entities": size,
        "wall_seconds": wall,
        "entities_per_second": size / wall if wall else 0.0,
        "calls": calls,
        "api_bound_seconds": api_bound,
        "wall_to_api_bound": wall / api_bound if api_bound else 0.0,
        "max_concurrent": counters["max_concurrent"],
    }


def measure_airflow(
    sb: SandboxProcess,
    worlds: Mapping[int, Mapping[str, Any]],
    *,
    latency_ms: int,
    workdir: Path,
    repeat: int = 1,
) -> dict[int, dict[str, Any]]:
    """Full ``beteiligte_sync`` runs per world under real Airflow components (the median of
    ``repeat`` runs, each on a fresh copy of the world)."""
    from include.tools.airflow_runtime import AirflowComponents

    env = {"BETEILIGTE_SYNC_SCHEDULE": "none", **sb.conn_env}
    figures: dict[int, dict[str, Any]] = {}
    console.print("[bold]Airflow:[/] setting up a fresh AIRFLOW_HOME and starting components ...")
    with AirflowComponents(workdir / "airflow_home", env) as airflow:
        airflow.wait_for_dag("beteiligte_sync")
        for size, world in worlds.items():
            sb.load(world)
            _warm_up(airflow, world)
            runs = []
            for _ in range(repeat):
                sb.load(world)
                runs.append(_airflow_run(airflow, sb, size, latency_ms))
            figures[size] = median_run(runs)
    return figures


def _airflow_run(airflow: Any, sb: SandboxProcess, size: int, latency_ms: int) -> dict[str, Any]:
    run_id = airflow.trigger("beteiligte_sync", {"limit": size})
    state = airflow.wait_for_run("beteiligte_sync", run_id, timeout=3600, poll=0.5)
    if state != "success":
        raise RuntimeError(f"beteiligte_sync run {run_id} ended {state}")
    info = airflow.run_info("beteiligte_sync", run_id)
    wall = (_when(info["end_date"]) - _when(info["queued_at"])).total_seconds()
    report = airflow.xcom("beteiligte_sync", run_id, "report")
    return _run_figures(wall, sb.counters(), size, latency_ms) | {
        "outcomes": report.get("counts", {}),
        "tasks": task_timeline(airflow, run_id, _when(info["queued_at"])),
    }


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median wall time (the middle one; of two, the slower), with the wall
    times of all runs under ``wall_seconds_runs``."""
    ordered = sorted(runs, key=lambda run: run["wall_seconds"])
    return ordered[len(ordered) // 2] | {"wall_seconds_runs": [run["wall_seconds"] for run in runs]}


def task_timeline(airflow: Any, run_id: str, queued: datetime) -> dict[str, dict[str, float]]:
    """Per task: seconds after the run was queued when its first instance started and its last
    one ended, and the summed run time of its instances (where Airflow's time goes)."""
    answer = airflow.api("GET", f"/dags/beteiligte_sync/dagRuns/{run_id}/taskInstances")
    answer.raise_for_status()
    timeline: dict[str, dict[str, float]] = {}
    for ti in answer.json()["task_instances"]:
        if not ti.get("start_date") or not ti.get("end_date"):
            continue
        start = (_when(ti["start_date"]) - queued).total_seconds()
        end = (_when(ti["end_date"]) - queued).total_seconds()
        row = timeline.setdefault(ti["task_id"], {"start": start, "end": end, "busy": 0.0})
        row["start"], row["end"] = min(row["start"], start), max(row["end"], end)
        row["busy"] += end - start
    return dict(sorted(timeline.items(), key=lambda item: item[1]["start"]))


def _warm_up(airflow: Any, world: Mapping[str, Any]) -> None:
    """One dry run of a single entity: the first run after start-up pays one-off costs."""
    first = world["espocrm"]["CBeteiligte"][0]["id"]
    run_id = airflow.trigger("beteiligte_sync", {"entity_ids": [first], "dry_run": True})
    airflow.wait_for_run("beteiligte_sync", run_id, timeout=600, poll=0.5)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- output ----------------------------------------------------------------------------------


def _calls_table(figures: Mapping[str, Mapping[str, Any]]) -> Table:
    table = Table(title="API calls per entity by outcome (sample per group)")
    for column in ("group", "entities", "EspoCRM", "Advoware", "calls per entity", "target"):
        table.add_column(column, justify="left" if column == "group" else "right")
    targets = {"unchanged": "<= 2", "stammdaten": "<= 7", "kommunikation": "<= 7"}
    for group, row in figures.items():
        table.add_row(
            group,
            str(row["entities"]),
            f"{row['espocrm']:.2f}",
            f"{row['advoware']:.2f}",
            f"{row['per_entity']:.2f}",
            targets[group],
        )
    table.caption = "plus one list call per 200 entities (selection, record fetch) and one token"
    return table


def _runs_table(results: Mapping[str, Any], latency_ms: int) -> Table:
    table = Table(
        title=f"Runs ({latency_ms} ms per call, API concurrency {API_CONCURRENCY})",
    )
    columns = (
        "run", "entities", "wall s", "entities/s", "calls", "API-bound min s",
        "wall / API-bound", "max in flight", "peak RSS MiB", "RSS growth per quarter MiB",
        "Airflow / direct",
    )  # fmt: skip
    table.caption = (
        "median of the runs where a size was repeated; peak RSS of the loop's process, (+n): "
        "growth during the loop; growth in the 2nd, 3rd and 4th quarter of the loop (flat "
        "memory: near 0 for every size)"
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "run" else "right")
    for size, direct in results["direct"].items():
        growth = direct["rss_peak_mib"] - direct["rss_before_mib"]
        memory = f"{direct['rss_peak_mib']:.0f} (+{growth:.0f})"
        late = " ".join(f"{g:+.1f}" for g in direct["rss_growth_per_quarter_mib"])
        table.add_row("direct loop", *_run_cells(direct), memory, late, "")
        airflow = results["airflow"].get(size)
        if airflow:
            ratio = airflow["wall_seconds"] / direct["wall_seconds"]
            table.add_row("beteiligte_sync", *_run_cells(airflow), "", "", f"{ratio:.2f}")
    return table


def _timeline_table(size: int, tasks: Mapping[str, Mapping[str, float]]) -> Table:
    table = Table(title=f"beteiligte_sync over {size:,} entities: where the time goes")
    for column in ("task", "first start s", "last end s", "instances' run time s"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for task_id, row in tasks.items():
        table.add_row(task_id, f"{row['start']:.1f}", f"{row['end']:.1f}", f"{row['busy']:.1f}")
    table.caption = "seconds after the run was queued"
    return table


def _run_cells(row: Mapping[str, Any]) -> list[str]:
    return [
        f"{row['entities']:,}",
        f"{row['wall_seconds']:.1f}",
        f"{row['entities_per_second']:.1f}",
        f"{row['calls']:,}",
        f"{row['api_bound_seconds']:.1f}",
        f"{row['wall_to_api_bound']:.2f}",
        str(row["max_concurrent"]),
    ]


# --- main ------------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement; print tables as figures arrive; return all figures."""
    results: dict[str, Any] = {
        "latency_ms": args.latency_ms,
        "concurrency": API_CONCURRENCY,
        "calls_per_outcome": {},
        "direct": {},
        "airflow": {},
    }
    with tempfile.TemporaryDirectory(prefix="beteiligte-bench-") as tmp, SandboxProcess(0) as sb:
        workdir = Path(tmp)
        started = time.perf_counter()
        local = InProcess(sb.conn_env, workdir / "in_process.log")
        template = synced_template(sb, local, seed=args.seed, size=args.template_size)
        console.print(f"Synced template: {len(template)} parties ({_since(started)})")
        sb.configure_latency(args.latency_ms)
        worlds = {size: build_world(template, size) for size in args.sizes}
        first_world, first_groups = worlds[args.sizes[0]]
        results["calls_per_outcome"] = calls_per_outcome(sb, first_world, first_groups, local)
        console.print(_calls_table(results["calls_per_outcome"]))
        airflow_sizes = [] if args.no_airflow else [s for s in args.airflow_sizes if s in worlds]
        for size in args.sizes:
            # Sizes compared with Airflow are run --repeat times on both sides (median).
            repeat = args.repeat if size in airflow_sizes else 1
            console.print(f"Direct loop over {size:,} entities x{repeat} ... ({_since(started)})")
            results["direct"][size] = median_run(
                [
                    measure_direct(
                        sb, worlds[size][0], size, latency_ms=args.latency_ms, workdir=workdir
                    )
                    for _ in range(repeat)
                ]
            )
        if airflow_sizes:
            results["airflow"] = measure_airflow(
                sb,
                {s: worlds[s][0] for s in airflow_sizes},
                latency_ms=args.latency_ms,
                workdir=workdir,
                repeat=args.repeat,
            )
        for size, airflow_figures in results["airflow"].items():
            console.print(_timeline_table(size, airflow_figures["tasks"]))
        console.print(_runs_table(results, args.latency_ms))
        for kind, label in (("direct", "direct loop"), ("airflow", "beteiligte_sync")):
            for size, row in results[kind].items():
                if len(row["wall_seconds_runs"]) > 1:
                    walls = ", ".join(f"{w:.1f}" for w in row["wall_seconds_runs"])
                    console.print(f"{label} {size:,}: wall s of the repeated runs: {walls}")
        console.print(f"Total bench time: {_since(started)}")
    return results


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.0f} s"


def build_parser() -> argparse.ArgumentParser:
    """Command-line options (``direct`` is the worker the benchmark starts itself)."""
    parser = argparse.ArgumentParser(prog="python -m include.tools.bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--sizes", type=_sizes, default=[1000, 10000])
    parser.add_argument("--airflow-sizes", type=_sizes, default=[1000])
    parser.add_argument("--no-airflow", action="store_true", help="skip the Airflow runs")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per side for the sizes compared with Airflow (the median is shown)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--template-size",
        type=int,
        default=TEMPLATE_SIZE,
        help="generated parties synced once and copied into every world",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("direct", help="internal: one direct loop in this process")
    worker.add_argument("--concurrency", type=int, default=API_CONCURRENCY)
    worker.add_argument("--limit", type=int)
    worker.add_argument("--ids-file")
    worker.add_argument("--log-file", required=True)
    return parser


def _sizes(text: str) -> list[int]:
    """``"1000,10000"`` -> ``[1000, 10000]``."""
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m include.tools.bench``."""
    args = build_parser().parse_args(argv)
    if args.command == "direct":
        return worker_main(args)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    results = bench(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        console.print(f"Figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
