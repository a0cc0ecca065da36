"""Create over HTTP: pending_sync -> party in Advoware, betnr stored, clean after validation."""

from __future__ import annotations

from typing import Any

from include.beteiligte_sync.clients import EspoCrmClient
from include.beteiligte_sync.errors import ServerError
from include.beteiligte_sync.sync import sync_entity
from tests.integration.http_support import ADVO_PARTIES, ESPO_RECORD, Http


def test_pending_sync_entity_is_created_in_advoware_and_clean_after_validation(
    http: Http,
) -> None:
    entity_id = http.create_as_person(
        name="Muster GmbH",
        rechtsform="GmbH",
        handelsregisterNummer="HRB 12345",
        emailAddressData=[{"emailAddress": "info@muster.example", "primary": True}],
        phoneNumberData=[{"phoneNumber": "+49 30 555111", "type": "Office", "primary": True}],
    )
    assert http.record(entity_id)["syncStatus"] == "pending_sync"

    result = http.run(entity_id, validate_inline=False)
    assert result.outcome == "created" and result.needs_validation
    held = http.record(entity_id)
    assert held["syncStatus"] == "syncing"  # not clean before the round-trip check
    assert held["betnr"] == result.betnr

    validated = http.validate(entity_id, written=result)
    stored = http.record(entity_id)
    (party,) = http.parties()
    assert validated.outcome == "clean" and stored["syncStatus"] == "clean"
    assert stored["betnr"] == party["betNr"]
    assert (party["name"], party["rechtsform"], party["handelsRegisterNummer"]) == (
        "Muster GmbH",
        "GmbH",
        "HRB 12345",
    )
    assert sorted(k["tlf"] for k in party["kommunikation"]) == [
        "+49 30 555111",
        "info@muster.example",
    ]
    assert stored["advowareRowId"] == party["rowId"]
    assert stored["syncLockedAt"] is None and stored["syncRetryCount"] == 0


def test_lost_response_of_the_create_post_leaves_exactly_one_party(http: Http) -> None:
    """Where Advoware offers the (optional) party search, a lost create answer is recovered
    at once. Without it: test_integration_fidelity."""
    http.sb.advoware_admin.configure(search=True)
    entity_id = http.create_as_person(name="Verloren", vorname="Vera", anrede="Frau")
    http.sb.advoware_admin.set_faults(
        [{"method": "POST", "path": ADVO_PARTIES, "kind": "drop_response", "count": 1}]
    )

    first = http.run(entity_id)
    posts = http.calls().advoware[f"POST {ADVO_PARTIES}"]
    http.clock.advance(minutes=2)
    second = http.run(entity_id)

    assert http.sb.advoware_admin.faults()["rules"][0]["fired"] == 1
    assert posts == 1  # the hook found its own party by name instead of posting again
    (party,) = http.parties()
    stored = http.record(entity_id)
    assert stored["betnr"] == party["betNr"] and (party["name"], party["vorname"]) == (
        "Verloren",
        "Vera",
    )
    assert first.status == "clean" and first.outcome == "created"
    assert second.outcome == "no_change" and stored["syncStatus"] == "clean"


class _BetnrWriteFails:
    """The EspoCRM hook, except that the write of the new betnr fails (as if the worker died
    right after the Advoware POST)."""

    def __init__(self, hook: EspoCrmClient) -> None:
        self.hook = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self.hook, name)

    def update_beteiligte(self, entity_id: str, data: Any, **kw: Any) -> dict[str, Any]:
        if "betnr" in data:
            raise ServerError("worker died", request="PUT " + ESPO_RECORD)
        return self.hook.update_beteiligte(entity_id, data, **kw)


def test_create_interrupted_before_the_betnr_write_is_adopted_not_repeated(http: Http) -> None:
    http.sb.advoware_admin.configure(search=True)  # the optional capability, where it exists
    entity_id = http.create_as_person(name="Adoptiert", vorname="Ada", anrede="Frau")
    first = sync_entity(
        http.record(entity_id),
        _BetnrWriteFails(http.espocrm),  # type: ignore[arg-type]
        http.advoware,
        clock=http.clock,
        validate_inline=True,
    )
    after_first = http.record(entity_id)
    # the release, which would record the betnr, fails the same way: the lock stays behind
    assert first.outcome == "failed" and after_first["betnr"] is None
    assert str(after_first["advowareRowId"]).startswith("create-pending:")
    assert len(http.parties()) == 1

    http.clock.advance(minutes=16)  # the lock is stale
    http.reset_counters()
    second = http.run(entity_id)

    (party,) = http.parties()  # adopted, not created a second time
    stored = http.record(entity_id)
    assert second.outcome == "created" and stored["syncStatus"] == "clean"
    assert stored["betnr"] == party["betNr"] and stored["advowareRowId"] == party["rowId"]
    calls = http.calls()
    assert calls.advoware[f"GET {ADVO_PARTIES}"] == 1  # the search by name
    assert calls.advoware[f"POST {ADVO_PARTIES}"] == 0


def test_create_cost_is_bounded(http: Http) -> None:
    """Whole record, lock, the hook's probe for a party search (once per hook: absent here),
    POST, read back (the answer carries only the betNr), betnr write, validation's two reads
    and final write, and the token; each Kommunikation one more POST."""
    entity_id = http.create_as_person(
        name="Kosten",
        phoneNumberData=[{"phoneNumber": "+49 30 1", "type": "Office", "primary": True}],
    )

    assert http.run(entity_id).status == "clean"

    calls = http.calls()
    searches = http.sb.advoware_admin.counters()["calls"].get(f"GET {ADVO_PARTIES}", {})
    assert sum(searches.values()) <= 1 and calls.advoware[f"POST {ADVO_PARTIES}"] == 1
    assert calls.business <= 10 + 1, calls
