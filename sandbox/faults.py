"""Seeded, deterministic fault injection for the stand-ins.

A rule names a method (or ``*``) and a path (a template such as ``/api/v1/CBeteiligte/{id}``
or a glob over templates and real paths, e.g. ``/api/v1/advonet/*``), a ``kind``, a firing
``rate`` (drawn from one ``random.Random(seed)`` per server, so a run is reproducible) and an
optional ``count`` (fires at most that often). Kinds:

* ``latency``: sleep ``seconds`` and go on (several latency rules add up);
* ``error``: answer ``status`` (500/502/503...) without performing the request;
* ``rate_limit``: answer 429 with ``Retry-After: retry_after`` without performing it;
* ``hang``: sleep ``seconds`` before performing and answering (the client should time out);
* ``reset``: reset the TCP connection without performing the request;
* ``drop_response``: perform the request, then reset the connection without answering
  (the lost-POST-response case);
* ``expire_tokens``: let every issued token expire, then go on (Advoware answers 401);
* ``non_utf8``: perform the request, then answer with its status and its JSON body encoded as
  latin-1 (with an ``ä`` added: a ``"sandboxFault"`` key, a list item) although the
  ``Content-Type`` says ``application/json; charset=utf-8``: clients must refuse the answer.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

FAULT_KINDS = frozenset(
    {
        "latency",
        "error",
        "rate_limit",
        "hang",
        "reset",
        "drop_response",
        "expire_tokens",
        "non_utf8",
    }
)


@dataclass
class FaultRule:
    """One fault rule; ``fired`` counts how often it has fired so far."""

    kind: str
    method: str = "*"
    path: str = "*"
    status: int = 503
    rate: float = 1.0
    count: int | None = None
    retry_after: int = 1
    seconds: float = 2.0
    fired: int = 0

    def matches(self, method: str, template: str, path: str) -> bool:
        """Whether the rule addresses this request (by template or by real path)."""
        if self.method not in ("*", method):
            return False
        return any(
            candidate == self.path or fnmatch.fnmatchcase(candidate, self.path)
            for candidate in (template, path)
        )

    def exhausted(self) -> bool:
        """Whether the rule has fired ``count`` times already."""
        return self.count is not None and self.fired >= self.count


def parse_rule(data: Mapping[str, Any]) -> FaultRule:
    """Validate one rule from JSON; ``ValueError`` names the bad key."""
    if not isinstance(data, Mapping):
        raise ValueError("a rule must be an object")
    kind = data.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}")
    rule = FaultRule(kind=str(kind))
    rule.method = _text(data, "method", "*").upper()
    rule.path = _text(data, "path", "*")
    rule.status = int(_number(data, "status", 503))
    rule.rate = float(_number(data, "rate", 1.0))
    rule.retry_after = int(_number(data, "retry_after", 1))
    rule.seconds = float(_number(data, "seconds", 2.0))
    count = data.get("count")
    if count is not None:
        rule.count = int(_number(data, "count", 0))
    if not 0.0 <= rule.rate <= 1.0:
        raise ValueError("rate must lie in 0..1")
    if not 100 <= rule.status <= 599:
        raise ValueError("status must be an HTTP status")
    return rule


def _text(data: Mapping[str, Any], key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _number(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{key} must be a non-negative number")
    return float(value)


class FaultInjector:
    """The active rules of one server and the seeded random source deciding when they fire."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)
        self._seed = seed

    def set_rules(self, rules: Sequence[Mapping[str, Any]], seed: int = 0) -> None:
        """Replace the rules and restart the random source with ``seed``."""
        if not isinstance(rules, Sequence) or isinstance(rules, str | bytes):
            raise ValueError("rules must be a list")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError("seed must be an integer")
        parsed = [parse_rule(rule) for rule in rules]
        with self._lock:
            self._rules = parsed
            self._random = random.Random(seed)
            self._seed = seed

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules = []

    def pick(
        self,
        method: str,
        template: str,
        path: str,
        sleep: Callable[[float], Any],
    ) -> FaultRule | None:
        """Apply firing latency rules (via ``sleep``) and return the first other rule that
        fires for this request, or ``None``."""
        delays: list[float] = []
        chosen: FaultRule | None = None
        with self._lock:
            for rule in self._rules:
                if rule.exhausted() or not rule.matches(method, template, path):
                    continue
                if rule.rate < 1.0 and self._random.random() >= rule.rate:
                    continue
                rule.fired += 1
                if rule.kind == "latency":
                    delays.append(rule.seconds)
                    continue
                chosen = rule
                break
        for delay in delays:
            sleep(delay)
        return chosen

    def dump(self) -> dict[str, Any]:
        """The rules (with how often each fired) and the seed."""
        with self._lock:
            return {"rules": [asdict(rule) for rule in self._rules], "seed": self._seed}
