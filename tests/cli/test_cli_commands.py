"""Every command of ``beteiligte`` against the sandbox over HTTP, through the real hooks and the
same connections Airflow uses (``AIRFLOW_CONN_*``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from include.cli.app import ExitCode, app
from sandbox.server import Sandbox
from sandbox.testing import sandbox  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "sandbox" / "scenarios" / "demo.json"
FAST = {"retry_wait_base": 0.01, "retry_wait_max": 0.05, "retry_attempts": 2, "read_timeout": 5}
WRITES = ("POST ", "PUT ", "DELETE ")
#: A validation message as the engine writes it: it quotes both names (personal data).
VALIDATION_MESSAGE = "Validation failed: name: Max3 Mustermann != 22Test8 GmbH"


def conn_env(sb: Sandbox, **espocrm: Any) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` of the sandbox with fast retries (and optional EspoCRM overrides)."""
    env = {}
    for name, value in sb.airflow_conn_env().items():
        conn = json.loads(value)
        conn["extra"] = {**conn.get("extra", {}), **FAST}
        if "ESPOCRM" in name:
            conn.update(espocrm)
        env[name] = json.dumps(conn)
    return env


@pytest.fixture
def sb(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:  # noqa: F811
    for name, value in conn_env(sandbox).items():
        monkeypatch.setenv(name, value)
    sandbox.load(json.loads(DEMO.read_text(encoding="utf-8")))
    return sandbox


def cli(*args: str) -> Any:
    """Run the CLI in-process; stdout and stderr separately."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def as_json(result: Any) -> Any:
    return json.loads(result.stdout)


def write_calls(sb: Sandbox) -> int:
    total = 0
    for admin in (sb.espocrm_admin, sb.advoware_admin):
        for key, per_status in admin.counters()["calls"].items():
            if key.startswith(WRITES) and not key.endswith("/Token"):
                total += sum(per_status.values())
    return total


def espo(sb: Sandbox, entity_id: str) -> dict[str, Any]:
    return next(r for r in sb.espocrm_admin.state()["CBeteiligte"] if r["id"] == entity_id)


def put_records(sb: Sandbox, *records: dict[str, Any]) -> None:
    """Replace EspoCRM's records (Advoware keeps the demo parties)."""
    state = {"espocrm": {"CBeteiligte": list(records)}}
    sb.espocrm_admin.load(state)


# --- compare ----------------------------------------------------------------------------------


def test_compare_masks_personal_values_and_exits_1_when_the_sides_differ(sb: Sandbox) -> None:
    result = cli("compare", "demo0000000000007")
    assert result.exit_code == ExitCode.ATTENTION
    out = result.stdout
    assert "Hoffmann" not in out and "rechnung@" not in out and "5557777" not in out
    assert "new in Advoware" in out and "new in EspoCRM" in out
    assert "150009" in out  # Kommunikation ids stay visible
    assert "What the engine would do now" in out and "tlf=***" in out
    assert write_calls(sb) == 0


def test_compare_json_with_values_shows_both_sides_matched_by_marker(sb: Sandbox) -> None:
    result = cli("compare", "demo0000000000007", "--json", "--show-values")
    assert result.exit_code == ExitCode.ATTENTION
    view = as_json(result)
    assert view["entity_id"] == "demo0000000000007" and view["betnr"] == 100007
    by_state = {row["state"]: row for row in view["kommunikation"]}
    assert by_state["new in Advoware"]["advoware"] == "+49 160 5557777"
    assert by_state["new in Advoware"]["komm_id"] == 150009
    assert by_state["new in EspoCRM"]["espocrm"] == "rechnung@hoffmann-bau.example.com"
    assert by_state["in sync"]["marker"] == "value"
    name = next(row for row in view["fields"] if row["field"] == "name")
    assert name["espocrm"] == name["advoware"] == "Hoffmann Bau AG" and name["same"]
    assert view["plan"]["outcome"] == "advoware_newer"
    assert "'+49 160 5557777'" in view["plan"]["text"]
    assert view["bookkeeping"]["syncStatus"] == "dirty"
    assert view["in_sync"] is False and len(view["differences"]) == 2


def test_compare_by_betnr_of_an_equal_pair_exits_0(sb: Sandbox) -> None:
    result = cli("compare", "100003", "--json")
    assert result.exit_code == ExitCode.OK
    view = as_json(result)
    assert view["entity_id"] == "demo0000000000003"
    assert view["in_sync"] is True and view["differences"] == []
    assert view["plan"]["outcome"] == "no_change" and view["plan"]["ops"] == 0
    assert all(row["espocrm"] in ("***", None) for row in view["fields"])


def test_compare_of_an_unknown_entity_exits_3(sb: Sandbox) -> None:
    result = cli("compare", "no-such-entity")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "no CBeteiligte" in result.stderr


def test_compare_shows_the_backoff_skip_and_the_masked_last_error(sb: Sandbox) -> None:
    put_records(
        sb,
        {
            "id": "stuck1",
            "name": "Max3 Mustermann",
            "betnr": 100003,
            "syncStatus": "failed",
            "syncRetryCount": 2,
            "syncNextRetry": "2099-01-01 00:00:00",
            "syncErrorMessage": VALIDATION_MESSAGE,
        },
    )
    view = as_json(cli("compare", "stuck1", "--json"))
    assert view["plan"]["skip"] == "skipped_backoff"
    assert view["bookkeeping"]["syncErrorMessage"] == "Validation failed: name: *** != ***"
    assert view["bookkeeping"]["syncRetryCount"] == 2
    forced = as_json(cli("compare", "stuck1", "--json", "--force"))
    assert forced["plan"]["skip"] is None


# --- sync -------------------------------------------------------------------------------------


def test_sync_dry_run_plans_without_writing(sb: Sandbox) -> None:
    result = cli("sync", "demo0000000000001", "--dry-run", "--json")
    assert result.exit_code == ExitCode.OK
    data = as_json(result)
    assert data["outcome"] == "dry_run"
    assert "create Advoware party" in data["plan_text"] and "Schmidt" not in data["plan_text"]
    assert write_calls(sb) == 0


def test_sync_creates_validates_and_compare_then_reports_equal(sb: Sandbox) -> None:
    result = cli("sync", "demo0000000000001")
    assert result.exit_code == ExitCode.OK, result.stdout + result.stderr
    assert "created" in result.stdout and "status clean" in result.stdout
    record = espo(sb, "demo0000000000001")
    assert record["syncStatus"] == "clean" and record["betnr"]
    assert cli("compare", str(record["betnr"])).exit_code == ExitCode.OK


def test_sync_of_an_entity_that_fails_exits_1_with_its_error(sb: Sandbox) -> None:
    # Advoware holds at most 80 characters of a name: an entity error, never truncated.
    put_records(sb, {"id": "long1", "name": "Kanzlei " + "x" * 90, "syncStatus": "pending_sync"})
    result = cli("sync", "long1", "--json")
    data = as_json(result)
    assert result.exit_code == ExitCode.ATTENTION
    assert data["status"] == "failed" and "Advoware allows 80" in data["error"]
    record = espo(sb, "long1")
    assert record["syncRetryCount"] == 1 and record["syncNextRetry"]
    assert sb.advoware_admin.calls("POST /api/v1/advonet/Beteiligte") == 0


def test_sync_rejects_an_unknown_direction_as_usage_error(sb: Sandbox) -> None:
    assert cli("sync", "demo0000000000001", "--direction", "sideways").exit_code == ExitCode.USAGE


# --- status and reset -------------------------------------------------------------------------


def stuck_records() -> list[dict[str, Any]]:
    return [
        {"id": "ok1", "name": "A", "betnr": 100003, "syncStatus": "clean",
         "advowareLastSync": "2026-01-02 00:00:00"},
        {"id": "ok2", "name": "B", "betnr": 100004, "syncStatus": "clean",
         "advowareLastSync": "2026-01-01 00:00:00"},
        {"id": "pf1", "name": "Max3 Mustermann", "betnr": 100006,
         "syncStatus": "permanently_failed", "syncRetryCount": 5,
         "syncAutoResetAt": "2099-01-01 00:00:00", "syncErrorMessage": VALIDATION_MESSAGE},
        {"id": "f1", "name": "C", "syncStatus": "failed", "syncRetryCount": 3,
         "syncNextRetry": "2099-01-01 00:00:00", "syncErrorMessage": "API error: ServerError"},
        {"id": "d1", "name": "D", "syncStatus": "dirty"},
    ]  # fmt: skip


def test_status_counts_lists_and_masks(sb: Sandbox) -> None:
    put_records(sb, *stuck_records())
    result = cli("status", "--json")
    assert result.exit_code == ExitCode.OK
    view = as_json(result)
    assert view["total"] == 5
    assert view["counts"]["clean"] == 2 and view["counts"]["permanently_failed"] == 1
    assert view["counts"]["failed"] == 1 and view["counts"]["dirty"] == 1
    assert [r["id"] for r in view["high_retry"]] == ["pf1", "f1"]  # highest count first
    (pf,) = view["permanently_failed"]
    assert pf["syncAutoResetAt"] == "2099-01-01 00:00:00"
    assert pf["syncErrorMessage"] == "Validation failed: name: *** != ***"
    assert view["oldest_clean"]["id"] == "ok2"
    assert "Max3" not in result.stdout
    table = cli("status")
    assert "Max3" not in table.stdout and "pf1" in table.stdout and "ok2" in table.stdout


def test_status_shows_values_on_request_and_exits_1_above_the_threshold(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_records(sb, *stuck_records())
    monkeypatch.setenv("BETEILIGTE_SYNC_ALERT_PERMANENTLY_FAILED", "0")
    result = cli("status", "--show-values")
    assert result.exit_code == ExitCode.ATTENTION
    assert "Max3 Mustermann" in result.stdout
    assert "1 entities permanently failed (threshold 0)" in result.stdout


def test_reset_puts_a_permanently_failed_entity_back_in_the_queue(sb: Sandbox) -> None:
    put_records(sb, *stuck_records())
    result = cli("reset", "pf1", "--json")
    assert result.exit_code == ExitCode.OK
    assert as_json(result)["status"] == "failed"
    record = espo(sb, "pf1")
    assert record["syncStatus"] == "failed" and record["syncRetryCount"] == 0
    assert record["syncAutoResetAt"] is None and record["syncNextRetry"] is None


def test_reset_refuses_other_statuses_and_says_what_to_do(sb: Sandbox) -> None:
    put_records(sb, *stuck_records())
    result = cli("reset", "f1")
    assert result.exit_code == ExitCode.ATTENTION
    assert "beteiligte sync --force f1" in result.stderr
    assert espo(sb, "f1")["syncRetryCount"] == 3
    assert cli("reset", "nope").exit_code == ExitCode.NOT_FOUND


def _interrupted_create() -> dict[str, Any]:
    return {
        "id": "ic1",
        "name": "Schneider Logistik GmbH",
        "rechtsform": "GmbH",
        "syncStatus": "failed",
        "syncRetryCount": 2,
        "advowareRowId": "create-pending:2026-01-01T00:00:00Z|Schneider Logistik GmbH",
        "syncErrorMessage": "Create in Advoware interrupted (started 2026-01-01T00:00:00Z) ...",
    }


def test_link_connects_an_interrupted_create_to_the_party_found_in_advoware(sb: Sandbox) -> None:
    put_records(sb, _interrupted_create())
    result = cli("link", "ic1", "--betnr", "100004", "--json")
    assert result.exit_code == ExitCode.OK, result.stderr
    record = espo(sb, "ic1")
    assert (record["betnr"], record["syncStatus"], record["advowareRowId"]) == (
        100004,
        "dirty",
        None,
    )
    assert record["syncErrorMessage"] is None and record["syncRetryCount"] == 0
    # and the next sync links them for good, without creating a second party
    parties_before = len(sb.advoware_admin.state()["Beteiligte"])
    synced = cli("sync", "ic1", "--json")
    assert synced.exit_code == ExitCode.OK, synced.stdout + synced.stderr
    assert espo(sb, "ic1")["syncStatus"] == "clean"
    assert len(sb.advoware_admin.state()["Beteiligte"]) == parties_before


def test_link_create_allows_a_new_create_and_refuses_unknown_or_ambiguous_input(
    sb: Sandbox,
) -> None:
    put_records(sb, _interrupted_create())
    assert cli("link", "ic1").exit_code == ExitCode.USAGE  # neither --betnr nor --create
    assert cli("link", "ic1", "--betnr", "999999").exit_code == ExitCode.NOT_FOUND
    assert espo(sb, "ic1")["advowareRowId"].startswith("create-pending:")  # nothing written
    result = cli("link", "ic1", "--create")
    assert result.exit_code == ExitCode.OK, result.stderr
    record = espo(sb, "ic1")
    assert (record["syncStatus"], record["advowareRowId"], record["betnr"]) == (
        "pending_sync",
        None,
        None,
    )


# --- connections ------------------------------------------------------------------------------


def test_a_wrong_api_key_exits_4_without_quoting_the_key(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in conn_env(sb, password="wrong-key-9f8e7d").items():
        monkeypatch.setenv(name, value)
    result = cli("status")
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert "401" in result.stderr and "wrong-key-9f8e7d" not in result.stderr + result.stdout


def test_a_missing_connection_exits_4(sb: Sandbox) -> None:
    result = cli("--espocrm-conn-id", "no_such_conn_for_test", "status")
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert "no_such_conn_for_test" in result.stderr


def test_the_console_script_runs_against_the_sandbox(sb: Sandbox) -> None:
    script = Path(sys.executable).with_name("beteiligte")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "include.cli"]
    env = {**os.environ, **conn_env(sb), "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}"}
    done = subprocess.run(
        [*command, "status", "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["total"] == 8
