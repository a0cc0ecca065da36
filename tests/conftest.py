"""Test setup: the import paths Airflow sets up at run time (project root, ``plugins/``,
``dags/``) and the project's own AIRFLOW_HOME (rendered by ``make setup``)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "plugins", ROOT / "dags"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "airflow_home"))
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
