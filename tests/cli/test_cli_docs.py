"""The operations guide cannot rot: its CLI commands run against the sandbox, its EspoCRM
snippets hold every field the engine and the sandbox rely on, its connection examples are what
the hooks read."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from include.beteiligte_sync import mapping
from include.beteiligte_sync.status import SyncStatus
from include.cli.app import ExitCode, app
from sandbox.espocrm import BUSINESS_FIELDS
from sandbox.server import Sandbox
from sandbox.testing import sandbox  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operations.md"
ENTITY_DEFS = ROOT / "docs" / "espocrm" / "entityDefs" / "CBeteiligte.json"
FORMULA = ROOT / "docs" / "espocrm" / "formula" / "CBeteiligte.json"
DEMO = ROOT / "sandbox" / "scenarios" / "demo.json"
#: Placeholders of the guide -> demo parties (7 differs on both sides, 3 is an equal pair).
PLACEHOLDERS = {"<entity-id>": "demo0000000000007", "<betnr>": "100003"}
#: Bookkeeping fields of SPEC §4 the engine reads and writes.
BOOKKEEPING = (
    "betnr", "syncStatus", "syncRetryCount", "syncNextRetry", "syncAutoResetAt",
    "syncErrorMessage", "advowareLastSync", "advowareRowId", "syncedHash",
    "kommunikationHash", "syncLockedAt",
)  # fmt: skip


def guide_commands() -> list[str]:
    """Every ``beteiligte ...`` line inside a code block of the guide."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("beteiligte ")]


def test_the_guide_has_cli_commands_to_run() -> None:
    commands = guide_commands()
    assert len(commands) >= 6
    assert {shlex.split(c)[1] for c in commands} >= {"compare", "sync", "status"}


@pytest.mark.parametrize("command", guide_commands())
def test_every_cli_command_of_the_guide_runs_against_the_sandbox(
    command: str,
    sandbox: Sandbox,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in sandbox.airflow_conn_env().items():
        monkeypatch.setenv(name, value)
    sandbox.load(json.loads(DEMO.read_text(encoding="utf-8")))
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    result = CliRunner().invoke(app, shlex.split(command)[1:], catch_exceptions=False)
    # 0 and 1 are answers; 2 (usage), 3 (not found) and 4 (connection) mean the guide is wrong.
    assert result.exit_code in (ExitCode.OK, ExitCode.ATTENTION), result.stderr
    if "--json" in command:
        json.loads(result.stdout)


def test_the_guide_lists_every_status_exit_code_and_setting() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for status in SyncStatus:
        assert f"| `{status.value}` |" in text, status
    for code in ExitCode:
        assert f"| {int(code)} |" in text, code
    for variable in (
        "BETEILIGTE_SYNC_ALERT_PERMANENTLY_FAILED",
        "BETEILIGTE_SYNC_ALERT_VALIDATION_FAILURES",
        "BETEILIGTE_SYNC_HIGH_RETRY_COUNT",
        "BETEILIGTE_SYNC_ALERT_CONN_ID",
    ):
        assert f"`{variable}`" in text, variable


def test_the_entity_definition_has_every_bookkeeping_field_and_status() -> None:
    defs = json.loads(ENTITY_DEFS.read_text(encoding="utf-8"))
    fields = defs["fields"]
    assert set(BOOKKEEPING) <= set(fields)
    assert fields["syncStatus"]["options"] == [s.value for s in SyncStatus]
    assert fields["syncErrorMessage"]["type"] == "text"
    for name in ("syncNextRetry", "syncAutoResetAt", "advowareLastSync", "syncLockedAt"):
        assert fields[name]["type"] == "datetime", name
    assert defs["optimisticConcurrencyControl"] is True  # the lock needs versionNumber


def test_the_mark_dirty_rule_watches_every_business_field() -> None:
    script = json.loads(FORMULA.read_text(encoding="utf-8"))["beforeSaveCustomScript"]
    for name in (*BUSINESS_FIELDS, *mapping.FIELD_NAMES):
        assert f"isAttributeChanged('{name}')" in script, name
    assert "syncStatus = 'dirty'" in script and "syncStatus = 'pending_sync'" in script
    assert "!entity\\isAttributeChanged('syncStatus')" in script  # the sync's writes: no echo


def test_the_connection_examples_are_what_the_hooks_read() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    examples = dict(re.findall(r"export (AIRFLOW_CONN_\w+)='(\{.*?\})'", text))
    espocrm = json.loads(examples["AIRFLOW_CONN_ESPOCRM_DEFAULT"])
    advoware = json.loads(examples["AIRFLOW_CONN_ADVOWARE_DEFAULT"])
    with Sandbox() as sb:
        sandbox_env = {k: json.loads(v) for k, v in sb.airflow_conn_env().items()}
    for name, example in (
        ("AIRFLOW_CONN_ESPOCRM_DEFAULT", espocrm),
        ("AIRFLOW_CONN_ADVOWARE_DEFAULT", advoware),
    ):
        working = sandbox_env[name]  # the shape the hook tests prove
        assert example["conn_type"] == working["conn_type"]
        assert set(working) - {"extra"} <= set(example)
        assert set(working.get("extra", {})) <= set(example.get("extra", {}))
