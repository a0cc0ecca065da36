"""Monitoring: masking, metrics through Airflow's Stats, the failure notifier and the threshold
alert, called directly, wired into the DAGs, and firing on a real failing DAG run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import beteiligte_monitoring as monitoring_glue
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.observability.stats import initialize

from include.beteiligte_sync import monitoring
from include.beteiligte_sync.errors import AuthFailed
from sandbox.server import Sandbox

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
FAST = {"retry_wait_base": 0.01, "retry_wait_max": 0.05, "retry_attempts": 2}


# --- helpers ----------------------------------------------------------------------------------


class Webhook:
    """A local webhook that records the JSON bodies it receives."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    with Webhook() as hook:
        conn = {"conn_type": "http", "host": hook.url}
        monkeypatch.setenv("AIRFLOW_CONN_BETEILIGTE_ALERTS", json.dumps(conn))
        yield hook


class RecordingStats:
    """A metrics backend for Airflow's ``Stats`` that remembers what was sent."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.gauges: dict[str, float] = {}

    def incr(self, stat: str, count: int = 1, rate: float = 1, *, tags: Any = None) -> None:
        self.counters[stat] = self.counters.get(stat, 0) + count

    def decr(self, stat: str, count: int = 1, rate: float = 1, *, tags: Any = None) -> None:
        self.counters[stat] = self.counters.get(stat, 0) - count

    def gauge(
        self, stat: str, value: float, rate: float = 1, delta: bool = False, *, tags: Any = None
    ) -> None:
        self.gauges[stat] = value

    def timing(self, stat: str, dt: Any, *, tags: Any = None) -> None:
        pass

    def timer(self, *args: Any, **kwargs: Any) -> Any:
        return SimpleNamespace(start=lambda: None, stop=lambda send=True: None, duration=None)


@pytest.fixture
def stats() -> Iterator[RecordingStats]:
    recorder = RecordingStats()
    initialize(factory=lambda: recorder, export_legacy_names=False)  # type: ignore[arg-type,return-value]
    yield recorder
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger

    initialize(factory=NoStatsLogger, export_legacy_names=False)


REPORT = {
    "counts": {"clean": 3, "validation_failed": 2, "permanently_failed": 1, "resets": 4},
    "failures": [
        {"entity_id": "e1", "betnr": 7, "outcome": "validation_failed",
         "error": "Validation failed: name: Max3 Mustermann != 22Test8 GmbH"},
    ],
    "api_calls": {"espocrm": 10},
    "entities": 6,
    "warnings": ["2 validation failures (threshold 1)"],
}  # fmt: skip


# --- pure parts -------------------------------------------------------------------------------


def test_validation_messages_are_masked_field_names_kept() -> None:
    message = (
        "Validation failed: name: Max3 Mustermann != 22Test8 GmbH; vorname: (empty) != Max; "
        "phone Office: +4…34 != (missing); (missing) != email: ma…de"
    )
    assert monitoring.mask_error_message(message) == (
        "Validation failed: name: *** != ***; vorname: (empty) != ***; "
        "phone Office: *** != (missing); (missing) != email: ***"
    )
    plain = "API error: ServerError, GET /api/v1/advonet/Beteiligte/{betNr}, status 503"
    assert monitoring.mask_error_message(plain) == plain
    assert monitoring.mask_error_message(None) is None


def test_run_counters_follow_the_report() -> None:
    counters = monitoring.run_counters(REPORT)
    assert counters["beteiligte_sync.validation_failures"] == 2
    assert counters["beteiligte_sync.auto_resets"] == 4
    assert counters["beteiligte_sync.entities"] == 6
    assert counters["beteiligte_sync.threshold_warnings"] == 1
    assert counters["beteiligte_sync.outcome.clean"] == 3
    assert "beteiligte_sync.outcome.resets" not in counters


def test_thresholds_and_high_retry_come_from_the_environment() -> None:
    env = {
        "BETEILIGTE_SYNC_ALERT_PERMANENTLY_FAILED": "3",
        "BETEILIGTE_SYNC_HIGH_RETRY_COUNT": "4",
    }
    assert monitoring.sync_settings_from_env(env).alert_permanently_failed == 3
    assert monitoring.sync_settings_from_env({}).alert_validation_failures == 5
    assert monitoring.monitoring_settings_from_env(env).high_retry_count == 4
    with pytest.raises(ValueError, match="whole number"):
        monitoring.sync_settings_from_env({"BETEILIGTE_SYNC_ALERT_VALIDATION_FAILURES": "many"})


def test_every_documented_metric_is_in_the_operations_guide() -> None:
    guide = (DAGS_DIR.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    for name in monitoring.METRICS:
        assert f"`{name}`" in guide, name


# --- the Airflow side, called directly --------------------------------------------------------


def test_report_sends_metrics_and_a_masked_threshold_alert(
    stats: RecordingStats, webhook: Webhook
) -> None:
    counting = SimpleNamespace(count_beteiligte=lambda where: 2)
    gauges = monitoring_glue.monitor_report(REPORT, run="manual__1", espocrm=counting)  # type: ignore[arg-type]
    assert gauges == {"beteiligte_sync.permanently_failed": 2, "beteiligte_sync.high_retry": 2}
    assert stats.counters["beteiligte_sync.validation_failures"] == 2
    assert stats.counters["beteiligte_sync.auto_resets"] == 4
    assert stats.gauges["beteiligte_sync.permanently_failed"] == 2
    (body,) = webhook.bodies
    assert "manual__1: thresholds exceeded" in body["text"]
    assert "2 validation failures (threshold 1)" in body["text"]
    assert "e1 betnr 7" in body["text"] and "name: *** != ***" in body["text"]
    assert "Mustermann" not in body["text"]


def test_report_within_thresholds_sends_no_alert(stats: RecordingStats, webhook: Webhook) -> None:
    quiet = {**REPORT, "warnings": []}
    monitoring_glue.monitor_report(quiet, run="r", espocrm=None)
    assert webhook.bodies == []
    assert "beteiligte_sync.threshold_warnings" not in stats.counters


def test_failure_notifier_alerts_with_task_and_error_type_only(
    stats: RecordingStats, webhook: Webhook
) -> None:
    ti = SimpleNamespace(
        dag_id="beteiligte_sync", run_id="scheduled__x", task_id="sync", map_index=3,
        try_number=3, log_url="http://airflow/log",
    )  # fmt: skip
    error = AuthFailed("refused key sandbox-espocrm-key", status=401)
    monitoring_glue.SyncFailureNotifier()({"ti": ti, "exception": error})
    (body,) = webhook.bodies
    assert (
        "task beteiligte_sync.sync[3] failed (run scheduled__x, try 3): AuthFailed" in body["text"]
    )
    assert "http://airflow/log" in body["text"]
    assert "sandbox-espocrm-key" not in body["text"]
    assert stats.counters["beteiligte_sync.task_failed"] == 1


def test_notifier_without_alert_connection_only_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_BETEILIGTE_ALERTS", raising=False)
    assert monitoring_glue.send_alert("hello", conn_id="beteiligte_alerts_missing") is False
    assert any("ALERT hello" in r.getMessage() for r in caplog.records)


def test_every_task_of_both_dags_has_the_failure_notifier() -> None:
    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    for dag in bag.dags.values():
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert any(isinstance(c, monitoring_glue.SyncFailureNotifier) for c in callbacks), (
                f"{dag.dag_id}.{task.task_id}"
            )


# --- a real failing DAG run -------------------------------------------------------------------


def test_a_failing_run_fires_the_alert(
    airflow_db: Path, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Sandbox() as sb:
        for name, value in sb.airflow_conn_env().items():
            conn = json.loads(value)
            conn["extra"] = {**conn.get("extra", {}), **FAST}
            if "ESPOCRM" in name:
                conn["password"] = "revoked-api-key"  # every EspoCRM call: 401
            monkeypatch.setenv(name, json.dumps(conn))
        dag = DagBag(dag_folder=str(DAGS_DIR)).dags["beteiligte_sync"]
        for task in dag.tasks:
            task.retries = 0  # fail for good at once instead of waiting for Airflow's retries
        conf = {"entity_ids": [], "direction": "both", "force": False, "dry_run": False}
        dag_run = dag.test(run_conf={**conf, "limit": None})
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["reset_permanently_failed"] == "failed"
    texts = [body["text"] for body in webhook.bodies]
    assert any("task beteiligte_sync.reset_permanently_failed failed" in t for t in texts), texts
    assert any("AuthFailed" in t for t in texts)
    assert not any("revoked-api-key" in t for t in texts)
