"""Seed examples (entity 104860, fix list of 2026-02-08) over the in-memory fakes."""

from __future__ import annotations

import logging

import pytest

from include.beteiligte_sync.kommunikation import (
    changed_kommunikation_hash,
    compare_kommunikation,
    find_empty_slot,
    is_sync_relevant,
    kommunikation_hash,
)
from include.beteiligte_sync.markers import parse_bemerkung
from include.beteiligte_sync.ops import MakeEmptySlot, UpdateKommunikation
from tests.engine.helpers import run
from tests.fakes import FakePair
from tests.kommunikation.komm_support import (
    plan_now,
    seed_104860,
    seed_104860_kommunikation,
    sync_once,
    value_marker,
)


@pytest.fixture
def pair() -> FakePair:
    return FakePair()


def test_seed_set_has_four_sync_relevant_of_nine(pair: FakePair, caplog) -> None:
    entity_id, betnr = seed_104860(pair)
    komm = pair.advoware.get_beteiligte(betnr)["kommunikation"]
    relevant = [k["id"] for k in komm if is_sync_relevant(k)]
    assert relevant == [149340, 149342, 149343, 149350]
    plan = plan_now(pair, entity_id, betnr)
    assert (plan.relevant_count, plan.total_count) == (4, 9)
    # The line must come from a sync of the engine, not from a call of this test: the test
    # only runs the sync and reads what the engine logged for this entity.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run(pair, entity_id)
    engine_lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "beteiligte_sync" and r.getMessage().startswith(f"entity {entity_id} ")
    ]
    assert any("(based on 4 sync-relevant of 9 total)" in line for line in engine_lines), (
        engine_lines
    )


def test_hash_covers_only_the_sync_relevant_entries(pair: FakePair) -> None:
    _, betnr = seed_104860(pair)
    komm = pair.advoware.get_beteiligte(betnr)["kommunikation"]
    relevant_only = [k for k in komm if is_sync_relevant(k)]
    assert kommunikation_hash(komm) == kommunikation_hash(relevant_only)
    assert kommunikation_hash(komm) != kommunikation_hash(komm[:1])


def test_hash_is_stable_under_changes_of_irrelevant_entries(pair: FakePair) -> None:
    _, betnr = seed_104860(pair)
    before = kommunikation_hash(pair.advoware.get_beteiligte(betnr)["kommunikation"])
    # A person edits the remark of an empty slot: its rowId changes, it stays irrelevant.
    pair.advoware.edit_kommunikation_as_person(betnr, 149347, {"bemerkung": "[ESPOCRM-SLOT:2] x"})
    pair.advoware.edit_kommunikation_as_person(
        betnr, None, {"kommKz": 5, "tlf": "", "bemerkung": ""}
    )
    after = pair.advoware.get_beteiligte(betnr)["kommunikation"]
    assert kommunikation_hash(after) == before
    assert changed_kommunikation_hash(after, before) is None


def test_hash_changes_when_a_relevant_entry_changes(pair: FakePair) -> None:
    _, betnr = seed_104860(pair)
    before = kommunikation_hash(pair.advoware.get_beteiligte(betnr)["kommunikation"])
    pair.advoware.edit_kommunikation_as_person(betnr, 149343, {"tlf": "1231211112"})
    after = pair.advoware.get_beteiligte(betnr)["kommunikation"]
    assert changed_kommunikation_hash(after, before) == kommunikation_hash(after) != before


def test_hash_changes_when_a_person_types_into_an_empty_slot(pair: FakePair) -> None:
    _, betnr = seed_104860(pair)
    before = kommunikation_hash(pair.advoware.get_beteiligte(betnr)["kommunikation"])
    pair.advoware.edit_kommunikation_as_person(betnr, 149345, {"tlf": "0171 555"})
    assert kommunikation_hash(pair.advoware.get_beteiligte(betnr)["kommunikation"]) != before


def test_typed_in_slot_is_not_an_empty_slot() -> None:
    komm = seed_104860_kommunikation()
    assert find_empty_slot(1, komm)["id"] == 149341  # not 149342, a person typed into it
    assert find_empty_slot(6, komm)["id"] == 149346  # not 149350
    assert find_empty_slot(9, komm) is None


def test_typed_in_slot_is_synced_to_espocrm_and_gets_a_value_marker(pair: FakePair) -> None:
    entity_id, betnr = seed_104860(pair)
    plan = sync_once(pair, entity_id, betnr)
    phones = pair.espocrm.record(entity_id)["phoneNumberData"]
    # 149343 is unmarked and the GET reports kommKz 0: its kind is unknown, so it arrives as
    # "Other", never as "Office" (SPEC §6, issue 15). The typed-in slots keep their kinds.
    assert {(p["phoneNumber"], p["type"]) for p in phones} == {
        ("23423", "Office"),
        ("1231211111", "Other"),
        ("2342342423", "Home"),
    }
    assert sum(p["primary"] for p in phones) == 1
    party = pair.advoware.party(betnr)
    by_id = {k["id"]: k for k in party["kommunikation"]}
    marker = parse_bemerkung(by_id[149342]["bemerkung"])
    assert (marker.is_value, marker.value, marker.kommkz) == (True, "23423", 1)
    assert parse_bemerkung(by_id[149350]["bemerkung"]).kommkz == 6
    assert by_id[149342]["tlf"] == "23423"
    assert plan.changes == 3
    assert compare_kommunikation(pair.espocrm.record(entity_id), pair.advoware.party(betnr)) == []
    assert plan_now(pair, entity_id, betnr).is_empty


def test_conflict_turns_var4_entries_into_empty_slots(pair: FakePair, caplog) -> None:
    entity_id, betnr = seed_104860(pair)
    with caplog.at_level(logging.INFO):
        plan = plan_now(pair, entity_id, betnr, espocrm_wins=True)
    slots = [op for op in plan.advoware_ops if isinstance(op, MakeEmptySlot)]
    assert [(op.komm_id, op.kommkz) for op in slots] == [(149342, 1), (149343, 1), (149350, 6)]
    assert len(plan.advoware_ops) == 3
    assert plan.changes == 3  # the seed's "3 total changes", not 0
    assert plan.espocrm_fields == {}
    assert len(plan.note_lines) == 3
    assert "'23423'" in plan.note_lines[0] and "149342" in plan.note_lines[0]
    assert "Converting 3 Var4 entries to empty slots (EspoCRM wins)" in caplog.text
    assert "3 total changes" in caplog.text
    assert "23423" not in caplog.text  # logs carry ids and counts, never values


def test_after_conflict_both_sides_are_identical(pair: FakePair) -> None:
    entity_id, betnr = seed_104860(pair)
    sync_once(pair, entity_id, betnr, espocrm_wins=True)
    party = pair.advoware.party(betnr)
    assert compare_kommunikation(pair.espocrm.record(entity_id), party) == []
    assert [k["id"] for k in party["kommunikation"] if is_sync_relevant(k)] == [149340]
    reusable = find_empty_slot(1, party["kommunikation"])
    assert reusable is not None and reusable["id"] in (149341, 149342, 149343)
    assert plan_now(pair, entity_id, betnr, espocrm_wins=True).is_empty
    assert plan_now(pair, entity_id, betnr).is_empty


def test_removed_email_becomes_slot_and_next_email_reuses_it(pair: FakePair) -> None:
    entity_id, betnr = seed_104860(pair)
    sync_once(pair, entity_id, betnr)
    pair.espocrm.edit_as_person(entity_id, {"emailAddressData": []})
    plan = sync_once(pair, entity_id, betnr)
    assert [type(op) for op in plan.advoware_ops] == [MakeEmptySlot]
    assert plan.advoware_ops[0].komm_id == 149340
    # Two free MailGesch slots now exist (149344 and 149340); the first one is reused.
    pair.espocrm.edit_as_person(
        entity_id, {"emailAddressData": [{"emailAddress": "neu@example.org", "primary": True}]}
    )
    count_before = len(pair.advoware.party(betnr)["kommunikation"])
    plan = sync_once(pair, entity_id, betnr)
    assert [type(op) for op in plan.advoware_ops] == [UpdateKommunikation]
    assert plan.advoware_ops[0].komm_id in (149340, 149344)
    party = pair.advoware.party(betnr)
    assert len(party["kommunikation"]) == count_before  # no new Advoware entry
    reused = next(k for k in party["kommunikation"] if k["id"] == plan.advoware_ops[0].komm_id)
    assert reused["tlf"] == "neu@example.org"
    assert parse_bemerkung(reused["bemerkung"]).value == "neu@example.org"
    assert plan_now(pair, entity_id, betnr).is_empty


def test_removed_email_slot_is_reused_when_it_is_the_only_one(pair: FakePair) -> None:
    pair.advoware.load(
        {
            "betNr": 5,
            "name": "X",
            "kommunikation": [
                {
                    "id": 1,
                    "kommKz": 4,
                    "tlf": "a@example.org",
                    "bemerkung": value_marker("a@example.org", 4, " Sekretariat"),
                }
            ],
        }
    )
    entity_id = pair.espocrm.load(
        {"name": "X", "betnr": 5, "emailAddressData": [{"emailAddress": "a@example.org"}]}
    )["id"]
    pair.espocrm.edit_as_person(entity_id, {"emailAddressData": []})
    sync_once(pair, entity_id, 5)
    entry = pair.advoware.party(5)["kommunikation"][0]
    assert (entry["tlf"], entry["bemerkung"]) == ("", "[ESPOCRM-SLOT:4] Sekretariat")
    pair.espocrm.edit_as_person(
        entity_id, {"emailAddressData": [{"emailAddress": "b@example.org"}]}
    )
    plan = sync_once(pair, entity_id, 5)
    assert len(plan.advoware_ops) == 1 and plan.advoware_ops[0].komm_id == 1
    entries = pair.advoware.party(5)["kommunikation"]
    assert len(entries) == 1
    assert entries[0]["tlf"] == "b@example.org"
    assert entries[0]["bemerkung"].endswith("] Sekretariat")
