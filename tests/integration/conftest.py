"""Fixtures of the integration tests: the sandbox servers with the hooks pointed at them."""

from __future__ import annotations

import pytest

from sandbox.server import Sandbox
from sandbox.testing import sandbox  # noqa: F401  (fixture)
from tests.integration.http_support import Http, use_sandbox


@pytest.fixture
def http(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Http:  # noqa: F811
    """Empty sandbox, hooks configured for it, engine clock at the real time now."""
    use_sandbox(monkeypatch, sandbox)
    return Http(sandbox)
