"""The distributed profile's configuration, without PostgreSQL or Redis: what `setup_airflow
--profile distributed` renders, that the pinned driver matches the connection strings, and the
stale-lock TTL knob the recovery from a lost worker depends on."""

from __future__ import annotations

import configparser
import re
from datetime import timedelta
from pathlib import Path

import pytest

from include.beteiligte_sync.monitoring import sync_settings_from_env
from include.tools import setup_airflow

ROOT = Path(__file__).resolve().parents[2]


def _rendered(tmp_path: Path, **kw: object) -> configparser.RawConfigParser:
    text = setup_airflow.render_config(tmp_path, api_port=18080, **kw)  # type: ignore[arg-type]
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return parser


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not pinned with =="
            pins[package.lower()] = version
    return pins


def test_distributed_profile_renders_postgres_and_celery_on_redis(tmp_path: Path) -> None:
    cfg = _rendered(tmp_path, profile="distributed", database="firm_airflow", redis_db=5)
    assert cfg["core"]["executor"] == "CeleryExecutor"
    conn = cfg["database"]["sql_alchemy_conn"]
    assert conn == "postgresql+psycopg2://postgres@127.0.0.1:5432/firm_airflow"
    assert cfg["celery"]["broker_url"] == "redis://127.0.0.1:6379/5"
    assert cfg["celery"]["result_backend"] == "redis://127.0.0.1:6379/5"
    assert cfg["celery"]["worker_prefetch_multiplier"] == "1"


def test_local_profile_stays_sqlite_and_local_executor(tmp_path: Path) -> None:
    cfg = _rendered(tmp_path, profile="local")
    assert cfg["core"]["executor"] == "LocalExecutor"
    assert cfg["database"]["sql_alchemy_conn"].startswith("sqlite:///")


def test_the_pinned_drivers_are_the_ones_the_profile_names() -> None:
    distributed = _pins("requirements-distributed.txt")
    conn = setup_airflow.PROFILES["distributed"]["sql_alchemy_conn"]
    driver = re.match(r"postgresql\+(\w+)://", conn)
    assert driver and driver.group(1) == "psycopg2"
    assert "psycopg2-binary" in distributed
    # Airflow 3 opens an async engine too and maps postgresql to asyncpg.
    assert "asyncpg" in distributed
    assert "apache-airflow-providers-celery" in distributed
    # The embedded default stays small: none of them in requirements.txt.
    assert not set(distributed) & set(_pins("requirements.txt"))


def test_the_distributed_lock_pins_every_distributed_requirement() -> None:
    lock = _pins("constraints-distributed.txt")
    core_lock = _pins("constraints.txt")
    for package, version in _pins("requirements-distributed.txt").items():
        assert lock.get(package) == version, package
    assert not set(lock) & set(core_lock), "a package is locked twice"


def test_lock_ttl_is_configurable_for_faster_recovery_from_a_lost_worker() -> None:
    assert sync_settings_from_env({}).lock_ttl == timedelta(minutes=15)
    env = {"BETEILIGTE_SYNC_LOCK_TTL_SECONDS": "90"}
    assert sync_settings_from_env(env).lock_ttl == timedelta(seconds=90)
    for bad in ("0", "-5", "soon"):
        with pytest.raises(ValueError, match="LOCK_TTL_SECONDS"):
            sync_settings_from_env({"BETEILIGTE_SYNC_LOCK_TTL_SECONDS": bad})
