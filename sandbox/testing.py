"""Pytest fixture for other test folders: ``from sandbox.testing import sandbox  # noqa: F401``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.server import Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """Both stand-ins on free ports, empty, stopped after the test."""
    with Sandbox() as sb:
        yield sb
