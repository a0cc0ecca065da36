"""The in-memory fakes run the sandbox's rules in-process: the client contract they pin."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from include.beteiligte_sync.errors import BadRequest, Conflict, Forbidden, NotFound
from tests.fakes import FakeAdvoware, FakeClock, FakeEspoCrm, FakePair

EMAILS = [{"emailAddress": "a@example.com"}, {"emailAddress": "b@example.com"}]


def test_fake_list_records_carry_no_arrays_but_get_does() -> None:
    espo = FakeEspoCrm()
    record = espo.load({"name": "Muster", "emailAddressData": EMAILS})
    (listed,) = espo.iter_beteiligte(select=["name", "emailAddressData"])
    assert "emailAddressData" not in listed and listed["id"] == record["id"]
    (listed,) = espo.iter_beteiligte()
    assert listed["emailAddress"] == "a@example.com" and "phoneNumberData" not in listed
    whole = espo.get_beteiligte(record["id"])
    assert [e["emailAddress"] for e in whole["emailAddressData"]] == [
        "a@example.com",
        "b@example.com",
    ]


def test_fake_pages_until_a_short_page_and_counts_each_request() -> None:
    espo = FakeEspoCrm([{"name": f"N{i}"} for i in range(400)])
    assert len(list(espo.iter_beteiligte())) == 400
    assert espo.calls["iter_beteiligte"] == 3  # 200, 200, then an empty short page
    espo.reset_calls()
    assert len(list(espo.iter_beteiligte(limit=250))) == 250
    assert espo.calls["iter_beteiligte"] == 2


def test_fake_cuts_a_long_in_filter_to_fit_the_request_line() -> None:
    espo = FakeEspoCrm([{"name": f"N{i}"} for i in range(30)])
    ids = [r["id"] for r in espo.records.values()]
    wanted = ids[:10] + [f"{i:017x}" for i in range(1000)]
    found = list(espo.iter_beteiligte([{"type": "in", "attribute": "id", "value": wanted}]))
    assert sorted(r["id"] for r in found) == sorted(ids[:10])
    assert espo.calls["iter_beteiligte"] > 1


def test_fake_put_answer_has_no_arrays_and_409_only_on_a_differing_value() -> None:
    espo = FakeEspoCrm()
    record = espo.load({"name": "Muster", "syncLockToken": "a", "emailAddressData": EMAILS})
    answer = espo.update_beteiligte(record["id"], {"syncRetryCount": 1}, version_number=1)
    assert "emailAddressData" not in answer and answer["versionNumber"] == 2
    same = espo.update_beteiligte(record["id"], {"syncLockToken": "a"}, version_number=1)
    assert same["versionNumber"] == 3
    with pytest.raises(Conflict) as caught:
        espo.update_beteiligte(record["id"], {"syncLockToken": "b"}, version_number=1)
    assert caught.value.reason == "modified" and caught.value.status == 409


def test_fake_follows_the_formula_and_entity_defs() -> None:
    espo = FakeEspoCrm()
    record = espo.create_as_person({"name": "Muster", "syncStatus": "clean"})
    assert record["syncStatus"] == "pending_sync"
    espo.update_beteiligte(record["id"], {"syncStatus": "syncing"})
    espo.edit_as_person(record["id"], {"vorname": "Erika"})
    assert espo.record(record["id"])["syncStatus"] == "dirty"  # also while syncing
    with pytest.raises(BadRequest) as caught:
        espo.update_beteiligte(record["id"], {"syncLockToken": "x" * 65})
    assert caught.value.reason == "validationFailure"
    with pytest.raises(NotFound):
        espo.get_beteiligte("00000000000000000")


def test_fake_timestamps_follow_the_clock() -> None:
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    pair = FakePair(clock=clock)
    record = pair.espocrm.load({"name": "Muster"})
    assert record["createdAt"] == "2026-03-01 12:00:00"
    clock.advance(minutes=5)
    answer = pair.espocrm.update_beteiligte(record["id"], {"vorname": "Max"})
    assert answer["modifiedAt"] == "2026-03-01 12:05:00"
    party = pair.advoware.load({"name": "Muster GmbH"})
    assert party["geaendertAm"] == "2026-03-01T13:05:00"  # Europe/Berlin, no offset


def test_fake_advoware_write_answers_carry_only_betnr() -> None:
    advo = FakeAdvoware()
    created = advo.create_beteiligte({"name": "Muster GmbH"})
    betnr = created["betNr"]
    assert created == {"betNr": betnr}
    assert advo.update_beteiligte(betnr, {"titel": "Dr."}) == {"betNr": betnr}
    assert advo.create_kommunikation(betnr, {"tlf": "1", "kommKz": 1}) == {"betNr": betnr}
    (komm,) = advo.get_beteiligte(betnr)["kommunikation"]
    assert komm["kommKz"] == 0  # the defect, on by default
    assert advo.update_kommunikation(betnr, komm["id"], {"tlf": "2"}) == {"betNr": betnr}
    with pytest.raises(Forbidden):
        advo.delete_kommunikation(betnr, komm["id"])
    assert advo.party(betnr)["kommunikation"][0]["kommKz"] == 1


def test_fake_find_beteiligte_is_none_without_search() -> None:
    advo = FakeAdvoware([{"name": "Alpha GmbH"}])
    assert advo.find_beteiligte("Alpha GmbH") is None
    assert advo.calls["find_beteiligte"] == 1
    searching = FakeAdvoware([{"name": "Alpha GmbH"}], search=True)
    assert [p["name"] for p in searching.find_beteiligte("Alpha GmbH") or []] == ["Alpha GmbH"]


def test_fake_read_only_fields_and_fail_on_keep_working() -> None:
    advo = FakeAdvoware([{"betNr": 100500, "name": "Alt GmbH"}], read_only_fields=["name"])
    advo.update_beteiligte(100500, {"name": "Neu GmbH", "titel": "Dr."})
    assert advo.party(100500)["name"] == "Alt GmbH" and advo.party(100500)["titel"] == "Dr."
    advo.fail_on("get_beteiligte", RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        advo.get_beteiligte(100500)
    assert advo.get_beteiligte(100500)["name"] == "Alt GmbH"
