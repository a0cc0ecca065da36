"""The sync against servers as strict as the real ones (SPEC §4-§5), over HTTP.

Each test is a story a firm would meet on its real EspoCRM and Advoware, which the earlier,
lenient sandbox could not show: list records without email and phone arrays, a 409 only when
a written value differs, request lines over 8 KB refused, field lengths of the shipped entity
definition, no party search in Advoware, write answers that carry only the betNr.
"""

from __future__ import annotations

from typing import Any

from include.beteiligte_sync.sync import EntityResult, select_candidates, sync_all, sync_entity
from include.cli.views import link_entity
from tests.integration.http_support import ADVO_PARTIES, ESPO_RECORD, Http

EMAILS = [
    {"emailAddress": "kanzlei@vier.example", "primary": True},
    {"emailAddress": "privat@vier.example", "primary": False},
]
PHONES = [
    {"phoneNumber": "+49 30 1111", "type": "Office", "primary": True},
    {"phoneNumber": "+49 170 2222", "type": "Mobile", "primary": False},
]
FOUR = sorted(["kanzlei@vier.example", "privat@vier.example", "+49 30 1111", "+49 170 2222"])


def _both_sides_hold_all_four(http: Http, entity_id: str, betnr: int) -> None:
    stored = http.record(entity_id)
    assert sorted(e["emailAddress"] for e in stored["emailAddressData"]) == FOUR[2:]
    assert sorted(p["phoneNumber"] for p in stored["phoneNumberData"]) == FOUR[:2]
    values = sorted(k["tlf"] for k in http.party(betnr)["kommunikation"] if k["tlf"])
    assert values == FOUR


def test_two_emails_and_two_phones_survive_a_name_edit_a_scheduled_run_and_a_recheck(
    http: Http,
) -> None:
    entity_id = http.create_as_person(
        name="Vierling", vorname="Vera", emailAddressData=EMAILS, phoneNumberData=PHONES
    )
    assert http.run(entity_id).status == "clean"
    betnr = int(http.record(entity_id)["betnr"])
    _both_sides_hold_all_four(http, entity_id, betnr)

    http.edit_espocrm(entity_id, name="Vierling-Neu")  # a person's edit: dirty
    http.clock.advance(minutes=10)
    # The scheduled run plans from the candidate list, whose records carry no arrays.
    results = sync_all(http.espocrm, http.advoware, clock=http.clock, settings=http.settings)
    assert [r.status for r in results if r.entity_id == entity_id] == ["clean"]
    assert http.party(betnr)["name"] == "Vierling-Neu"
    _both_sides_hold_all_four(http, entity_id, betnr)

    http.clock.advance(minutes=10)
    http.reset_counters()
    forced = sync_all(
        http.espocrm,
        http.advoware,
        clock=http.clock,
        settings=http.settings,
        entity_ids=[entity_id],
        force=True,
    )
    assert [r.status for r in forced] == ["clean"]
    _both_sides_hold_all_four(http, entity_id, betnr)
    # Nothing changed: the list record is enough (one Advoware GET, one bookkeeping write).
    calls = http.calls()
    assert calls.advoware[f"GET {ADVO_PARTIES}/{{betNr}}"] == 1
    assert calls.espocrm[f"GET {ESPO_RECORD}"] == 0 and calls.writes("espocrm") == 1


def test_a_clean_party_changed_only_in_advoware_reads_the_whole_record_before_planning(
    http: Http,
) -> None:
    entity_id = http.create_as_person(name="Zwei", emailAddressData=EMAILS, phoneNumberData=PHONES)
    assert http.run(entity_id).status == "clean"
    betnr = int(http.record(entity_id)["betnr"])
    http.edit_advoware(betnr, vorname="Zora")
    http.clock.advance(minutes=10)

    results = sync_all(http.espocrm, http.advoware, clock=http.clock, settings=http.settings)

    assert [r.status for r in results if r.entity_id == entity_id] == ["clean"]
    assert http.record(entity_id)["vorname"] == "Zora"
    _both_sides_hold_all_four(http, entity_id, betnr)


class _SecondRunInside:
    """The Advoware hook, except that just before the first party write a second run syncs
    the same entity from the same candidate record (both read it before either locked)."""

    def __init__(self, http: Http, candidate: dict[str, Any]) -> None:
        self.http, self.candidate = http, candidate
        self.second: EntityResult | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http.advoware, name)

    def update_beteiligte(self, betnr: int, data: Any) -> Any:
        if self.second is None:
            self.second = sync_entity(
                dict(self.candidate),
                self.http.espocrm,
                self.http.advoware,
                clock=self.http.clock,
                validate_inline=False,
            )
        return self.http.advoware.update_beteiligte(betnr, data)


def test_two_runs_locking_the_same_party_in_the_same_second_one_skips(http: Http) -> None:
    entity_id, betnr = http.linked()
    http.edit_espocrm(entity_id, vorname="Moritz")
    whole = http.espocrm.get_beteiligte(entity_id)  # both runs read the same version
    inside = _SecondRunInside(http, whole)
    http.reset_counters()

    first = sync_entity(
        dict(whole),
        http.espocrm,
        inside,  # type: ignore[arg-type]
        clock=http.clock,  # the same second for both locks
        validate_inline=False,
    )

    second = inside.second
    assert second is not None and second.outcome == "skipped_locked"
    assert first.needs_validation and first.lock_token
    # EspoCRM refused the second lock only because its token differs from the first's.
    assert http.sb.espocrm_admin.counters()["calls"][f"PUT {ESPO_RECORD}"]["409"] == 1
    assert http.calls().advoware[f"PUT {ADVO_PARTIES}/{{betNr}}"] == 1
    assert http.record(entity_id)["syncLockToken"] == first.lock_token
    assert http.validate(entity_id, written=first).status == "clean"
    assert http.party(betnr)["vorname"] == "Moritz"


def test_validation_of_a_lock_taken_over_writes_nothing(http: Http) -> None:
    entity_id, _ = http.linked()
    http.edit_espocrm(entity_id, vorname="Moritz")
    first = http.run(entity_id, validate_inline=False)
    # The lock ran past its TTL and another run took it over with its own token.
    http.edit_espocrm(entity_id, syncStatus="syncing", syncLockToken="another-run")
    http.reset_counters()

    result = http.validate(entity_id, written=first)

    assert result.outcome == "changed_during_sync"
    assert http.calls().writes("espocrm") == 0
    assert http.record(entity_id)["syncLockToken"] == "another-run"


def test_an_edit_made_while_we_hold_the_lock_is_synced_next_not_lost(http: Http) -> None:
    entity_id, betnr = http.linked()
    http.edit_advoware(betnr, vorname="Adam")  # EspoCRM gets this by our own write
    first = http.run(entity_id, validate_inline=False)
    assert http.record(entity_id)["vorname"] == "Adam"
    http.edit_espocrm(entity_id, titel="Dr.")  # a clerk edits while we hold the lock

    assert http.validate(entity_id, written=first).outcome == "changed_during_sync"
    stored = http.record(entity_id)
    assert stored["syncStatus"] == "dirty" and stored["syncLockToken"] is None

    http.clock.advance(minutes=1)
    again = http.run(entity_id)
    assert (again.outcome, again.status) == ("espocrm_newer", "clean")  # no false conflict
    assert (http.party(betnr)["vorname"], http.party(betnr)["titel"]) == ("Adam", "Dr.")
    assert http.notes(entity_id) == []


def test_a_thousand_requested_candidates_are_fetched_without_a_414(http: Http) -> None:
    ids = [http.create_as_person(name=f"Partei {n:04d}", vorname="Test") for n in range(1000)]
    http.reset_counters()

    records = select_candidates(http.espocrm, clock=http.clock, entity_ids=ids)

    assert [r["id"] for r in records] == ids
    answers = http.sb.espocrm_admin.counters()["calls"]["GET /api/v1/CBeteiligte"]
    assert set(answers) == {"200"}, answers


def test_a_sixty_character_company_name_is_created_once(http: Http) -> None:
    name = "Rechtsanwaltsgesellschaft Müller, Schäfer & Partner mbB Köln"
    assert len(name) == 60
    entity_id = http.create_as_person(name=name, rechtsform="PartG mbB")

    first = http.run(entity_id)
    http.clock.advance(minutes=20)
    second = http.run(entity_id)

    (party,) = http.parties()
    assert party["name"] == name and first.status == second.status == "clean"
    assert http.calls().advoware[f"POST {ADVO_PARTIES}"] == 1
    assert http.record(entity_id)["betnr"] == party["betNr"]


def test_a_create_without_the_search_endpoint_creates_exactly_one_party(http: Http) -> None:
    entity_id = http.create_as_person(name="Ohne Suche", vorname="Olga")

    result = http.run(entity_id)

    (party,) = http.parties()
    assert (result.outcome, result.status) == ("created", "clean")
    assert http.record(entity_id)["betnr"] == party["betNr"]
    assert http.calls().advoware[f"POST {ADVO_PARTIES}"] == 1


def _lost_create(http: Http, entity_id: str) -> Any:
    http.sb.advoware_admin.set_faults(
        [{"method": "POST", "path": ADVO_PARTIES, "kind": "drop_response", "count": 1}]
    )
    first = http.run(entity_id)
    http.sb.advoware_admin.clear_faults()
    return first


def test_an_interrupted_create_without_search_duplicates_nothing_and_says_what_to_check(
    http: Http,
) -> None:
    entity_id = http.create_as_person(name="Unterbrochen", vorname="Uwe")
    first = _lost_create(http, entity_id)
    assert first.status == "failed" and len(http.parties()) == 1

    for _ in range(3):  # later runs, forced past the backoff: never a second POST
        http.clock.advance(minutes=30)
        http.reset_counters()
        again = http.run(entity_id, force=True)
        assert again.status in ("failed", "permanently_failed")
        assert http.calls().advoware[f"POST {ADVO_PARTIES}"] == 0
    assert len(http.parties()) == 1
    message = http.record(entity_id)["syncErrorMessage"]
    assert "interrupted" in message and f"beteiligte link {entity_id} --betnr" in message

    # A person looks in Advoware, finds the party and links it: the next run syncs it.
    (party,) = http.parties()
    link_entity(http.espocrm, http.advoware, http.espocrm.get_beteiligte(entity_id), party["betNr"])
    http.clock.advance(minutes=1)
    assert http.run(entity_id).status == "clean"
    assert len(http.parties()) == 1 and http.record(entity_id)["betnr"] == party["betNr"]


def test_a_create_advoware_refused_outright_is_retried_without_asking(http: Http) -> None:
    entity_id = http.create_as_person(name="Abgelehnt")
    http.sb.advoware_admin.set_faults(
        [{"method": "POST", "path": ADVO_PARTIES, "kind": "error", "status": 400, "count": 1}]
    )
    assert http.run(entity_id).status == "failed"
    http.sb.advoware_admin.clear_faults()
    assert http.record(entity_id)["advowareRowId"] is None  # no create pending: none was made

    http.clock.advance(minutes=2)
    assert http.run(entity_id).status == "clean"
    assert len(http.parties()) == 1
