"""The outcomes of a linked pair over HTTP, their API cost, echo-freedom, 404 and dry run."""

from __future__ import annotations

from typing import Any

import pytest

from include.beteiligte_sync import mapping
from include.beteiligte_sync.sync import sync_all
from tests.integration.http_support import ADVO_PARTY, ESPO_RECORD, Http


def _business_hash(record: dict[str, Any]) -> str:
    return mapping.business_hash(mapping.from_espocrm(record))


# --- the three directions of change -------------------------------------------------------------


def test_espocrm_edit_goes_to_advoware_and_is_clean_after_validation(http: Http) -> None:
    entity_id, betnr = http.linked()
    http.edit_espocrm(entity_id, vorname="Moritz", titel="Dr.")
    assert http.record(entity_id)["syncStatus"] == "dirty"

    result = http.run(entity_id)

    party, stored = http.party(betnr), http.record(entity_id)
    assert result.outcome == "espocrm_newer" and stored["syncStatus"] == "clean"
    assert (party["vorname"], party["titel"]) == ("Moritz", "Dr.")
    assert stored["advowareRowId"] == party["rowId"]  # own write is the new baseline
    assert stored["syncedHash"] == _business_hash(stored)


def test_advoware_edit_goes_to_espocrm_and_is_clean_after_validation(http: Http) -> None:
    entity_id, betnr = http.linked()
    http.edit_advoware(betnr, vorname="Moritz", geburtsdatum="1970-01-02T00:00:00")

    result = http.run(entity_id)

    stored = http.record(entity_id)
    assert result.outcome == "advoware_newer" and stored["syncStatus"] == "clean"
    assert (stored["vorname"], stored["geburtsdatum"]) == ("Moritz", "1970-01-02")
    assert stored["advowareRowId"] == http.party(betnr)["rowId"]
    assert http.notes(entity_id) == []


def test_conflict_is_decided_per_field_and_the_overwritten_advoware_value_is_noted(
    http: Http,
) -> None:
    entity_id, betnr = http.linked()
    http.edit_advoware(betnr, vorname="Advo-Max", titel="Prof.")
    http.edit_espocrm(entity_id, vorname="Espo-Max")

    result = http.run(entity_id)

    party, stored = http.party(betnr), http.record(entity_id)
    assert result.outcome == "conflict" and stored["syncStatus"] == "clean"
    assert party["vorname"] == stored["vorname"] == "Espo-Max"  # both changed: EspoCRM wins
    assert party["titel"] == stored["titel"] == "Prof."  # changed only in Advoware: kept
    (note,) = http.notes(entity_id)
    assert "vorname: 'Advo-Max' -> 'Espo-Max'" in note
    assert "titel" not in note  # nothing of it was overwritten


def test_people_editing_different_fields_on_both_sides_is_no_conflict(http: Http) -> None:
    entity_id, betnr = http.linked()
    http.edit_advoware(betnr, titel="Prof.")
    http.edit_espocrm(entity_id, vorname="Moritz")

    result = http.run(entity_id)

    party, stored = http.party(betnr), http.record(entity_id)
    assert (result.outcome, stored["syncStatus"]) == ("merged", "clean")
    assert (party["vorname"], party["titel"]) == (stored["vorname"], stored["titel"])
    assert (party["vorname"], party["titel"]) == ("Moritz", "Prof.")
    assert http.notes(entity_id) == []


# --- API economy ----------------------------------------------------------------------------


def test_unchanged_entity_costs_one_advoware_get_and_one_espocrm_write(http: Http) -> None:
    entity_id, _ = http.linked()

    result = http.run(entity_id)

    calls = http.calls()
    assert result.outcome == "no_change" and result.status == "clean"
    assert dict(calls.advoware) == {f"GET {ADVO_PARTY}": 1}  # token cached by the hook
    assert dict(calls.espocrm) == {f"PUT {ESPO_RECORD}": 1}


def test_stammdaten_change_costs_at_most_seven_calls(http: Http) -> None:
    """The candidate list has no email and phone arrays, so a changed party is read whole
    (1), then Advoware (1), lock (1), Advoware PUT (1), validation's two reads and final
    write (3)."""
    entity_id, _ = http.linked()
    http.edit_espocrm(entity_id, vorname="Moritz")

    assert http.run(entity_id).status == "clean"
    calls = http.calls()
    assert calls.business <= 7, calls
    assert calls.token == 0


def test_a_fresh_hook_pays_one_token_call_for_many_entities(http: Http) -> None:
    ids = [http.linked(name=f"Partei {i}")[0] for i in range(3)]
    http.advoware = type(http.advoware)()  # a new worker: no token yet
    http.reset_counters()

    for entity_id in ids:
        assert http.run(entity_id).outcome == "no_change"

    calls = http.calls()
    assert calls.token == 1  # amortised over the hook's entities
    assert calls.advoware[f"GET {ADVO_PARTY}"] == 3 and calls.writes("espocrm") == 3


# --- no ping-pong ---------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["espocrm", "advoware"])
def test_after_one_edit_only_the_first_of_three_runs_writes_business_data(
    http: Http, side: str
) -> None:
    entity_id, betnr = http.linked()
    if side == "espocrm":
        http.edit_espocrm(entity_id, vorname="Moritz")
    else:
        http.edit_advoware(betnr, vorname="Moritz")

    first = http.run(entity_id)
    assert first.outcome == f"{side}_newer" and first.status == "clean"
    row_id, espo_hash = http.party(betnr)["rowId"], _business_hash(http.record(entity_id))

    for _ in range(2):
        http.clock.advance(minutes=15)
        http.reset_counters()
        again = http.run(entity_id)
        calls, stored = http.calls(), http.record(entity_id)
        assert again.outcome == "no_change" and stored["syncStatus"] == "clean"
        assert calls.writes("advoware") == 0
        assert calls.writes("espocrm") == 1  # the bookkeeping write (advowareLastSync)
        assert http.party(betnr)["rowId"] == row_id
        assert _business_hash(stored) == espo_hash


# --- deleted in Advoware ----------------------------------------------------------------------


def test_party_deleted_in_advoware_is_marked_and_nothing_is_deleted(http: Http) -> None:
    entity_id, betnr = http.linked()
    other_id, other_betnr = http.linked(name="Andere")
    http.sb.advoware_admin.edit(betNr=betnr, delete=True)
    http.reset_counters()

    first = sync_all(http.espocrm, http.advoware, clock=http.clock, entity_ids=[entity_id])
    assert [r.outcome for r in first] == ["not_found_once"]  # a second look decides
    assert http.record(entity_id)["syncStatus"] == "failed"
    http.clock.advance(minutes=2)
    (result,) = sync_all(http.espocrm, http.advoware, clock=http.clock, entity_ids=[entity_id])

    stored = http.record(entity_id)
    assert result.outcome == "deleted_in_advoware"
    assert stored["syncStatus"] == "deleted_in_advoware" and stored["betnr"] == betnr
    assert str(betnr) in stored["syncErrorMessage"]
    assert (stored["name"], stored["vorname"]) == ("Mustermann", "Max")  # data kept
    calls = http.calls()
    assert not [k for k in (*calls.espocrm, *calls.advoware) if k.startswith("DELETE")]
    assert http.record(other_id)["syncStatus"] == "clean"
    assert [p["betNr"] for p in http.parties()] == [other_betnr]


# --- dry run --------------------------------------------------------------------------------


def test_dry_run_writes_nothing_on_either_server(http: Http) -> None:
    espo_edit, _ = http.linked(name="Espo")
    advo_edit, advo_betnr = http.linked(name="Advo")
    both, both_betnr = http.linked(name="Beide")
    new = http.create_as_person(name="Neu", vorname="Nina")
    gone, gone_betnr = http.linked(name="Weg")
    http.sb.advoware_admin.edit(betNr=gone_betnr, delete=True)
    http.edit_espocrm(espo_edit, vorname="Moritz")
    http.edit_advoware(advo_betnr, vorname="Moritz")
    http.edit_espocrm(both, vorname="E")
    http.edit_advoware(both_betnr, vorname="A")
    before_espo = http.sb.espocrm_admin.state()
    before_advo = http.sb.advoware_admin.state()
    http.reset_counters()

    results = [http.run(i, dry_run=True) for i in (espo_edit, advo_edit, both, new, gone)]

    assert [r.outcome for r in results] == ["dry_run"] * 5
    espo_plan, advo_plan, both_plan, new_plan, gone_plan = (r.plan_text for r in results)
    assert gone_plan == "not found once (404)"  # a second look would decide
    assert "espocrm_newer" in espo_plan and "update Advoware party" in espo_plan
    assert "advoware_newer" in advo_plan and "update EspoCRM" in advo_plan
    assert "conflict" in both_plan and "post stream note" in both_plan
    assert "create Advoware party" in new_plan
    assert "Moritz" not in espo_plan + advo_plan  # values masked
    calls = http.calls()
    assert calls.writes("espocrm") == 0 and calls.writes("advoware") == 0, calls
    assert http.sb.espocrm_admin.state() == before_espo
    assert http.sb.advoware_admin.state() == before_advo


def test_token_expiring_in_the_middle_of_apply_is_renewed_once(http: Http) -> None:
    entity_id, betnr = http.linked()
    http.edit_espocrm(entity_id, vorname="Moritz")
    http.sb.advoware_admin.set_faults(
        [{"method": "PUT", "path": ADVO_PARTY, "kind": "expire_tokens", "count": 1}]
    )

    result = http.run(entity_id)

    calls = http.calls()
    assert result.status == "clean" and http.party(betnr)["vorname"] == "Moritz"
    assert calls.token == 1  # one renewal, then the PUT is repeated once
    assert http.sb.advoware_admin.counters()["calls"][f"PUT {ADVO_PARTY}"] == {
        "401": 1,
        "200": 1,
    }
