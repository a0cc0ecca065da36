"""Fixtures of the sandbox tests: the running sandbox and authenticated API clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.server import Sandbox
from sandbox.testing import advoware_session, espocrm_session
from sandbox.testing import sandbox as sandbox  # re-exported fixture

TIMEOUT = 10


class Api:
    """``requests`` against one base path, with the session's auth headers."""

    def __init__(self, base: str, session: requests.Session) -> None:
        self.base = base
        self.session = session

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def espo(sandbox: Sandbox) -> Iterator[Api]:
    """EspoCRM ``/api/v1`` with the right API key."""
    session = espocrm_session(sandbox)
    yield Api(f"{sandbox.espocrm_url}/api/v1", session)
    session.close()


@pytest.fixture
def advo(sandbox: Sandbox) -> Iterator[Api]:
    """Advoware ``/api/v1/advonet`` with a valid Bearer token."""
    session = advoware_session(sandbox)
    yield Api(f"{sandbox.advoware_url}/api/v1/advonet", session)
    session.close()
