"""``make airflow``: the sandbox APIs plus ``airflow standalone``, wired together.

Starts the sandbox (EspoCRM on 8081, Advoware on 8082, demo data) and Airflow's all-in-one
``standalone`` (api-server with the UI, scheduler, dag-processor, triggerer) with the connections
``espocrm_default``/``advoware_default`` pointing at the sandbox. Stop with Ctrl+C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sandbox.server import Sandbox

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEMO_SCENARIO = PROJECT_DIR / "sandbox" / "scenarios" / "demo.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--espocrm-port", type=int, default=8081)
    parser.add_argument("--advoware-port", type=int, default=8082)
    parser.add_argument("--scenario", type=Path, default=DEMO_SCENARIO)
    args = parser.parse_args(argv)
    airflow_home = Path(os.environ.get("AIRFLOW_HOME", PROJECT_DIR / "airflow_home"))
    port = os.environ.get("AIRFLOW_API_PORT", "8080")
    with Sandbox(
        scenario=args.scenario, espocrm_port=args.espocrm_port, advoware_port=args.advoware_port
    ) as sb:
        airflow = Path(sys.executable).with_name("airflow")
        # standalone starts its components as `airflow ...` from PATH: the venv's must be first.
        path = os.pathsep.join([str(airflow.parent), os.environ.get("PATH", "")])
        env = {
            **os.environ,
            **sb.airflow_conn_env(),
            "AIRFLOW_HOME": str(airflow_home),
            "PATH": path,
        }
        print(f"Sandbox EspoCRM:  {sb.espocrm_url}")
        print(f"Sandbox Advoware: {sb.advoware_url}")
        print(f"Airflow UI:       http://127.0.0.1:{port}  (user admin; the password is in")
        print(f"                  {airflow_home}/simple_auth_manager_passwords.json.generated)")
        proc = subprocess.Popen([str(airflow), "standalone"], env=env)
        try:
            while proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
