"""Render ``airflow.cfg.template`` into ``AIRFLOW_HOME``, migrate the metadata DB, create the pools.

Run by ``make setup`` (and so by ``make demo``/``make test``); safe to run again: secrets are
generated once per ``AIRFLOW_HOME`` and the migration is skipped while nothing changed.
This tool calls the ``airflow`` command line; it does not import Airflow.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
TEMPLATE = PROJECT_DIR / "airflow.cfg.template"

#: Airflow pools that bound concurrent calls per API across all runs and workers.
POOLS = {
    "espocrm_api": (4, "Concurrent EspoCRM API calls (all beteiligte DAG runs)"),
    "advoware_api": (4, "Concurrent Advoware API calls (all beteiligte DAG runs)"),
}

PROFILES = {
    "local": {
        "executor": "LocalExecutor",
        "sql_alchemy_conn": "sqlite:///{airflow_home}/airflow.db",
        "celery_broker_url": "redis://127.0.0.1:6379/0",
        "celery_result_backend": "redis://127.0.0.1:6379/1",
    },
    # PostgreSQL metadata DB (driver psycopg2, async engine asyncpg: requirements-distributed.txt)
    # and CeleryExecutor with Redis as broker and result backend (one Redis db number).
    "distributed": {
        "executor": "CeleryExecutor",
        "sql_alchemy_conn": "postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
        "celery_broker_url": "redis://127.0.0.1:6379/{redis_db}",
        "celery_result_backend": "redis://127.0.0.1:6379/{redis_db}",
    },
}


def _load_secrets(airflow_home: Path) -> dict[str, str]:
    """Secrets of this AIRFLOW_HOME, generated on first use (file mode 0600)."""
    path = airflow_home / "secrets.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    values = {
        "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "jwt_secret": secrets.token_urlsafe(32),
        "api_secret_key": secrets.token_urlsafe(32),
    }
    write_private(path, json.dumps(values))
    return values


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (0600), created so from the start: a
    file holding secrets is never readable by others, not even for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file of an older setup: closed first
        out.write(text)


def create_private(path: Path) -> None:
    """Create an empty owner-only file (0600) unless it exists, and close an existing one to
    others: SQLite keeps the mode of a database file it finds."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    os.close(fd)


def render_config(
    airflow_home: Path,
    *,
    api_port: int,
    profile: str = "local",
    database: str = "test",
    redis_db: int = 0,
) -> str:
    """Return the rendered airflow.cfg text for ``airflow_home``."""
    values: dict[str, object] = {
        "project_dir": PROJECT_DIR,
        "airflow_home": airflow_home,
        "api_port": api_port,
        **_load_secrets(airflow_home),
    }
    for key, template in PROFILES[profile].items():
        values[key] = template.format(
            airflow_home=airflow_home, database=database, redis_db=redis_db
        )
    return TEMPLATE.read_text().format(**values)


def _airflow(args: list[str], airflow_home: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(airflow_home)}
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"airflow {' '.join(args[:2])} failed (exit {result.returncode})")


def setup(airflow_home: Path, *, api_port: int, profile: str, database: str, redis_db: int) -> None:
    """Render the config, migrate the DB and create the pools (each only when needed)."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    for older in ("airflow.cfg", "secrets.json"):  # written by an older setup: close them
        if (airflow_home / older).exists():
            (airflow_home / older).chmod(0o600)
    text = render_config(
        airflow_home, api_port=api_port, profile=profile, database=database, redis_db=redis_db
    )
    cfg = airflow_home / "airflow.cfg"  # holds the Fernet key and the JWT and API secrets
    if not cfg.exists() or cfg.read_text() != text:
        write_private(cfg, text)
        print(f"setup: wrote {cfg}")
    if profile == "local":
        create_private(airflow_home / "airflow.db")  # the connections, encrypted with that key
    stamp = airflow_home / ".setup-done"
    digest = hashlib.sha256(text.encode() + json.dumps(POOLS).encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    print("setup: migrating the Airflow metadata DB (first run takes a minute) ...", flush=True)
    _airflow(["db", "migrate"], airflow_home)
    for name, (slots, description) in POOLS.items():
        _airflow(["pools", "set", name, str(slots), description], airflow_home)
    stamp.write_text(digest)
    print(f"setup: Airflow ready in {airflow_home} ({profile}, api port {api_port})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--airflow-home",
        type=Path,
        default=Path(os.environ.get("AIRFLOW_HOME", PROJECT_DIR / "airflow_home")),
    )
    parser.add_argument(
        "--api-port", type=int, default=int(os.environ.get("AIRFLOW_API_PORT", 8080))
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="local")
    parser.add_argument("--database", default="test", help="PostgreSQL database (distributed)")
    parser.add_argument("--redis-db", type=int, default=0, help="Redis db number (distributed)")
    args = parser.parse_args(argv)
    setup(
        args.airflow_home.resolve(),
        api_port=args.api_port,
        profile=args.profile,
        database=args.database,
        redis_db=args.redis_db,
    )


if __name__ == "__main__":
    main()
