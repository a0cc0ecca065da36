"""Pytest fixture and small helpers for tests that talk to the sandbox over HTTP.

Other test folders use it as ``from sandbox.testing import sandbox  # noqa: F401``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from sandbox.advoware import token_signature
from sandbox.server import Sandbox, SandboxCredentials


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """Both stand-ins on free ports, empty, stopped after the test."""
    with Sandbox() as sb:
        yield sb


def token_request_body(
    credentials: SandboxCredentials, *, timestamp: datetime | None = None
) -> dict[str, Any]:
    """A correctly signed Advoware token request (SPEC §5)."""
    nonce = str(uuid.uuid4())
    moment = timestamp or datetime.now(UTC)
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = token_signature(
        credentials.api_key, credentials.product, credentials.app_id, nonce, stamp
    )
    return {
        "AppID": credentials.app_id,
        "Kanzlei": credentials.kanzlei,
        "Database": credentials.database,
        "User": credentials.user,
        "Role": credentials.role,
        "Product": credentials.product,
        "Password": credentials.password,
        "Nonce": nonce,
        "HMAC512Signature": signature,
        "RequestTimeStamp": stamp,
    }


def advoware_session(sb: Sandbox) -> requests.Session:
    """A session carrying a fresh Bearer token for ``sb``'s Advoware."""
    response = requests.post(
        f"{sb.advoware_url}/api/v1/Token", json=token_request_body(sb.credentials), timeout=10
    )
    response.raise_for_status()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return session


def espocrm_session(sb: Sandbox) -> requests.Session:
    """A session carrying ``sb``'s EspoCRM API key."""
    session = requests.Session()
    session.headers["X-Api-Key"] = sb.credentials.espocrm_api_key
    return session
