"""The seed's entity 104860 over HTTP (sandbox/scenarios/seed_104860.json).

EspoCRM says "Max3 Mustermann", Advoware "22Test8 GmbH", and the replaced system had marked it
``clean``. Both sides changed since its (stale) baseline: a conflict, EspoCRM wins.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from include.beteiligte_sync.markers import parse_bemerkung
from include.beteiligte_sync.sync import sync_entity
from tests.integration.http_support import Http

SCENARIO = Path(__file__).resolve().parents[2] / "sandbox" / "scenarios" / "seed_104860.json"
ENTITY_ID = "6981f2a0c1d4e5f60"
BETNR = 104860
VAR4_IDS = (149342, 149343, 149350)


@pytest.fixture
def seeded(http: Http) -> Http:
    scenario = json.loads(SCENARIO.read_text(encoding="utf-8"))
    http.sb.espocrm_admin.load(scenario)
    http.sb.advoware_admin.load(scenario)
    return http


def _never_clean_while_names_differ(http: Http) -> None:
    stored, party = http.record(ENTITY_ID), http.party(BETNR)
    if stored["syncStatus"] == "clean":
        assert stored["name"] == party["name"], "clean while the names differ (seed #13)"


@pytest.mark.parametrize("kommkz_defect", [True, False])
def test_seed_conflict_makes_both_sides_equal_and_only_then_clean(
    seeded: Http, caplog: pytest.LogCaptureFixture, kommkz_defect: bool
) -> None:
    http = seeded
    http.sb.advoware_admin.configure(kommkz_zero_defect=kommkz_defect)
    with caplog.at_level(logging.INFO):
        result = http.run(ENTITY_ID, validate_inline=False)
    assert result.outcome == "conflict" and result.needs_validation
    assert http.record(ENTITY_ID)["syncStatus"] == "syncing"  # not clean before validation
    assert "Converting 3 Var4 entries to empty slots (EspoCRM wins)" in caplog.text
    assert "based on 4 sync-relevant of 9 total" in caplog.text

    validated = http.validate(ENTITY_ID, written=result)

    stored, party = http.record(ENTITY_ID), http.party(BETNR)
    assert validated.outcome == "clean" and stored["syncStatus"] == "clean"
    assert party["name"] == stored["name"] == "Max3 Mustermann"
    assert party["rechtsform"] is None  # EspoCRM wins: a person, no Rechtsform
    by_id = {k["id"]: k for k in party["kommunikation"]}
    assert len(by_id) == 9  # nothing created, nothing deleted
    for komm_id in VAR4_IDS:  # the conflict trace: three Var4 entries -> three empty slots
        parsed = parse_bemerkung(by_id[komm_id]["bemerkung"])
        assert by_id[komm_id]["tlf"] == "" and parsed.is_slot, komm_id
    # The trace's kinds: 1, 1, 6. With the GET defect (kommKz 0) the kinds of the unmarked
    # 149343 and 149350 are unknown: their slots say "?" (reused by no kind), never a guess.
    kinds = [parse_bemerkung(by_id[i]["bemerkung"]).kommkz for i in VAR4_IDS]
    assert kinds == ([1, None, None] if kommkz_defect else [1, 1, 6])
    # 3 Var4 -> slot, plus EspoCRM's new office phone written into the free TelGesch slot.
    assert result.kommunikation_changes == 4
    assert by_id[149344]["tlf"] == "+49 30 1234567"


def test_seed_conflict_note_keeps_every_overwritten_advoware_value(seeded: Http) -> None:
    http = seeded
    assert http.run(ENTITY_ID).status == "clean"

    (note,) = http.notes(ENTITY_ID)
    assert "name: '22Test8 GmbH' -> 'Max3 Mustermann'" in note
    assert "rechtsform: 'GmbH' -> (leer/empty)" in note
    for value in ("23423", "1231211111", "2342342423"):
        assert value in note


class _NameIsReadOnly:
    """The Advoware hook, but the party's ``name`` is silently not written (the seed's
    "make an Advoware field read-only" test recommendation)."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self.hook, name)

    def update_beteiligte(self, betnr: int, data: Mapping[str, Any]) -> dict[str, Any]:
        return dict(
            self.hook.update_beteiligte(betnr, {k: v for k, v in data.items() if k != "name"})
        )


def test_seed_names_still_differ_after_the_write_so_it_is_not_clean(seeded: Http) -> None:
    http = seeded
    result = sync_entity(
        http.record(ENTITY_ID),
        http.espocrm,
        _NameIsReadOnly(http.advoware),  # type: ignore[arg-type]
        clock=http.clock,
        validate_inline=True,
    )

    stored = http.record(ENTITY_ID)
    assert result.outcome == "validation_failed" and stored["syncStatus"] == "failed"
    assert stored["syncErrorMessage"].startswith(
        "Validation failed: name: Max3 Mustermann != 22Test8 GmbH"
    )
    assert stored["syncRetryCount"] == 1 and stored["syncNextRetry"] is not None
    assert stored["syncLockedAt"] is None
    _never_clean_while_names_differ(http)


@pytest.mark.parametrize("direction", ["both", "to_advoware", "to_espocrm"])
def test_seed_is_never_left_clean_while_the_names_differ(seeded: Http, direction: str) -> None:
    http = seeded
    http.run(ENTITY_ID, direction=direction)
    _never_clean_while_names_differ(http)
    http.run(ENTITY_ID, direction=direction, dry_run=True)
    _never_clean_while_names_differ(http)
