"""Request statistics of a hook: how many calls, which answers, how long they took.

Keys are ``"METHOD /path/template"`` (ids replaced by ``{id}``, ``{betNr}``, ...), so the
numbers can be shown in run summaries and benchmarks without any personal data in them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

#: Status key used when no HTTP answer arrived (timeout, connection reset, refused).
NO_RESPONSE = "no_response"


@dataclass
class RequestStats:
    """Counts and durations of the HTTP requests a hook made.

    :param calls: per request template, the number of answers per status (``"200"``,
        ``"503"``, ``"no_response"``).
    :param seconds: per request template, the summed duration of its requests.
    """

    calls: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_calls(self) -> int:
        """Number of HTTP requests made (every attempt counts, retries included)."""
        return sum(sum(per_status.values()) for per_status in self.calls.values())

    @property
    def total_seconds(self) -> float:
        """Summed duration of all requests, in seconds."""
        return sum(self.seconds.values())

    def count(self, request: str, status: str | int | None = None) -> int:
        """Number of requests to ``request`` (``"GET /api/v1/..."``), optionally with one status."""
        per_status = self.calls.get(request, {})
        if status is None:
            return sum(per_status.values())
        return per_status.get(str(status), 0)

    def by_status(self) -> dict[str, int]:
        """Number of requests per status over all templates."""
        totals: dict[str, int] = {}
        for per_status in self.calls.values():
            for status, n in per_status.items():
                totals[status] = totals.get(status, 0) + n
        return totals

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (for XCom, run summaries and benchmark output)."""
        return {
            "total_calls": self.total_calls,
            "total_seconds": round(self.total_seconds, 3),
            "by_status": self.by_status(),
            "calls": {request: dict(per_status) for request, per_status in self.calls.items()},
            "seconds": {request: round(s, 3) for request, s in self.seconds.items()},
        }


class StatsRecorder:
    """Thread-safe collector behind ``hook.stats``; hands out snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = RequestStats()

    def record(self, request: str, status: str | int, seconds: float) -> None:
        """Count one request to ``request`` answered with ``status`` after ``seconds``."""
        key = str(status)
        with self._lock:
            per_status = self._stats.calls.setdefault(request, {})
            per_status[key] = per_status.get(key, 0) + 1
            self._stats.seconds[request] = self._stats.seconds.get(request, 0.0) + seconds

    def snapshot(self) -> RequestStats:
        """A copy of the numbers so far (later requests do not change it)."""
        with self._lock:
            return RequestStats(
                calls={
                    request: dict(per_status) for request, per_status in self._stats.calls.items()
                },
                seconds=dict(self._stats.seconds),
            )

    def reset(self) -> None:
        """Forget all numbers."""
        with self._lock:
            self._stats = RequestStats()
