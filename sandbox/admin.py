"""``SandboxAdmin``: a small HTTP client for a stand-in's ``/_admin/`` API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import requests


class SandboxAdminError(RuntimeError):
    """An admin call was answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"sandbox admin call failed: {status} {body[:300]}")
        self.status = status
        self.body = body


class SandboxAdmin:
    """Admin client of one stand-in server (``base_url`` like ``http://127.0.0.1:8081``)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def close(self) -> None:
        """Close the underlying HTTP session."""
        self._session.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._session.request(
            method, f"{self.base_url}/_admin/{path}", json=body, timeout=self.timeout
        )
        if response.status_code >= 400:
            raise SandboxAdminError(response.status_code, response.text)
        return response.json() if response.content else None

    def reset(self) -> None:
        """Empty state; clear counters and faults."""
        self._call("POST", "reset")

    def load(self, scenario: Mapping[str, Any]) -> dict[str, int]:
        """Replace the state by this server's part of ``scenario``; return counts loaded."""
        return self._call("POST", "scenario", dict(scenario))["loaded"]

    def state(self) -> dict[str, Any]:
        """The server's state in scenario shape."""
        return self._call("GET", "state")

    def edit(self, edit: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """Change data as a person would, e.g. ``edit(id=..., fields={...})`` (EspoCRM),
        ``edit(betNr=n, fields={...})`` or ``edit(betNr=n, kommunikation={...})`` (Advoware),
        ``edit(create={...})``; returns the changed record."""
        return self._call("POST", "edit", {**(edit or {}), **kwargs})

    def counters(self) -> dict[str, Any]:
        """``{"calls": {"METHOD /template": {"200": n}}, "max_concurrent", "in_flight"}``."""
        return self._call("GET", "counters")

    def calls(self, key: str) -> int:
        """Total calls to ``"METHOD /path/template"`` whatever their status."""
        return sum(self.counters()["calls"].get(key, {}).values())

    def reset_counters(self) -> None:
        """Forget all call counts."""
        self._call("POST", "counters/reset")

    def set_faults(self, rules: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, Any]:
        """Replace the fault rules (see :mod:`sandbox.faults`)."""
        return self._call("POST", "faults", {"rules": list(rules), "seed": seed})

    def faults(self) -> dict[str, Any]:
        """The active fault rules with how often each fired."""
        return self._call("GET", "faults")

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._call("DELETE", "faults")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set ``latency_ms``, ``kommkz_zero_defect``, ``token_lifetime``; return settings."""
        return self._call("POST", "config", settings)

    def expire_tokens(self) -> None:
        """Advoware only: every issued token expires now."""
        self._call("POST", "expire-tokens")
