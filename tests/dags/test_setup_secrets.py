"""Secrets at rest: every file of the set-up that holds a secret is the owner's alone (0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from include.tools import setup_airflow


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_after_setup_the_config_the_secrets_and_the_metadata_db_are_private(
    airflow_db: Path,
) -> None:
    for name in ("airflow.cfg", "secrets.json", "airflow.db"):
        assert _mode(airflow_db / name) == 0o600, name


def test_a_secret_file_is_private_from_its_creation_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)  # the loosest umask: a plain write would give 0666
    try:
        setup_airflow.write_private(tmp_path / "s.json", "{}")
        setup_airflow.create_private(tmp_path / "airflow.db")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "s.json") == 0o600
    assert _mode(tmp_path / "airflow.db") == 0o600


def test_an_older_world_readable_setup_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "airflow.cfg"
    path.write_text("old")
    path.chmod(0o644)
    setup_airflow.write_private(path, "new")
    assert _mode(path) == 0o600 and path.read_text() == "new"


@pytest.mark.parametrize("name", ["airflow.cfg", "secrets.json"])
def test_render_config_never_leaves_a_readable_secret(tmp_path: Path, name: str) -> None:
    path = tmp_path / "airflow.cfg"
    setup_airflow.write_private(path, setup_airflow.render_config(tmp_path, api_port=18080))
    assert _mode(tmp_path / name) == 0o600
