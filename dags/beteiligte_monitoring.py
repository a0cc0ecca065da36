"""Monitoring of the Beteiligte DAGs: Airflow metrics, the failure notifier, threshold alerts.

The numbers and texts come from :mod:`include.beteiligte_sync.monitoring` (plain Python); this
module hands them to Airflow: metrics through Airflow's own ``Stats`` (StatsD or OpenTelemetry,
whatever ``[metrics]`` in airflow.cfg enables; without it they are dropped silently) and alerts
to an optional webhook connection (``beteiligte_alerts``: Teams, Slack, Mattermost or any
endpoint that accepts ``{"text": ...}``). Without that connection an alert is logged at ERROR
level, which Airflow's own log-based alerting can pick up. Nothing here ever raises: monitoring
must not fail a run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import requests
from airflow.sdk import BaseHook, BaseNotifier
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.observability.stats import Stats

from include.beteiligte_sync.monitoring import (
    CountingClient,
    MonitoringSettings,
    current_gauges,
    monitoring_settings_from_env,
    run_counters,
    task_failure_alert,
    threshold_alert,
)

log = logging.getLogger(__name__)

#: Seconds to wait for the webhook; an alert must not hold up the run for long.
ALERT_TIMEOUT = 10.0


def send_alert(text: str, *, conn_id: str | None = None) -> bool:
    """Log ``text`` at ERROR level and POST it as ``{"text": text}`` to the webhook of the
    ``conn_id`` connection (``host`` = full URL; ``extra.verify`` false for self-signed TLS).

    Returns True when the webhook accepted it. Never raises.
    """
    conn_id = conn_id or monitoring_settings_from_env().alert_conn_id
    log.error("ALERT %s", text)
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        log.info("No connection %r: the alert was only logged", conn_id)
        return False
    except Exception as exc:  # a broken secrets backend must not break the callback
        log.warning("Alert connection %r unavailable: %s", conn_id, type(exc).__name__)
        return False
    url = (conn.host or "").strip()
    if not url:
        log.warning("Alert connection %r has no host (the webhook URL)", conn_id)
        return False
    if "://" not in url:
        url = f"{conn.schema or 'https'}://{url}"
    verify = str(conn.extra_dejson.get("verify", True)).lower() not in ("false", "0", "no")
    try:
        response = requests.post(url, json={"text": text}, timeout=ALERT_TIMEOUT, verify=verify)
    except requests.RequestException as exc:
        log.warning("Alert webhook unreachable: %s", type(exc).__name__)
        return False
    if response.status_code >= 400:
        log.warning("Alert webhook answered %s", response.status_code)
        return False
    return True


def emit_run_metrics(report: Mapping[str, Any], gauges: Mapping[str, int] | None = None) -> None:
    """Send the run's counters and the current gauges to Airflow's metrics backend."""
    for name, value in run_counters(report).items():
        if value:
            Stats.incr(name, value)
    for name, value in (gauges or {}).items():
        Stats.gauge(name, value)


def monitor_report(
    report: Mapping[str, Any],
    *,
    run: str,
    espocrm: CountingClient | None = None,
    settings: MonitoringSettings | None = None,
) -> dict[str, int]:
    """After a run: metrics out, and an alert when the report's thresholds were exceeded.

    ``espocrm`` (the hook) counts the gauges; when EspoCRM cannot answer, the gauges are
    skipped and the run counters still go out. Returns the gauges sent.
    """
    settings = settings or monitoring_settings_from_env()
    gauges: dict[str, int] = {}
    if espocrm is not None:
        try:
            gauges = current_gauges(espocrm, settings)
        except Exception as exc:
            log.warning("Could not count the gauges in EspoCRM: %s", type(exc).__name__)
    emit_run_metrics(report, gauges)
    for warning in report.get("warnings") or []:
        log.warning("Threshold exceeded: %s", warning)
    text = threshold_alert(report, run=run)
    if text:
        send_alert(text, conn_id=settings.alert_conn_id)
    return gauges


class SyncFailureNotifier(BaseNotifier):
    """``on_failure_callback`` of every task of the Beteiligte DAGs.

    Runs once a task instance failed for good (after its retries): counts
    ``beteiligte_sync.task_failed`` and sends an alert naming the DAG, run, task and error type
    (never the error text: it may quote request data).

    :param conn_id: webhook connection (default: ``BETEILIGTE_SYNC_ALERT_CONN_ID`` or
        ``beteiligte_alerts``).
    """

    template_fields = ()

    def __init__(self, conn_id: str | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id

    def notify(self, context: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Build the alert from the task context and send it."""
        try:
            ti = context.get("ti") or context.get("task_instance")
            text = task_failure_alert(
                dag_id=str(getattr(ti, "dag_id", None) or context.get("dag_id") or "?"),
                run_id=str(getattr(ti, "run_id", None) or context.get("run_id") or "?"),
                task_id=str(getattr(ti, "task_id", "?")),
                map_index=getattr(ti, "map_index", None),
                try_number=getattr(ti, "try_number", None),
                error=context.get("exception"),
                log_url=_log_url(ti),
            )
            Stats.incr("beteiligte_sync.task_failed")
            send_alert(text, conn_id=self.conn_id)
        except Exception as exc:  # a notifier that raises hides the original failure
            log.error("Failure notifier could not run: %s", type(exc).__name__)


def _log_url(ti: Any) -> str | None:
    try:
        return str(ti.log_url) if ti is not None else None
    except Exception:  # needs [api] base_url; optional in an alert
        return None


#: The instance the DAGs' default_args use.
on_failure = SyncFailureNotifier()
