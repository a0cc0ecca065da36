"""Kommunikation through the whole engine over HTTP: notes outside entity conflicts, one-way
validation, and the economy of Kommunikation changes."""

from __future__ import annotations

from typing import Any

from tests.integration.http_support import Http

OFFICE = "+49 30 1111111"
MOBILE = "+49 170 2222222"


def _linked_with_phones(http: Http) -> tuple[str, int, dict[str, int]]:
    """A linked pair with an office and a mobile phone; returns ids by tlf."""
    entity_id, betnr = http.linked(
        phoneNumberData=[
            {"phoneNumber": OFFICE, "type": "Office", "primary": True},
            {"phoneNumber": MOBILE, "type": "Mobile", "primary": False},
        ]
    )
    ids = {k["tlf"]: k["id"] for k in http.party(betnr)["kommunikation"]}
    assert set(ids) == {OFFICE, MOBILE}
    return entity_id, betnr, ids


def _phones(record: dict[str, Any]) -> list[str]:
    return sorted(p["phoneNumber"] for p in record["phoneNumberData"])


def _tlfs(party: dict[str, Any]) -> list[str]:
    return sorted(k["tlf"] for k in party["kommunikation"] if k["tlf"])


def test_entry_changed_on_both_sides_keeps_the_advoware_value_in_a_note(http: Http) -> None:
    entity_id, betnr, ids = _linked_with_phones(http)
    http.edit_espocrm(
        entity_id,
        phoneNumberData=[
            {"phoneNumber": "+49 30 9999999", "type": "Office", "primary": True},
            {"phoneNumber": MOBILE, "type": "Mobile", "primary": False},
        ],
    )
    http.edit_kommunikation(betnr, id=ids[OFFICE], tlf="+49 30 7777777")

    result = http.run(entity_id)

    assert result.status == "clean"
    assert _tlfs(http.party(betnr)) == sorted(["+49 30 9999999", MOBILE])  # EspoCRM wins
    (note,) = http.notes(entity_id)  # ... and the typed Advoware value is on record
    assert "+49 30 7777777" in note and str(ids[OFFICE]) in note


def test_entry_removed_in_espocrm_but_edited_in_advoware_is_noted(http: Http) -> None:
    entity_id, betnr, ids = _linked_with_phones(http)
    http.edit_espocrm(
        entity_id, phoneNumberData=[{"phoneNumber": OFFICE, "type": "Office", "primary": True}]
    )
    http.edit_kommunikation(betnr, id=ids[MOBILE], tlf="+49 170 3333333")

    result = http.run(entity_id)

    assert result.status == "clean"
    assert _tlfs(http.party(betnr)) == [OFFICE]  # the entry became an empty slot
    assert len(http.party(betnr)["kommunikation"]) == 2  # nothing deleted
    (note,) = http.notes(entity_id)
    assert "+49 170 3333333" in note


def test_to_advoware_run_leaves_an_advoware_edit_for_the_next_two_way_run(http: Http) -> None:
    entity_id, betnr, ids = _linked_with_phones(http)
    http.edit_kommunikation(betnr, id=ids[MOBILE], tlf="+49 170 4444444")

    result = http.run(entity_id, direction="to_advoware")

    assert result.outcome == "skipped_direction"  # nothing to copy to Advoware
    assert _tlfs(http.party(betnr)) == sorted([OFFICE, "+49 170 4444444"])  # left alone
    assert http.notes(entity_id) == []
    both = http.run(entity_id)
    assert both.status == "clean"
    assert "+49 170 4444444" in _phones(http.record(entity_id))


def test_plain_espocrm_newer_posts_no_note(http: Http) -> None:
    entity_id, betnr, _ = _linked_with_phones(http)
    http.edit_espocrm(entity_id, vorname="Moritz")

    assert http.run(entity_id).outcome == "espocrm_newer"
    assert http.party(betnr)["vorname"] == "Moritz"
    assert http.notes(entity_id) == []  # our own last-synced values are nobody's edit


def test_to_advoware_run_leaves_a_new_advoware_value_alone_and_not_clean(
    http: Http,
) -> None:
    entity_id, betnr, _ = _linked_with_phones(http)
    http.edit_kommunikation(betnr, tlf="+49 40 5555555", kommKz=1, bemerkung="")  # Var4
    http.edit_espocrm(entity_id, vorname="Moritz")

    result = http.run(entity_id, direction="to_advoware")

    stored = http.record(entity_id)
    # Validated, but not clean: the new Advoware value waits for the next two-way run.
    assert result.outcome == "espocrm_newer" and stored["syncStatus"] == "dirty", result.error
    assert http.party(betnr)["vorname"] == "Moritz"
    assert "+49 40 5555555" in _tlfs(http.party(betnr))  # left alone, not destroyed
    assert _phones(stored) == sorted([OFFICE, MOBILE])  # and not written to EspoCRM


def test_to_advoware_run_leaves_a_new_advoware_value_for_the_next_run_not_clean(http: Http) -> None:
    entity_id, betnr, _ = _linked_with_phones(http)
    http.edit_kommunikation(betnr, tlf="+49 40 5555555", kommKz=1, bemerkung="")

    result = http.run(entity_id, direction="to_advoware")
    # Not clean: the other direction still has the new value to carry over.
    assert result.status == "dirty", result.error

    both = http.run(entity_id)  # the next two-way run brings the value over
    assert both.status == "clean"
    assert "+49 40 5555555" in _phones(http.record(entity_id))


def test_one_changed_kommunikation_costs_about_one_call_more_than_stammdaten(
    http: Http,
) -> None:
    entity_id, _, _ = _linked_with_phones(http)
    http.edit_espocrm(
        entity_id,
        vorname="Moritz",
        phoneNumberData=[
            {"phoneNumber": OFFICE, "type": "Office", "primary": True},
            {"phoneNumber": "+49 170 6666666", "type": "Mobile", "primary": False},
        ],
    )

    result = http.run(entity_id)

    calls = http.calls()
    assert result.status == "clean" and result.kommunikation_changes == 1
    assert calls.advoware["PUT /api/v1/advonet/Beteiligte/{betNr}/Kommunikationen/{kommId}"] == 1
    # Stammdaten (7: whole record, Advoware GET, lock, PUT, validation's two reads and final
    # write) plus the Kommunikation PUT.
    assert calls.business <= 7 + 1, (calls, http.sb.espocrm_admin.counters()["calls"])
