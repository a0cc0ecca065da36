"""Scenarios: loading, state round-trip, the generator, the hand-made seed and demo files, CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from sandbox.generate import generate_scenario
from sandbox.server import Sandbox
from sandbox.testing import advoware_session

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "sandbox" / "scenarios"


def test_scenario_load_fills_server_fields_and_state_round_trips(sandbox: Sandbox) -> None:
    scenario = {
        "espocrm": {"CBeteiligte": [{"name": "A", "betnr": 100000}]},
        "advoware": {
            "Beteiligte": [
                {"betNr": 100000, "name": "A", "kommunikation": [{"kommKz": 1, "tlf": "1"}]}
            ]
        },
    }
    assert sandbox.espocrm_admin.load(scenario) == {"CBeteiligte": 1, "Note": 0}
    assert sandbox.advoware_admin.load(scenario) == {"Beteiligte": 1, "Kommunikation": 1}
    record = sandbox.espocrm_admin.state()["CBeteiligte"][0]
    assert len(record["id"]) == 17 and record["versionNumber"] == 1
    assert record["syncStatus"] == "pending_sync" and record["createdAt"]
    party = sandbox.advoware_admin.state()["Beteiligte"][0]
    assert party["rowId"] and party["geaendertAm"]
    komm = party["kommunikation"][0]
    assert komm["id"] and komm["rowId"] and komm["betNr"] == 100000 and komm["bemerkung"] == ""
    dumped = {"espocrm": sandbox.espocrm_admin.state(), "advoware": sandbox.advoware_admin.state()}
    sandbox.espocrm_admin.load(dumped)
    sandbox.advoware_admin.load(dumped)
    assert sandbox.espocrm_admin.state() == dumped["espocrm"]
    assert sandbox.advoware_admin.state() == dumped["advoware"]


def test_new_numbers_start_above_the_scenario(sandbox: Sandbox) -> None:
    scenario = {
        "advoware": {
            "Beteiligte": [
                {
                    "betNr": 104860,
                    "name": "x",
                    "kommunikation": [{"id": 149350, "kommKz": 1, "tlf": "1"}],
                }
            ]
        }
    }
    sandbox.advoware_admin.load(scenario)
    party = sandbox.advoware_admin.edit(create={"name": "y"})
    assert party["betNr"] == 104861
    komm = sandbox.advoware_admin.edit(betNr=104861, kommunikation={"kommKz": 1, "tlf": "2"})
    assert komm["id"] > 149350


def test_generator_is_deterministic_and_realistic() -> None:
    scenario = generate_scenario(300, seed=3)
    assert scenario == generate_scenario(300, seed=3)
    assert scenario != generate_scenario(300, seed=4)
    records = scenario["espocrm"]["CBeteiligte"]
    parties = scenario["advoware"]["Beteiligte"]
    linked = {r["betnr"] for r in records if r.get("betnr")}
    assert linked and linked < {p["betNr"] for p in parties}
    assert any(p["rechtsform"] for p in parties) and any(not p["rechtsform"] for p in parties)
    counts = [len(p["kommunikation"]) for p in parties]
    assert min(counts) == 0 and max(counts) == 9
    remarks = [k["bemerkung"] for p in parties for k in p["kommunikation"]]
    assert any(b.startswith("[ESPOCRM-SLOT:") for b in remarks)
    assert any(b.startswith("[ESPOCRM:") for b in remarks)
    assert any(not b.startswith("[ESPOCRM") for b in remarks)


def test_generator_output_loads_and_new_parties_have_no_betnr() -> None:
    scenario = generate_scenario(200, seed=1)
    new = [r for r in scenario["espocrm"]["CBeteiligte"] if "betnr" not in r]
    assert new and all(r["syncStatus"] == "pending_sync" for r in new)
    with Sandbox(scenario) as sb:
        state = sb.espocrm_admin.state()
        assert len(state["CBeteiligte"]) == len(scenario["espocrm"]["CBeteiligte"])


def test_generator_handles_ten_thousand_parties_quickly() -> None:
    started = time.monotonic()
    scenario = generate_scenario(10_000, seed=0)
    Sandbox(scenario).stop()  # loading is part of the budget; never started
    assert time.monotonic() - started < 30
    assert len(scenario["advoware"]["Beteiligte"]) > 7000


def test_generate_cli_writes_a_file(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox.generate",
            "--count",
            "20",
            "--seed",
            "5",
            "-o",
            str(target),
        ],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    assert json.loads(target.read_text(encoding="utf-8")) == generate_scenario(20, seed=5)


def test_seed_104860_scenario_holds_the_seed_cases() -> None:
    with Sandbox(SCENARIOS / "seed_104860.json") as sb:
        record = sb.espocrm_admin.state()["CBeteiligte"][0]
        assert record["name"] == "Max3 Mustermann" and record["betnr"] == 104860
        session = advoware_session(sb)
        party = session.get(f"{sb.advoware_url}/api/v1/advonet/Beteiligte/104860", timeout=5).json()
        assert party["name"] == "22Test8 GmbH"
        komm = {k["id"]: k for k in party["kommunikation"]}
        assert len(komm) == 9
        assert len([k for k in komm.values() if k["tlf"]]) == 4
        assert len([k for k in komm.values() if not k["tlf"]]) == 5
        assert komm[149342]["tlf"] == "23423" and komm[149342]["bemerkung"] == "[ESPOCRM-SLOT:1]"
        assert komm[149343]["tlf"] == "1231211111" and komm[149343]["bemerkung"] == ""
        assert komm[149350]["tlf"] == "2342342423" and komm[149350]["bemerkung"] == ""


def test_demo_scenario_loads_with_eight_parties() -> None:
    with Sandbox(SCENARIOS / "demo.json") as sb:
        records = sb.espocrm_admin.state()["CBeteiligte"]
        assert len(records) == 8
        assert sum(1 for r in records if r["betnr"] is None) == 2
        parties = sb.advoware_admin.state()["Beteiligte"]
        assert {p["betNr"] for p in parties} == {r["betnr"] for r in records if r["betnr"]}


def test_airflow_conn_env_describes_both_connections(sandbox: Sandbox) -> None:
    env = sandbox.airflow_conn_env()
    espocrm = json.loads(env["AIRFLOW_CONN_ESPOCRM_DEFAULT"])
    assert espocrm == {
        "conn_type": "espocrm",
        "host": sandbox.espocrm_url,
        "password": sandbox.credentials.espocrm_api_key,
    }
    advoware = json.loads(env["AIRFLOW_CONN_ADVOWARE_DEFAULT"])
    assert advoware["host"] == sandbox.advoware_url and advoware["login"] == "SANDBOX"
    assert advoware["extra"]["security_gateway"] == sandbox.advoware_url
    assert set(advoware["extra"]) == {
        "app_id",
        "api_key",
        "kanzlei",
        "database",
        "role",
        "product",
        "security_gateway",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(60)
def test_cli_serves_the_scenario_until_sigterm() -> None:
    espo_port, advo_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--espocrm-port",
            str(espo_port),
            "--advoware-port",
            str(advo_port),
            "--scenario",
            str(SCENARIOS / "demo.json"),
            "--print-conn-env",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(5)]
        assert f"127.0.0.1:{espo_port}" in banner[0] and f"127.0.0.1:{advo_port}" in banner[1]
        assert any(line.startswith("AIRFLOW_CONN_ESPOCRM_DEFAULT=") for line in banner)
        state = requests.get(f"http://127.0.0.1:{espo_port}/_admin/state", timeout=5).json()
        assert len(state["CBeteiligte"]) == 8
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
