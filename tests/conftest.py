"""Test setup.

* The import paths Airflow sets up at run time: project root, ``plugins/``, ``dags/``.
* A private AIRFLOW_HOME per test session (a temp dir), so tests never touch the operator's
  ``airflow_home`` and concurrent test sessions never share a SQLite DB. Its ``airflow.cfg`` is
  rendered here, before anything imports Airflow; the DB is migrated on first use by the
  ``airflow_db`` fixture (tests that need no DB pay nothing).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "plugins", ROOT / "dags"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from include.tools import setup_airflow  # noqa: E402  (needs the path above)

# Property and model tests explore new random examples on every developer run (that is how they
# find bugs); in CI they replay a fixed derandomised set, so a landing never depends on luck.
# Settings objects the tests build at import time inherit this profile.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TEST_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="beteiligte-airflow-"))
atexit.register(shutil.rmtree, TEST_AIRFLOW_HOME, ignore_errors=True)
TEST_API_PORT = _free_port()
os.environ["AIRFLOW_HOME"] = str(TEST_AIRFLOW_HOME)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
setup_airflow.write_private(
    TEST_AIRFLOW_HOME / "airflow.cfg",
    setup_airflow.render_config(TEST_AIRFLOW_HOME, api_port=TEST_API_PORT),
)


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """The session's AIRFLOW_HOME with a migrated metadata DB and the pools."""
    setup_airflow.setup(
        TEST_AIRFLOW_HOME, api_port=TEST_API_PORT, profile="local", database="test", redis_db=0
    )
    yield TEST_AIRFLOW_HOME


_PROJECT_LOGGERS = ("include", "beteiligte", "hooks", "sandbox", "dags")


@pytest.fixture(autouse=True)
def _project_loggers_reach_caplog() -> None:
    """The CLI (run in-process by its tests) and Airflow's logging set-up (DAG tests) configure
    our loggers for their own output (levels, propagation); undo that before each test so tests
    asserting on log lines do not depend on test order."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(_PROJECT_LOGGERS):
            logger = logging.getLogger(name)
            logger.disabled = False
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
