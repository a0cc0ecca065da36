"""The trigger form of ``beteiligte_sync`` in a real (headless) browser.

A bare ``array`` Param is rendered as *required* by the Airflow UI; ours must accept an empty
"EspoCRM entity ids" field (= the normal selection). Needs Debian's ``chromium`` and the pinned
``playwright-core`` in ``tests/ui/node_modules`` (``.ci/run`` installs both); skipped otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.tools.airflow_runtime import PASSWORD, AirflowComponents
from sandbox.server import Sandbox

HERE = Path(__file__).resolve().parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.airflow_server,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and shutil.which("node") and (HERE / "node_modules").exists()),
        reason="needs chromium and `npm ci` in tests/ui (done by .ci/run)",
    ),
]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowComponents]:
    with Sandbox(scenario=HERE.parents[1] / "sandbox" / "scenarios" / "demo.json") as sb:
        env = {**sb.airflow_conn_env(), "BETEILIGTE_SYNC_SCHEDULE": "none"}
        with AirflowComponents(tmp_path_factory.mktemp("ui_home"), env) as components:
            components.wait_for_dag("beteiligte_sync")
            yield components


def test_trigger_form_accepts_empty_entity_ids(airflow: AirflowComponents, tmp_path: Path) -> None:
    env = {"CHROMIUM": CHROMIUM, "PATH": "/usr/bin:/bin"}
    script = [str(HERE / "form_check.js"), airflow.base_url, PASSWORD, str(tmp_path)]
    result = subprocess.run(
        ["node", *script], capture_output=True, text=True, timeout=180, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "trigger_form.png").exists()
    runs = airflow.api("GET", "/dags/beteiligte_sync/dagRuns").json()["dag_runs"]
    assert len(runs) == 1
    assert runs[0]["conf"]["entity_ids"] in ([], None)
    state = airflow.wait_for_run("beteiligte_sync", runs[0]["dag_run_id"])
    assert state == "success", json.dumps(runs[0]) + airflow.logs()
