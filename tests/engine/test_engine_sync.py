"""The sync engine over the in-memory fakes: every bullet of issue 4 with observable outcomes."""

from __future__ import annotations

import json
import logging

import pytest

from include.beteiligte_sync.errors import NotFound, ServerError
from include.beteiligte_sync.report import build_report
from include.beteiligte_sync.sync import (
    EntityResult,
    reset_due_permanently_failed,
    select_candidates,
    sync_all,
    sync_entity,
    sync_unit,
    validate_entity,
    validate_written,
)
from tests.engine.helpers import linked_pair, run, writes
from tests.fakes import FakeAdvoware, FakePair


@pytest.fixture
def pair() -> FakePair:
    return FakePair()


# --- create ---------------------------------------------------------------------------------


def test_entity_without_betnr_is_created_in_advoware_and_betnr_stored(pair: FakePair) -> None:
    rec = pair.espocrm.create_as_person({"name": "Muster GmbH", "rechtsform": "GmbH"})
    result = run(pair, rec["id"])
    stored = pair.espocrm.record(rec["id"])
    assert result.outcome == "created" and result.status == "clean"
    assert stored["betnr"] == result.betnr
    assert pair.advoware.party(stored["betnr"])["name"] == "Muster GmbH"
    assert stored["advowareRowId"] == pair.advoware.party(stored["betnr"])["rowId"]
    # whole record, lock, POST, read back (the answer carries only the betNr), betnr,
    # validation (3)
    assert pair.total_calls() <= 8


def test_lost_create_response_does_not_create_a_second_party(pair: FakePair) -> None:
    pair.advoware.search = True  # adoption needs the (optional) party search
    rec = pair.espocrm.create_as_person({"name": "Muster GmbH", "rechtsform": "GmbH"})
    pair.advoware.fail_on(
        "create_beteiligte", ServerError("reset", request="POST /Beteiligte"), after_perform=True
    )
    first = run(pair, rec["id"])
    assert first.status == "failed" and len(pair.advoware.parties) == 1
    assert pair.espocrm.record(rec["id"])["betnr"] is None
    pair.clock.advance(minutes=2)
    second = run(pair, rec["id"])
    assert second.status == "clean"
    assert len(pair.advoware.parties) == 1  # adopted, not created again
    assert pair.espocrm.record(rec["id"])["betnr"] == next(iter(pair.advoware.parties))
    assert pair.advoware.calls["create_beteiligte"] == 1


def test_failed_betnr_write_after_create_is_healed_by_adoption(pair: FakePair) -> None:
    pair.advoware.search = True  # adoption needs the (optional) party search
    rec = pair.espocrm.create_as_person({"name": "Muster", "vorname": "Erika"})
    # lock write passes, the betnr write right after the POST fails
    pair.espocrm.fail_on("update_beteiligte", ServerError("down"), skip=1)
    assert run(pair, rec["id"]).outcome in ("failed", "permanently_failed")
    pair.clock.advance(minutes=2)
    assert run(pair, rec["id"]).status == "clean"
    assert len(pair.advoware.parties) == 1


def test_ambiguous_adoption_fails_with_a_clear_message(pair: FakePair) -> None:
    pair.advoware.search = True  # adoption needs the (optional) party search
    rec = pair.espocrm.create_as_person({"name": "Muster GmbH", "rechtsform": "GmbH"})
    pair.advoware.fail_on("create_beteiligte", ServerError("reset"), after_perform=True)
    run(pair, rec["id"])
    pair.advoware.load({"name": "Muster GmbH", "rechtsform": "GmbH"})  # a twin appears
    pair.clock.advance(minutes=2)
    result = run(pair, rec["id"])
    assert result.status == "failed"
    assert "interrupted create: 2 matching Advoware parties" in (result.error or "")
    assert len(pair.advoware.parties) == 2


# --- change detection, directions, economy --------------------------------------------------


def test_no_change_costs_one_advoware_get_and_one_espocrm_write(pair: FakePair) -> None:
    entity_id, _ = linked_pair(pair)
    result = run(pair, entity_id)
    assert result.outcome == "no_change" and result.status == "clean"
    assert dict(pair.advoware.calls) == {"get_beteiligte": 1}
    assert dict(pair.espocrm.calls) == {"update_beteiligte": 1}


def _info_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]


def test_unchanged_entity_logs_nothing_at_info(
    pair: FakePair, caplog: pytest.LogCaptureFixture
) -> None:
    """A scheduled run over thousands of unchanged parties stays quiet (issue 8: a log line
    inside an Airflow task costs more than the sync's own CPU); DEBUG still tells the story."""
    entity_id, _ = linked_pair(pair)
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        assert run(pair, entity_id).outcome == "no_change"
    assert _info_lines(caplog) == []
    assert any(f"entity {entity_id}" in r.getMessage() for r in caplog.records)


def test_changed_entity_logs_its_plan_and_hash_update_at_info(
    pair: FakePair, caplog: pytest.LogCaptureFixture
) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})
    pair.advoware.edit_kommunikation_as_person(
        betnr, None, {"kommKz": 1, "tlf": "030 123456", "bemerkung": ""}
    )
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert run(pair, entity_id).status == "clean"
    lines = _info_lines(caplog)
    plan = [line for line in lines if line.startswith(f"entity {entity_id} betnr {betnr}:")]
    assert len(plan) == 1 and "differing fields: vorname" in plan[0]
    assert (
        f"entity {entity_id}: Kommunikation hash updated (based on 1 sync-relevant of 1 total)"
        in lines
    )
    assert not any("Moritz" in line or "123456" in line for line in lines)


def test_espocrm_edit_is_written_to_advoware_in_at_most_seven_calls(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})
    result = run(pair, entity_id)
    assert result.outcome == "espocrm_newer" and result.status == "clean"
    assert pair.advoware.party(betnr)["vorname"] == "Moritz"
    assert pair.total_calls() <= 7  # the whole record is read first (list records lack arrays)


def test_advoware_edit_is_written_to_espocrm_in_at_most_seven_calls(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.advoware.edit_as_person(betnr, {"titel": "Dr.", "geburtsdatum": "1970-01-02T00:00:00"})
    result = run(pair, entity_id)
    stored = pair.espocrm.record(entity_id)
    assert result.outcome == "advoware_newer" and stored["syncStatus"] == "clean"
    assert (stored["titel"], stored["geburtsdatum"]) == ("Dr.", "1970-01-02")
    assert pair.total_calls() <= 7  # the whole record is read first (list records lack arrays)


def test_conflict_posts_overwritten_advoware_values_as_note(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.advoware.edit_as_person(betnr, {"vorname": "Advo-Max"})
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Espo-Max"})
    result = run(pair, entity_id)
    assert result.outcome == "conflict" and result.status == "clean"
    assert pair.advoware.party(betnr)["vorname"] == "Espo-Max"  # EspoCRM wins
    (note,) = pair.espocrm.notes_for(entity_id)
    assert "vorname: 'Advo-Max' -> 'Espo-Max'" in note


def test_three_runs_after_one_edit_write_business_data_only_in_the_first(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"name": "Neuname"})
    assert run(pair, entity_id).outcome == "espocrm_newer"
    row_id = pair.advoware.party(betnr)["rowId"]
    for _ in range(2):
        pair.clock.advance(minutes=15)
        pair.reset_calls()
        result = run(pair, entity_id)
        assert result.outcome == "no_change"
        assert writes(pair) == {"espocrm": 1, "advoware": 0}  # only advowareLastSync
    assert pair.advoware.party(betnr)["rowId"] == row_id
    assert pair.espocrm.record(entity_id)["syncStatus"] == "clean"


def test_direction_to_espocrm_does_not_write_an_espocrm_change_to_advoware(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})
    result = run(pair, entity_id, direction="to_espocrm")
    assert result.outcome == "skipped_direction"
    assert writes(pair) == {"espocrm": 0, "advoware": 0}
    assert pair.advoware.party(betnr)["vorname"] == "Max"
    assert run(pair, entity_id, direction="to_advoware").status == "clean"
    assert pair.advoware.party(betnr)["vorname"] == "Moritz"


def test_direction_to_advoware_does_not_copy_advoware_changes(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.advoware.edit_as_person(betnr, {"vorname": "Moritz"})
    assert run(pair, entity_id, direction="to_advoware").outcome == "skipped_direction"
    assert pair.espocrm.record(entity_id)["vorname"] == "Max"


def test_unknown_direction_is_refused(pair: FakePair) -> None:
    entity_id, _ = linked_pair(pair)
    with pytest.raises(ValueError, match="direction"):
        run(pair, entity_id, direction="sideways")


def _run_all(pair: FakePair, *ids: str) -> dict[str, EntityResult]:
    results = sync_all(pair.espocrm, pair.advoware, clock=pair.clock, entity_ids=list(ids))
    return {r.entity_id: r for r in results}


def test_deleted_in_advoware_is_marked_on_the_second_look_and_nothing_deleted(
    pair: FakePair,
) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.advoware.delete_as_person(betnr)

    first = _run_all(pair, entity_id)[entity_id]
    stored = pair.espocrm.record(entity_id)
    assert (first.outcome, stored["syncStatus"]) == ("not_found_once", "failed")
    assert "404" in stored["syncErrorMessage"] and "looks again" in stored["syncErrorMessage"]

    pair.clock.advance(minutes=2)
    second = _run_all(pair, entity_id)[entity_id]
    stored = pair.espocrm.record(entity_id)
    assert (second.outcome, second.status) == ("deleted_in_advoware", "deleted_in_advoware")
    assert stored["syncStatus"] == "deleted_in_advoware" and stored["name"] == "Mustermann"
    assert stored["betnr"] == betnr and stored["syncLockToken"] is None


def test_a_404_glitch_between_two_good_looks_marks_nothing(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.advoware.fail_on("get_beteiligte", NotFound("proxy says 404", status=404))

    assert _run_all(pair, entity_id)[entity_id].outcome == "not_found_once"
    pair.clock.advance(minutes=2)
    again = _run_all(pair, entity_id)[entity_id]

    assert (again.outcome, again.status) == ("no_change", "clean")
    assert pair.advoware.party(betnr)["name"] == "Mustermann"


def test_many_404s_at_once_mark_nothing_and_the_report_alerts(pair: FakePair) -> None:
    ids = [linked_pair(pair, name=f"Partei {n}")[0] for n in range(12)]
    pair.advoware.fail_on("get_beteiligte", NotFound("wrong route", status=404), times=None)

    for _ in range(3):
        results = list(_run_all(pair, *ids).values())
        pair.clock.advance(minutes=20)

    assert {r.outcome for r in results} == {"not_found_unconfirmed"}
    assert all(pair.espocrm.record(i)["syncStatus"] != "deleted_in_advoware" for i in ids)
    report = build_report(r.to_dict() for r in results)
    assert any("wrong base URL or route" in w for w in report.warnings), report.warnings


def test_a_party_restored_in_advoware_comes_back(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.espocrm.edit_as_person(
        entity_id, {"syncStatus": "deleted_in_advoware", "advowareLastSync": None}
    )
    pair.clock.advance(days=8)

    results = sync_all(pair.espocrm, pair.advoware, clock=pair.clock)  # a scheduled run

    assert [r.status for r in results if r.entity_id == entity_id] == ["clean"]
    assert pair.espocrm.record(entity_id)["betnr"] == betnr


def test_dry_run_writes_nothing_and_masks_values(pair: FakePair) -> None:
    entity_id, _ = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Geheimname"})
    result = run(pair, entity_id, dry_run=True)
    assert result.outcome == "dry_run" and result.status is None
    assert writes(pair) == {"espocrm": 0, "advoware": 0}
    assert "update Advoware party" in result.plan_text and "vorname" in result.plan_text
    assert "Geheimname" not in result.plan_text


def test_result_round_trips_through_json(pair: FakePair) -> None:
    entity_id, _ = linked_pair(pair)
    result = run(pair, entity_id)
    assert EntityResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


# --- lock ----------------------------------------------------------------------------------


def test_lock_held_by_another_run_skips_without_any_call(pair: FakePair) -> None:
    entity_id, _ = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "X"})
    pair.espocrm.update_beteiligte(
        entity_id, {"syncStatus": "syncing", "syncLockedAt": "2026-02-08 10:05:00"}
    )
    pair.reset_calls()
    assert run(pair, entity_id).outcome == "skipped_locked"
    assert pair.total_calls() == 0


def test_stale_lock_is_taken_over(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})
    pair.espocrm.update_beteiligte(
        entity_id, {"syncStatus": "syncing", "syncLockedAt": "2026-02-08 09:50:00"}
    )
    assert run(pair, entity_id).status == "clean"  # now 10:10, lock 20 minutes old
    assert pair.advoware.party(betnr)["vorname"] == "Moritz"


def test_version_conflict_on_lock_skips_and_writes_nothing_else(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})
    listed = pair.espocrm.record(entity_id)
    pair.espocrm.edit_as_person(entity_id, {"anrede": "Frau"})  # someone else was faster
    pair.reset_calls()
    result = sync_entity(listed, pair.espocrm, pair.advoware, clock=pair.clock)
    assert result.outcome == "skipped_locked"
    assert writes(pair) == {"espocrm": 1, "advoware": 0}  # the refused lock write only
    assert pair.advoware.party(betnr)["vorname"] == "Max"


def test_exception_in_apply_releases_lock_schedules_retry_and_never_marks_clean(
    pair: FakePair,
) -> None:
    entity_id, betnr = linked_pair(
        pair, phoneNumberData=[{"phoneNumber": "030 1", "type": "Office"}]
    )
    pair.espocrm.edit_as_person(
        entity_id,
        {
            "vorname": "Moritz",
            "phoneNumberData": [
                {"phoneNumber": "030 1", "type": "Office"},
                {"phoneNumber": "030 2", "type": "Mobile"},
            ],
        },
    )
    pair.advoware.fail_on(
        "create_kommunikation",
        ServerError(
            "boom", status=503, request="POST /api/v1/advonet/Beteiligte/{betNr}/Kommunikationen"
        ),
    )
    result = run(pair, entity_id)
    stored = pair.espocrm.record(entity_id)
    assert result.outcome == "failed"
    assert stored["syncStatus"] == "failed" and stored["syncLockedAt"] is None
    assert stored["syncRetryCount"] == 1 and stored["syncNextRetry"] == "2026-02-08 10:11:00"
    assert (
        "ServerError" in stored["syncErrorMessage"] and "status 503" in stored["syncErrorMessage"]
    )
    assert "030" not in stored["syncErrorMessage"] and "Moritz" not in stored["syncErrorMessage"]
    pair.clock.advance(minutes=2)
    assert run(pair, entity_id).status == "clean"  # the retry finishes the job
    relevant = [k for k in pair.advoware.party(betnr)["kommunikation"] if k["tlf"]]
    assert sorted(k["tlf"] for k in relevant) == ["030 1", "030 2"]


# --- backoff and reset (seed #12) -----------------------------------------------------------


def test_full_backoff_ladder_then_auto_reset_after_24_hours(pair: FakePair) -> None:
    entity_id, _ = linked_pair(pair)
    pair.advoware.fail_on("get_beteiligte", ServerError("down", status=503), times=None)
    for minutes in (1, 5, 15, 60, 240):
        start = pair.clock()
        result = run(pair, entity_id)
        stored = pair.espocrm.record(entity_id)
        assert stored["syncNextRetry"] == (
            start.replace(microsecond=0) + _minutes(minutes)
        ).strftime("%Y-%m-%d %H:%M:%S")
        pair.clock.advance(minutes=minutes - 0.5)
        assert run(pair, entity_id).outcome == "skipped_backoff"
        pair.clock.advance(minutes=0.5)
    assert result.outcome == "permanently_failed"
    assert stored["syncStatus"] == "permanently_failed" and stored["syncRetryCount"] == 5
    assert run(pair, entity_id).outcome == "skipped_backoff"  # waits for the reset
    assert reset_due_permanently_failed(pair.espocrm, clock=pair.clock) == []
    pair.clock.advance(hours=24)
    assert reset_due_permanently_failed(pair.espocrm, clock=pair.clock) == [entity_id]
    stored = pair.espocrm.record(entity_id)
    assert (stored["syncStatus"], stored["syncRetryCount"]) == ("failed", 0)
    pair.advoware._failures.clear()
    assert run(pair, entity_id).status == "clean"


def test_force_ignores_backoff(pair: FakePair) -> None:
    entity_id, _ = linked_pair(pair)
    pair.advoware.fail_on("get_beteiligte", ServerError("down"))
    run(pair, entity_id)
    assert run(pair, entity_id).outcome == "skipped_backoff"
    assert run(pair, entity_id, force=True).status == "clean"


def test_bad_data_before_the_lock_fails_with_one_write_and_no_advoware_write(
    pair: FakePair,
) -> None:
    rec = pair.espocrm.create_as_person({"name": "N" * 81})
    result = run(pair, rec["id"])
    assert result.status == "failed"
    assert result.error == "name: 81 characters, Advoware allows 80"
    assert writes(pair) == {"espocrm": 1, "advoware": 0}


def _minutes(n: int):  # type: ignore[no-untyped-def]
    from datetime import timedelta

    return timedelta(minutes=n)


# --- validation (seed #13) ------------------------------------------------------------------


def _seed_104860(pair: FakePair, advoware: FakeAdvoware | None = None) -> str:
    pair.advoware.load({"betNr": 104860, "name": "22Test8 GmbH", "rechtsform": "GmbH"})
    rec = pair.espocrm.load({"name": "Max3 Mustermann", "betnr": 104860, "syncStatus": "dirty"})
    pair.clock.advance(minutes=1)
    pair.espocrm.edit_as_person(rec["id"], {"vorname": None})  # EspoCRM is newer
    return rec["id"]


def test_entity_104860_is_not_clean_while_names_differ(pair: FakePair) -> None:
    pair.advoware.read_only_fields = {"name", "rechtsform"}  # Advoware ignores the write
    entity_id = _seed_104860(pair)
    result = run(pair, entity_id)
    stored = pair.espocrm.record(entity_id)
    assert result.outcome == "validation_failed" and stored["syncStatus"] == "failed"
    assert stored["syncErrorMessage"] == (
        "Validation failed: name: Max3 Mustermann != 22Test8 GmbH; rechtsform: (empty) != GmbH"
    )
    assert stored["syncRetryCount"] == 1 and stored["syncNextRetry"] is not None


def test_validation_failure_logs_field_names_only(pair: FakePair, caplog) -> None:  # type: ignore[no-untyped-def]
    pair.advoware.read_only_fields = {"name"}
    entity_id = _seed_104860(pair)
    with caplog.at_level(logging.DEBUG):
        run(pair, entity_id)
    assert "name" in caplog.text
    assert "Mustermann" not in caplog.text and "22Test8" not in caplog.text


def test_clean_baseline_with_differing_data_is_not_kept_clean(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    # A broken older sync left the names different while the baselines say "unchanged";
    # both timestamps are equal, so seed #11 says no_change: nothing written, but not clean.
    pair.advoware.parties[betnr]["name"] = "22Test8 GmbH"
    result = run(pair, entity_id)
    stored = pair.espocrm.record(entity_id)
    assert result.outcome == "validation_failed" and stored["syncStatus"] == "failed"
    assert stored["syncErrorMessage"] == "Validation failed: name: Mustermann != 22Test8 GmbH"
    assert writes(pair) == {"espocrm": 1, "advoware": 0}


def test_clean_baseline_with_differing_data_is_healed_by_the_newer_side(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.advoware.parties[betnr].update(name="22Test8 GmbH", geaendertAm="2026-02-08T11:05:00")
    result = run(pair, entity_id)
    assert result.outcome == "advoware_newer"
    assert pair.espocrm.record(entity_id)["name"] == "22Test8 GmbH"
    assert pair.espocrm.record(entity_id)["syncStatus"] == "clean"


def test_validation_is_its_own_step_and_holds_the_lock_until_then(pair: FakePair) -> None:
    entity_id, _ = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})
    result = run(pair, entity_id, validate_inline=False)
    assert result.needs_validation and result.status == "syncing"
    assert pair.espocrm.record(entity_id)["syncStatus"] == "syncing"
    validated = validate_entity(entity_id, pair.espocrm, pair.advoware, clock=pair.clock)
    assert validated.outcome == "clean"
    assert pair.espocrm.record(entity_id)["syncLockedAt"] is None


def test_validation_leaves_entity_edited_meanwhile_for_the_next_run(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})
    written = run(pair, entity_id, validate_inline=False)
    assert written.needs_validation
    # The shipped formula (docs/espocrm/formula/CBeteiligte.json) marks the save dirty while
    # the lock is held; validation tells it from our own writes by token and versionNumber.
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz2"})
    assert pair.espocrm.record(entity_id)["syncStatus"] == "dirty"
    result = validate_entity(
        entity_id, pair.espocrm, pair.advoware, clock=pair.clock, written=written
    )
    assert result.outcome == "changed_during_sync"
    assert pair.espocrm.record(entity_id)["syncStatus"] == "dirty"
    pair.clock.advance(minutes=2)
    assert run(pair, entity_id).status == "clean"
    assert pair.advoware.party(betnr)["vorname"] == "Moritz2"


def test_our_own_espocrm_write_under_the_lock_is_no_edit_meanwhile(pair: FakePair) -> None:
    """The counterpart: the shipped formula marks our own write of a business field dirty
    too; validation must not take it for a person's edit."""
    entity_id, betnr = linked_pair(pair)
    pair.advoware.edit_as_person(betnr, {"vorname": "Moritz"})
    written = run(pair, entity_id, validate_inline=False)
    assert written.outcome == "advoware_newer" and written.needs_validation
    assert pair.espocrm.record(entity_id)["syncStatus"] == "dirty"  # the formula, our write
    result = validate_entity(
        entity_id, pair.espocrm, pair.advoware, clock=pair.clock, written=written
    )
    assert result.outcome == "clean"
    assert pair.espocrm.record(entity_id)["syncStatus"] == "clean"


# --- runs ----------------------------------------------------------------------------------


def test_select_candidates_takes_work_then_a_share_of_clean(pair: FakePair) -> None:
    clean_id, _ = linked_pair(pair)
    new = pair.espocrm.create_as_person({"name": "Neu"})
    waiting = pair.espocrm.load(
        {"name": "W", "syncStatus": "failed", "syncNextRetry": "2026-02-08 12:00:00"}
    )
    due = pair.espocrm.load(
        {"name": "D", "syncStatus": "failed", "syncNextRetry": "2026-02-08 10:00:00"}
    )
    stale = pair.espocrm.load(
        {"name": "S", "syncStatus": "syncing", "syncLockedAt": "2026-02-08 09:00:00"}
    )
    live = pair.espocrm.load(
        {"name": "L", "syncStatus": "syncing", "syncLockedAt": "2026-02-08 10:05:00"}
    )
    ids = [r["id"] for r in select_candidates(pair.espocrm, clock=pair.clock, limit=10)]
    assert set(ids) == {new["id"], due["id"], stale["id"], clean_id}
    assert waiting["id"] not in ids and live["id"] not in ids
    assert ids[-1] == clean_id  # clean re-checks come after the work


def test_sync_all_runs_each_candidate_and_goes_on_after_a_bad_entity(pair: FakePair) -> None:
    bad = pair.espocrm.create_as_person({"name": "N" * 90})
    good = pair.espocrm.create_as_person({"name": "Gut"})
    results = {r.entity_id: r for r in sync_all(pair.espocrm, pair.advoware, clock=pair.clock)}
    assert results[bad["id"]].status == "failed"
    assert results[good["id"]].status == "clean"


def test_seed_104860_conflict_end_to_end(pair: FakePair) -> None:
    """The seed's conflict trace through the whole engine: EspoCRM wins on the name, the three
    Var4 entries become empty slots, all overwritten values are in the note, "3 total changes",
    validation passes, and the next run changes nothing."""
    from include.beteiligte_sync import mapping
    from tests.kommunikation.komm_support import seed_104860

    entity_id, betnr = seed_104860(pair)
    baseline = mapping.business_hash(mapping.from_espocrm({"name": "Max Mustermann"}))
    pair.espocrm.edit_as_person(
        entity_id, {"syncedHash": baseline, "advowareRowId": "OLD-ROW", "syncStatus": "dirty"}
    )
    result = run(pair, entity_id)
    assert result.outcome == "conflict" and result.status == "clean"
    assert result.kommunikation_changes == 3
    party = pair.advoware.party(betnr)
    assert party["name"] == "Max3 Mustermann"
    assert [k["id"] for k in party["kommunikation"] if k["tlf"]] == [149340]
    (note,) = pair.espocrm.notes_for(entity_id)
    assert "name: '22Test8 GmbH' -> 'Max3 Mustermann'" in note
    assert "149342" in note and "23423" in note
    pair.clock.advance(minutes=15)
    pair.reset_calls()
    assert run(pair, entity_id).outcome == "no_change"
    assert writes(pair) == {"espocrm": 1, "advoware": 0}


def test_error_during_validation_releases_the_lock_with_backoff(pair: FakePair) -> None:
    entity_id, _ = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})
    # the sync's own GET passes, validation's re-read of Advoware fails
    pair.advoware.fail_on("get_beteiligte", ServerError("down", status=502), skip=1)
    result = run(pair, entity_id)
    stored = pair.espocrm.record(entity_id)
    assert result.outcome == "failed" and stored["syncStatus"] == "failed"
    assert stored["syncLockedAt"] is None and stored["syncRetryCount"] == 1


def test_a_long_unit_validates_what_it_wrote_before_its_locks_age(
    pair: FakePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = linked_pair(pair)
    second, _ = linked_pair(pair, name="Zweite")
    for entity_id in (first, second):
        pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})
    ticks = iter([0.0, 0.0, 400.0])  # the unit starts, entity 1, entity 2 six minutes later
    monkeypatch.setattr("include.beteiligte_sync.runs.time.monotonic", lambda: next(ticks))

    results = sync_unit([first, second], pair.espocrm, pair.advoware, clock=pair.clock)

    # a third of the 15-minute TTL has passed: the first write is validated before the second
    assert [(r.status, r.needs_validation) for r in results] == [("clean", False)] * 2
    assert [pair.espocrm.record(i)["syncStatus"] for i in (first, second)] == ["clean"] * 2


def test_a_short_unit_leaves_validation_to_its_own_step(pair: FakePair) -> None:
    entity_id, _ = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})

    (result,) = sync_unit([entity_id], pair.espocrm, pair.advoware, clock=pair.clock)

    assert result.needs_validation and result.lock_token
    assert pair.espocrm.record(entity_id)["syncLockToken"] == result.lock_token
    assert validate_written(result, pair.espocrm, pair.advoware, clock=pair.clock).status == "clean"


def test_a_conflict_is_noted_once_also_when_the_write_after_the_note_fails(
    pair: FakePair,
) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.advoware.edit_as_person(betnr, {"vorname": "Advo-Max"})
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Espo-Max"})
    pair.advoware.fail_on("update_beteiligte", ServerError("down"))  # after the Note

    assert run(pair, entity_id).status == "failed"
    assert len(pair.espocrm.notes_for(entity_id)) == 1
    pair.clock.advance(minutes=2)
    again = run(pair, entity_id)

    assert (again.outcome, again.status) == ("conflict", "clean")
    assert len(pair.espocrm.notes_for(entity_id)) == 1  # the same conflict, noted once
    assert pair.advoware.party(betnr)["vorname"] == "Espo-Max"


def test_our_write_whose_validation_was_lost_is_not_a_change_next_time(pair: FakePair) -> None:
    entity_id, betnr = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"vorname": "Moritz"})
    result = run(pair, entity_id, validate_inline=False)  # the worker dies before validating
    assert result.needs_validation
    pair.advoware.edit_as_person(betnr, {"titel": "Dr."})  # a secretary, after our write
    pair.clock.advance(minutes=16)  # the lock is stale

    again = run(pair, entity_id)

    # Our vorname is no "Advoware change"; only the secretary's titel is: no conflict, no Note.
    assert (again.outcome, again.status) == ("advoware_newer", "clean")
    stored = pair.espocrm.record(entity_id)
    assert (stored["vorname"], stored["titel"]) == ("Moritz", "Dr.")
    assert pair.espocrm.notes_for(entity_id) == []


def test_a_field_advoware_ignores_fails_validation_without_notes_or_conflicts(
    pair: FakePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    entity_id, _ = linked_pair(pair)
    pair.espocrm.edit_as_person(entity_id, {"titel": "Prof."})
    real_update = pair.advoware.update_beteiligte

    def ignores_titel(number: int, data: dict[str, object]) -> dict[str, object]:
        return real_update(number, {k: v for k, v in data.items() if k != "titel"})

    monkeypatch.setattr(pair.advoware, "update_beteiligte", ignores_titel)
    outcomes = []
    for _ in range(3):
        result = run(pair, entity_id, force=True)
        outcomes.append((result.outcome, result.status))
        pair.clock.advance(minutes=20)

    assert outcomes[0] == ("validation_failed", "failed"), outcomes
    assert all(outcome != "conflict" for outcome, _ in outcomes), outcomes
    assert pair.espocrm.notes_for(entity_id) == []
    assert pair.espocrm.record(entity_id)["titel"] == "Prof."  # the person's value stays


def test_a_damaged_marker_is_mended_and_said_on_the_party_and_in_the_report(
    pair: FakePair,
) -> None:
    entity_id, betnr = linked_pair(
        pair, phoneNumberData=[{"phoneNumber": "+49 30 1234", "type": "Office"}]
    )
    (entry,) = pair.advoware.party(betnr)["kommunikation"]
    pair.advoware.edit_kommunikation_as_person(betnr, entry["id"], {"bemerkung": "[ESPOCRM:Zz"})
    pair.clock.advance(minutes=30)

    (result,) = sync_all(pair.espocrm, pair.advoware, clock=pair.clock, entity_ids=[entity_id])

    stored = pair.espocrm.record(entity_id)
    assert stored["syncStatus"] == "clean"
    assert (
        stored["syncErrorMessage"].startswith("Warning: ")
        and "re-marked" in stored["syncErrorMessage"]
    )
    report = build_report([result.to_dict()])
    assert [n for n in report.notices if entity_id in n and "re-marked" in n]
    assert not report.warnings  # mended, not an alert
    assert "+49" not in report.render()


def test_an_entry_deleted_in_advoware_is_removed_in_espocrm_not_created_again(
    pair: FakePair,
) -> None:
    phones = [
        {"phoneNumber": "+49 30 1234", "type": "Office"},
        {"phoneNumber": "+49 30 5678", "type": "Office"},
    ]
    entity_id, betnr = linked_pair(pair, phoneNumberData=phones)
    party = pair.advoware.parties[betnr]
    party["kommunikation"] = [k for k in party["kommunikation"] if k["tlf"] != "+49 30 5678"]
    pair.advoware.edit_as_person(betnr, {"titel": "Dr."})  # a person's save in Advoware
    pair.clock.advance(minutes=30)

    (result,) = sync_all(pair.espocrm, pair.advoware, clock=pair.clock, entity_ids=[entity_id])

    assert result.status == "clean"
    phones_now = [p["phoneNumber"] for p in pair.espocrm.record(entity_id)["phoneNumberData"]]
    assert phones_now == ["+49 30 1234"]
    assert [k["tlf"] for k in pair.advoware.party(betnr)["kommunikation"] if k["tlf"]] == [
        "+49 30 1234"
    ]


def _first_sync_pair(pair: FakePair) -> tuple[str, int]:
    """A party linked by hand in both systems, never synced: Advoware's name is newer."""
    party = pair.advoware.load({"name": "Neuer Name GmbH", "rechtsform": "GmbH"})
    pair.clock.advance(minutes=5)
    record = pair.espocrm.create_as_person(
        {"name": "Alter Name GmbH", "rechtsform": "GmbH", "betnr": party["betNr"]}
    )
    # EspoCRM's record is older than Advoware's change (seed #11 decides by the timestamps)
    pair.espocrm.records[record["id"]]["modifiedAt"] = "2026-02-08 08:00:00"
    return record["id"], int(party["betNr"])


def test_a_first_sync_keeps_its_decision_across_a_failed_attempt(pair: FakePair) -> None:
    entity_id, betnr = _first_sync_pair(pair)
    # the EspoCRM write of Advoware's newer name fails once; the failure write moves modifiedAt
    pair.espocrm.fail_on("update_beteiligte", ServerError("down"), skip=1)

    first = run(pair, entity_id)
    assert first.status == "failed"
    pair.clock.advance(minutes=2)
    again = run(pair, entity_id)

    assert (again.outcome, again.status) == ("advoware_newer", "clean")
    assert pair.espocrm.record(entity_id)["name"] == "Neuer Name GmbH"
    assert pair.advoware.party(betnr)["name"] == "Neuer Name GmbH"


def test_what_a_first_sync_overwrites_in_advoware_is_noted(pair: FakePair) -> None:
    entity_id, betnr = _first_sync_pair(pair)
    pair.espocrm.records[entity_id]["modifiedAt"] = "2026-02-08 23:00:00"  # EspoCRM is newer

    result = run(pair, entity_id)

    assert (result.outcome, result.status) == ("espocrm_newer", "clean")
    assert pair.advoware.party(betnr)["name"] == "Alter Name GmbH"
    (note,) = pair.espocrm.notes_for(entity_id)
    assert "name: 'Neuer Name GmbH' -> 'Alter Name GmbH'" in note
