"""Regression tests for the engine bugs the model-based proof found (one test per fix)."""

from __future__ import annotations

from include.beteiligte_sync.errors import AuthFailed, ServerError
from include.beteiligte_sync.sync import sync_all, validate_entity
from tests.engine.helpers import linked_pair, run
from tests.fakes import FakePair


def test_failed_outcome_write_does_not_escape_and_the_run_goes_on() -> None:
    pair = FakePair()
    first, _ = linked_pair(pair)
    second = pair.espocrm.create_as_person({"name": "Zweite"})["id"]
    pair.espocrm.edit_as_person(first, {"vorname": "Moritz"})
    # lock, Advoware write, then validation's final write is refused (token renewal refused)
    pair.espocrm.fail_on("update_beteiligte", AuthFailed("refused", status=401), skip=1)
    ids = [first, second]
    results = {
        r.entity_id: r
        for r in sync_all(pair.espocrm, pair.advoware, clock=pair.clock, entity_ids=ids)
    }
    assert results[first].outcome == "failed" and "AuthFailed" in (results[first].error or "")
    assert pair.espocrm.record(second)["syncStatus"] == "clean"


def test_crash_after_the_advoware_marker_cannot_lose_a_value_typed_in_advoware() -> None:
    pair = FakePair()
    entity_id, betnr = linked_pair(pair)
    pair.advoware.edit_kommunikation_as_person(betnr, None, {"tlf": "+49 30 777", "kommKz": 1})
    # the EspoCRM write of the plan fails and so does the release: lock stays behind
    pair.espocrm.fail_on("update_beteiligte", ServerError("down"), skip=1, times=2)
    run(pair, entity_id)
    pair.clock.advance(minutes=30)
    assert run(pair, entity_id).status == "clean"
    phones = [p["phoneNumber"] for p in pair.espocrm.record(entity_id)["phoneNumberData"]]
    tlfs = [k["tlf"] for k in pair.advoware.party(betnr)["kommunikation"]]
    assert phones == ["+49 30 777"] and tlfs == ["+49 30 777"]


def test_create_stores_its_baseline_so_a_later_advoware_edit_wins() -> None:
    pair = FakePair()
    entity_id = pair.espocrm.create_as_person({"name": "Neu"})["id"]
    # neither the read-back after the create nor validation can read the party
    pair.advoware.fail_on("get_beteiligte", ServerError("down"), times=2)
    assert run(pair, entity_id).status == "failed"
    betnr = pair.espocrm.record(entity_id)["betnr"]
    pair.advoware.edit_as_person(betnr, {"name": "Neu Umbenannt"})
    for _ in range(3):
        pair.clock.advance(minutes=20)
        run(pair, entity_id)
    assert pair.espocrm.record(entity_id)["name"] == "Neu Umbenannt"
    assert pair.advoware.party(betnr)["name"] == "Neu Umbenannt"


def test_interrupted_create_is_adopted_after_a_rename() -> None:
    pair = FakePair()
    pair.advoware.search = True  # adoption needs the (optional) party search
    entity_id = pair.espocrm.create_as_person({"name": "Alt GmbH", "rechtsform": "GmbH"})["id"]
    pair.advoware.fail_on("create_beteiligte", ServerError("lost"), after_perform=True)
    run(pair, entity_id)
    pair.espocrm.edit_as_person(entity_id, {"name": "Neu GmbH"})
    pair.clock.advance(minutes=2)
    assert run(pair, entity_id).status == "clean"
    assert len(pair.advoware.parties) == 1
    assert next(iter(pair.advoware.parties.values()))["name"] == "Neu GmbH"


def test_conflict_with_a_value_copied_into_advoware_leaves_no_duplicate() -> None:
    pair = FakePair()
    phone = {"phoneNumber": "+49 30 000003", "type": "Office"}
    entity_id, betnr = linked_pair(pair, phoneNumberData=[phone])
    pair.advoware.edit_as_person(betnr, {"name": "Advoware Name"})
    pair.espocrm.edit_as_person(entity_id, {"name": "EspoCRM Name"})  # conflict: EspoCRM wins
    (synced,) = pair.advoware.party(betnr)["kommunikation"]
    pair.advoware.edit_kommunikation_as_person(betnr, synced["id"], {"tlf": "+49 30 000006"})
    pair.advoware.edit_kommunikation_as_person(betnr, None, {"tlf": "+4930000003", "kommKz": 1})
    assert run(pair, entity_id).status == "clean"
    tlfs = [k["tlf"] for k in pair.advoware.party(betnr)["kommunikation"] if k["tlf"]]
    assert tlfs == ["+4930000003"]
    assert any("+49 30 000006" in note for note in pair.espocrm.notes_for(entity_id))
    phones = [p["phoneNumber"] for p in pair.espocrm.record(entity_id)["phoneNumberData"]]
    assert phones == ["+49 30 000003"]


# --- found by the extended model (issue 14) ------------------------------------------------


def test_advoware_edit_during_the_lock_after_our_espocrm_write_is_not_a_conflict() -> None:
    pair = FakePair()
    entity_id, betnr = linked_pair(pair)
    pair.advoware.edit_as_person(betnr, {"vorname": "Moritz"})  # a person in Advoware
    written = run(pair, entity_id, validate_inline=False)  # copies Moritz to EspoCRM, locked
    assert written.needs_validation and pair.espocrm.record(entity_id)["vorname"] == "Moritz"
    pair.advoware.edit_as_person(betnr, {"vorname": "Moritz Maria"})  # the same person again
    validate_entity(entity_id, pair.espocrm, pair.advoware, clock=pair.clock, written=written)
    pair.clock.advance(minutes=30)
    run(pair, entity_id, force=True)
    # Only Advoware changed since the last sync (Moritz was our own write): it wins.
    assert pair.advoware.party(betnr)["vorname"] == "Moritz Maria"
    assert pair.espocrm.record(entity_id)["vorname"] == "Moritz Maria"


def test_one_way_to_advoware_run_keeps_a_value_changed_in_advoware() -> None:
    pair = FakePair()
    phone = {"phoneNumber": "+49 30 000001", "type": "Office"}
    entity_id, betnr = linked_pair(pair, phoneNumberData=[phone])
    (synced,) = pair.advoware.party(betnr)["kommunikation"]
    pair.advoware.edit_kommunikation_as_person(betnr, synced["id"], {"tlf": "+49 30 000004"})
    run(pair, entity_id, direction="to_advoware", force=True)
    tlfs = [k["tlf"] for k in pair.advoware.party(betnr)["kommunikation"] if k["tlf"]]
    phones = [p["phoneNumber"] for p in pair.espocrm.record(entity_id)["phoneNumberData"]]
    # A one-way run destroys nothing on its target: the new number stays in Advoware.
    assert "+49 30 000004" in tlfs + phones


def test_our_espocrm_write_with_failed_validation_is_no_change_next_time() -> None:
    pair = FakePair()
    entity_id, betnr = linked_pair(pair)
    pair.advoware.edit_as_person(betnr, {"vorname": "Moritz"})
    # sync reads the party, copies Moritz to EspoCRM; validation's read of the party fails
    pair.advoware.fail_on("get_beteiligte", ServerError("down"), skip=1)
    assert run(pair, entity_id).status == "failed"
    assert pair.espocrm.record(entity_id)["vorname"] == "Moritz"
    pair.advoware.edit_as_person(betnr, {"vorname": "Moritz Maria"})
    pair.clock.advance(minutes=30)
    run(pair, entity_id, force=True)
    assert pair.advoware.party(betnr)["vorname"] == "Moritz Maria"
    assert pair.espocrm.record(entity_id)["vorname"] == "Moritz Maria"


def test_advoware_edit_during_the_lock_after_our_advoware_write_is_not_a_conflict() -> None:
    pair = FakePair()
    entity_id, betnr = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})
    written = run(pair, entity_id, validate_inline=False)  # writes Moritz to Advoware, locked
    assert written.needs_validation and pair.advoware.party(betnr)["vorname"] == "Moritz"
    pair.advoware.edit_as_person(betnr, {"vorname": "Moritz Maria"})  # a person in Advoware
    validate_entity(entity_id, pair.espocrm, pair.advoware, clock=pair.clock, written=written)
    pair.clock.advance(minutes=30)
    run(pair, entity_id, force=True)
    assert pair.advoware.party(betnr)["vorname"] == "Moritz Maria"
    assert pair.espocrm.record(entity_id)["vorname"] == "Moritz Maria"
