"""The seed case 104860 over HTTP: the sandbox stand-ins, through the Airflow hooks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hooks.advoware import AdvowareHook
from hooks.espocrm import EspoCrmHook

from include.beteiligte_sync.kommunikation import (
    compare_kommunikation,
    is_sync_relevant,
    kommunikation_hash,
    plan_kommunikation,
)
from include.beteiligte_sync.markers import parse_bemerkung
from include.beteiligte_sync.ops import MakeEmptySlot, UpdateKommunikation
from sandbox.server import Sandbox
from sandbox.testing import sandbox  # noqa: F401  (fixture)
from tests.kommunikation.komm_support import apply_through

SCENARIO = Path(__file__).resolve().parents[2] / "sandbox" / "scenarios" / "seed_104860.json"
ENTITY_ID = "6981f2a0c1d4e5f60"
BETNR = 104860
FAST = {"retry_wait_base": 0.01, "retry_wait_max": 0.05, "connect_timeout": 2, "read_timeout": 5}


@pytest.fixture
def seeded(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:  # noqa: F811
    for name, value in sandbox.airflow_conn_env().items():
        conn = json.loads(value)
        conn["extra"] = {**conn.get("extra", {}), **FAST}
        monkeypatch.setenv(name, json.dumps(conn))
    sandbox.load(json.loads(SCENARIO.read_text()))
    return sandbox


def test_seed_conflict_over_http_makes_three_slots_and_reuses_one(seeded: Sandbox, caplog) -> None:
    espocrm, advoware = EspoCrmHook(), AdvowareHook()
    espo, advo = espocrm.get_beteiligte(ENTITY_ID), advoware.get_beteiligte(BETNR)
    assert all(k["kommKz"] == 0 for k in advo["kommunikation"])  # the real API's defect
    with caplog.at_level(logging.DEBUG, logger="include.beteiligte_sync.kommunikation"):
        assert sum(is_sync_relevant(k) for k in advo["kommunikation"]) == 4
        kommunikation_hash(advo["kommunikation"])
        plan = plan_kommunikation(espo, advo, direction="both", espocrm_wins=True, initial=False)
    assert "based on 4 sync-relevant of 9 total" in caplog.text
    slots = [op for op in plan.advoware_ops if isinstance(op, MakeEmptySlot)]
    assert [op.komm_id for op in slots] == [149342, 149343, 149350]
    assert len(plan.note_lines) == 3
    # EspoCRM's new phone reuses the free TelGesch slot instead of creating an entry.
    reuse = [op for op in plan.advoware_ops if isinstance(op, UpdateKommunikation)]
    assert [op.komm_id for op in reuse] == [149344]
    assert plan.changes == 4

    apply_through(espocrm, advoware, ENTITY_ID, BETNR, plan)
    espo, advo = espocrm.get_beteiligte(ENTITY_ID), advoware.get_beteiligte(BETNR)
    assert compare_kommunikation(espo, advo) == []
    assert len(advo["kommunikation"]) == 9  # nothing created, nothing deleted
    by_id = {k["id"]: k for k in advo["kommunikation"]}
    assert parse_bemerkung(by_id[149344]["bemerkung"]).value == "+49 30 1234567"
    again = plan_kommunikation(espo, advo, direction="both", espocrm_wins=False, initial=False)
    assert again.is_empty
