"""Start real Airflow components for a test or the benchmark: api-server, scheduler,
dag-processor (and optionally Celery workers), each a subprocess on 127.0.0.1, against a fresh
AIRFLOW_HOME, and drive them through the REST API.

The config is rendered by the project's own setup tool, so callers exercise the same
``airflow.cfg.template`` and pools as ``make setup``. Airflow is never imported here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

PROJECT_DIR = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PASSWORD = "test-admin-password"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowComponents:
    """Context manager: a running Airflow installation (one test module, one benchmark)."""

    def __init__(
        self,
        airflow_home: Path,
        env: Mapping[str, str],
        *,
        profile: str = "local",
        components: tuple[str, ...] = ("api-server", "scheduler", "dag-processor"),
        setup_args: tuple[str, ...] = (),
    ) -> None:
        self.airflow_home = airflow_home
        self.port = free_port()
        self.profile = profile
        self.components = components
        self.setup_args = setup_args
        self.env = {
            **os.environ,
            **env,
            "AIRFLOW_HOME": str(airflow_home),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._token: str | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> AirflowComponents:
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable, "-m", "include.tools.setup_airflow",
                "--airflow-home", str(self.airflow_home), "--api-port", str(self.port),
                "--profile", self.profile, *self.setup_args,
            ],
            env=self.env, check=True, cwd=PROJECT_DIR, capture_output=True,
        )  # fmt: skip
        passwords = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        passwords.write_text(json.dumps({"admin": PASSWORD}))
        for name in self.components:
            self.start(name)
        self.wait_for_api()
        return self

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start one component (``api-server``, ``scheduler``, ``celery worker`` ...)."""
        key = " ".join([name, *args])
        log = open(self.airflow_home / f"{key.replace(' ', '_')}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [AIRFLOW, *name.split(), *args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_DIR,
            start_new_session=True,
        )  # fmt: skip
        self.procs[key] = proc
        return proc

    def stop(self, key: str, sig: int = signal.SIGTERM) -> None:
        """Stop one component (its whole process group), forcefully after 30 s."""
        proc = self.procs.pop(key)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def __exit__(self, *exc: object) -> None:
        for key in list(self.procs):
            self.stop(key)

    def logs(self, limit: int = 6000) -> str:
        """Tail of every component log (for assertion messages)."""
        parts = []
        for path in sorted(self.airflow_home.glob("*.log")):
            parts.append(f"== {path.name}\n{path.read_text(errors='replace')[-limit:]}")
        return "\n".join(parts)

    # --- REST API ------------------------------------------------------------------------

    def wait_for_api(self, timeout: float = 120) -> None:
        """Block until the API server answers its health check."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow API did not come up\n{self.logs()}")

    @property
    def token(self) -> str:
        """A JWT of the admin user (fetched once)."""
        if self._token is None:
            answer = requests.post(
                f"{self.base_url}/auth/token",
                json={"username": "admin", "password": PASSWORD},
                timeout=10,
            )
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        """One authorised request to ``/api/v2<path>``."""
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(
            method, f"{self.base_url}/api/v2{path}", headers=headers, timeout=30, **kw
        )

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Block until the dag-processor has parsed ``dag_id``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api("GET", f"/dags/{dag_id}").status_code == 200:
                return
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} was not parsed\n{self.logs()}")

    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> str:
        """Trigger a run with ``conf``; return its run id."""
        answer = self.api(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf}
        )
        assert answer.status_code in (200, 201), answer.text
        return str(answer.json()["dag_run_id"])

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 2.0
    ) -> str:
        """Block until the run ends; return its final state (``success`` or ``failed``)."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(poll)
        raise TimeoutError(f"run {run_id} still {state}\n{self.logs()}")

    def run_info(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The run as the REST API shows it (``state``, ``queued_at``, ``start_date``, ...)."""
        answer = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        answer.raise_for_status()
        return dict(answer.json())

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """The ``return_value`` XCom of one task instance, deserialised."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        answer = self.api("GET", path, params={"map_index": map_index, "deserialize": True})
        answer.raise_for_status()
        return answer.json()["value"]
