"""What operators watch (seed "Monitoring"): metric names and values, alert texts, masking.

Plain Python without Airflow: the DAG glue (``dags/beteiligte_monitoring.py``) sends the numbers
computed here to Airflow's metrics (StatsD / OpenTelemetry) and the alert texts to a webhook;
the CLI (``include/cli``) shows the same numbers. Nothing here contains a personal value:
``syncErrorMessage`` texts of failed validations quote the differing values, so every message
that leaves EspoCRM goes through :func:`mask_error_message` first.

The seed asks to watch four things after a deployment:

* the number of ``permanently_failed`` entities (should go down),
* ``failed`` entities with a high ``syncRetryCount``,
* validation failures,
* auto-reset activity of the scheduled run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from include.beteiligte_sync.clients import WhereItem
from include.beteiligte_sync.mapping import FIELD_NAMES
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.status import SyncStatus

#: Prefix of every metric of this project (Airflow adds its own ``[metrics] statsd_prefix``).
METRIC_PREFIX = "beteiligte_sync"

#: Metric name -> (kind, meaning). The one list the docs and the DAG glue use.
METRICS: dict[str, tuple[str, str]] = {
    f"{METRIC_PREFIX}.permanently_failed": (
        "gauge",
        "entities currently permanently_failed in EspoCRM (should go down)",
    ),
    f"{METRIC_PREFIX}.high_retry": (
        "gauge",
        "entities with syncRetryCount at or above the high-retry threshold",
    ),
    f"{METRIC_PREFIX}.validation_failures": (
        "counter",
        "round-trip validation failures in the run (seed #13)",
    ),
    f"{METRIC_PREFIX}.auto_resets": (
        "counter",
        "permanently_failed entities given another chance by the run (seed #12)",
    ),
    f"{METRIC_PREFIX}.entities": ("counter", "entities the run looked at"),
    f"{METRIC_PREFIX}.failures": ("counter", "entities that ended failed or permanently_failed"),
    f"{METRIC_PREFIX}.threshold_warnings": (
        "counter",
        "run reports whose thresholds were exceeded (each one also sends an alert)",
    ),
    f"{METRIC_PREFIX}.task_failed": (
        "counter",
        "task instances that failed for good (after Airflow's retries); each sends an alert",
    ),
    f"{METRIC_PREFIX}.outcome.<outcome>": (
        "counter",
        "entities per outcome of the run (created, espocrm_newer, conflict, failed, ...)",
    ),
}

#: Environment overrides of the monitoring settings (name -> SyncSettings / MonitoringSettings).
ENV_PREFIX = "BETEILIGTE_SYNC_"


@dataclass(frozen=True)
class MonitoringSettings:
    """Knobs of monitoring and alerting (defaults; see :func:`monitoring_settings_from_env`).

    :param high_retry_count: ``syncRetryCount`` from which an entity counts as "high retry".
    :param alert_conn_id: Airflow connection of the alert webhook (``http`` type, ``host`` = URL);
        when it does not exist, alerts are only logged and counted.
    :param list_limit: how many entities ``status`` lists per section.
    """

    high_retry_count: int = 3
    alert_conn_id: str = "beteiligte_alerts"
    list_limit: int = 20


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX + name} must be a whole number") from None


def sync_settings_from_env(env: Mapping[str, str] | None = None) -> SyncSettings:
    """:class:`SyncSettings` with the alert thresholds overridable by environment variables
    ``BETEILIGTE_SYNC_ALERT_PERMANENTLY_FAILED`` and ``BETEILIGTE_SYNC_ALERT_VALIDATION_FAILURES``
    (same values for the DAGs and the CLI), and the stale-lock TTL by
    ``BETEILIGTE_SYNC_LOCK_TTL_SECONDS`` (it must stay longer than a run's sync-to-validation
    span; shorter means a lock left by a lost worker is taken over sooner)."""
    env = os.environ if env is None else env
    d = SyncSettings()
    lock_ttl = _env_int(env, "LOCK_TTL_SECONDS", int(d.lock_ttl.total_seconds()))
    if lock_ttl <= 0:
        raise ValueError(f"{ENV_PREFIX}LOCK_TTL_SECONDS must be positive")
    return SyncSettings(
        lock_ttl=timedelta(seconds=lock_ttl),
        alert_permanently_failed=_env_int(
            env, "ALERT_PERMANENTLY_FAILED", d.alert_permanently_failed
        ),
        alert_validation_failures=_env_int(
            env, "ALERT_VALIDATION_FAILURES", d.alert_validation_failures
        ),
    )


def monitoring_settings_from_env(env: Mapping[str, str] | None = None) -> MonitoringSettings:
    """:class:`MonitoringSettings` from ``BETEILIGTE_SYNC_HIGH_RETRY_COUNT`` and
    ``BETEILIGTE_SYNC_ALERT_CONN_ID`` (defaults where unset)."""
    env = os.environ if env is None else env
    d = MonitoringSettings()
    return MonitoringSettings(
        high_retry_count=_env_int(env, "HIGH_RETRY_COUNT", d.high_retry_count),
        alert_conn_id=env.get(ENV_PREFIX + "ALERT_CONN_ID") or d.alert_conn_id,
    )


# --- queries --------------------------------------------------------------------------------------


class CountingClient(Protocol):
    """The part of the EspoCRM hook the gauges need (one request per count)."""

    def count_beteiligte(self, where: Sequence[WhereItem] = ()) -> int:
        """Number of records matching ``where``."""
        ...


def status_where(status: SyncStatus | None) -> list[WhereItem]:
    """``where`` of the entities with ``syncStatus`` = ``status`` (``None``: no status set)."""
    if status is None:
        return [{"type": "isNull", "attribute": "syncStatus"}]
    return [{"type": "equals", "attribute": "syncStatus", "value": status.value}]


def high_retry_where(threshold: int) -> list[WhereItem]:
    """``where`` of the entities whose ``syncRetryCount`` is at least ``threshold``."""
    return [{"type": "greaterThan", "attribute": "syncRetryCount", "value": threshold - 1}]


def current_gauges(espocrm: CountingClient, settings: MonitoringSettings) -> dict[str, int]:
    """The two gauges of the seed, counted in EspoCRM now (two list requests of size 1)."""
    return {
        f"{METRIC_PREFIX}.permanently_failed": espocrm.count_beteiligte(
            status_where(SyncStatus.PERMANENTLY_FAILED)
        ),
        f"{METRIC_PREFIX}.high_retry": espocrm.count_beteiligte(
            high_retry_where(settings.high_retry_count)
        ),
    }


def run_counters(report: Mapping[str, Any]) -> dict[str, int]:
    """Counter increments of one run, from the report dict (``RunReport.to_dict()``)."""
    counts: Mapping[str, int] = report.get("counts") or {}
    out = {
        f"{METRIC_PREFIX}.entities": int(report.get("entities") or 0),
        f"{METRIC_PREFIX}.validation_failures": int(counts.get("validation_failed", 0)),
        f"{METRIC_PREFIX}.auto_resets": int(counts.get("resets", 0)),
        f"{METRIC_PREFIX}.failures": len(report.get("failures") or []),
        f"{METRIC_PREFIX}.threshold_warnings": 1 if report.get("warnings") else 0,
    }
    for outcome, n in counts.items():
        if outcome != "resets" and n:
            out[f"{METRIC_PREFIX}.outcome.{outcome}"] = int(n)
    return out


# --- masking and alert texts ----------------------------------------------------------------------

_KEEP = {"(empty)", "(missing)", "(leer/empty)"}
_KOMM_LABEL = re.compile(r"^(email|phone(?: [A-Za-z]+)?)$")
_VALIDATION = "Validation failed: "


def _mask_side(side: str) -> str:
    text = side.strip()
    if text in _KEEP:
        return text
    label, sep, value = text.partition(": ")
    if sep and (label in FIELD_NAMES or _KOMM_LABEL.match(label)):
        return f"{label}: {value if value in _KEEP else '***'}"
    return "***"


def _mask_difference(part: str) -> str:
    left, sep, right = part.partition(" != ")
    if not sep:
        return "***"
    return f"{_mask_side(left)} != {_mask_side(right)}"


def mask_error_message(message: str | None) -> str | None:
    """``syncErrorMessage`` without personal values.

    Validation messages quote both sides (``"Validation failed: name: A != B; phone Office:
    +4…34 != (missing)"``); they become ``"Validation failed: name: *** != ***; ..."``. The
    engine's other messages hold field names, ids, counts and HTTP statuses only and pass.
    """
    if not message or _VALIDATION not in message:
        return message
    head, _, body = message.partition(_VALIDATION)
    return head + _VALIDATION + "; ".join(_mask_difference(p) for p in body.split("; "))


def masked_failures(failures: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The report's failure list with every error message masked."""
    return [{**item, "error": mask_error_message(item.get("error"))} for item in failures]


def threshold_alert(report: Mapping[str, Any], *, run: str, limit: int = 10) -> str | None:
    """Alert text for a report whose thresholds were exceeded, else ``None``."""
    warnings = report.get("warnings") or []
    if not warnings:
        return None
    lines = [f"Beteiligte sync {run}: thresholds exceeded", *[f"- {w}" for w in warnings]]
    failures = masked_failures(report.get("failures") or [])
    if failures:
        lines.append(f"Entities that need attention ({len(failures)}, first {limit}):")
        for item in failures[:limit]:
            lines.append(
                f"- {item['entity_id']} betnr {item.get('betnr') or '-'} "
                f"{item.get('outcome')}: {item.get('error') or ''}"
            )
    lines.append("Look closer with: beteiligte status; beteiligte compare <entity-id>")
    return "\n".join(lines)


def task_failure_alert(
    *, dag_id: str, run_id: str, task_id: str, map_index: int | None, try_number: int | None,
    error: BaseException | str | None, log_url: str | None,
) -> str:  # fmt: skip
    """Alert text for a task instance that failed for good. Only the error's *type* is named:
    exception texts of HTTP libraries may quote request data."""
    where = task_id if map_index in (None, -1) else f"{task_id}[{map_index}]"
    kind = type(error).__name__ if isinstance(error, BaseException) else "error"
    lines = [
        f"Beteiligte sync: task {dag_id}.{where} failed (run {run_id}, try {try_number}): {kind}",
        "Entities that were not reached are picked up by the next run; nothing is half-written "
        "(the engine releases every lock).",
    ]
    if log_url:
        lines.append(f"Log: {log_url}")
    return "\n".join(lines)
