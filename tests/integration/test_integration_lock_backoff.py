"""Lock, failures mid-apply, the backoff ladder and the auto-reset over HTTP.

The sandbox sets ``modifiedAt`` with the real time; the engine's injected clock decides locks,
backoff and resets, and the tests move it.
"""

from __future__ import annotations

from datetime import timedelta

from include.beteiligte_sync.sync import reset_due_permanently_failed, sync_all, sync_entity
from include.beteiligte_sync.timefmt import format_espocrm
from tests.integration.http_support import ADVO_PARTY, ESPO_RECORD, Http

KOMM_POST = "/api/v1/advonet/Beteiligte/{betNr}/Kommunikationen"


def _at(http: Http, **delta: float) -> str:
    """EspoCRM datetime text of the engine clock moved by ``delta``."""
    return format_espocrm(http.clock() + timedelta(**delta))


# --- lock -----------------------------------------------------------------------------------


def test_record_changed_between_read_and_lock_is_skipped_untouched(http: Http) -> None:
    entity_id, betnr = http.linked()
    http.edit_espocrm(entity_id, vorname="Moritz")
    candidate = http.record(entity_id)  # what the candidate list delivered
    http.edit_espocrm(entity_id, titel="Dr.")  # a person edits before the lock is taken
    http.reset_counters()
    row_id = http.party(betnr)["rowId"]

    result = sync_entity(
        candidate, http.espocrm, http.advoware, clock=http.clock, validate_inline=True
    )

    assert result.outcome == "skipped_locked"
    assert http.sb.espocrm_admin.counters()["calls"][f"PUT {ESPO_RECORD}"] == {"409": 1}
    assert http.calls().writes("advoware") == 0 and http.party(betnr)["rowId"] == row_id
    stored = http.record(entity_id)
    assert (stored["syncStatus"], stored["titel"], stored["syncLockedAt"]) == ("dirty", "Dr.", None)
    assert http.run(entity_id).status == "clean"  # the next run takes both edits
    assert (http.party(betnr)["vorname"], http.party(betnr)["titel"]) == ("Moritz", "Dr.")


def test_live_lock_of_another_run_is_skipped_without_any_call(http: Http) -> None:
    entity_id, _ = http.linked()
    http.edit_espocrm(entity_id, syncStatus="syncing", syncLockedAt=_at(http, minutes=-5))
    http.reset_counters()

    assert http.run(entity_id).outcome == "skipped_locked"
    assert http.calls().business == 0
    assert http.record(entity_id)["syncStatus"] == "syncing"


def test_stale_lock_is_taken_over_and_the_change_synced(http: Http) -> None:
    entity_id, betnr = http.linked()
    http.edit_espocrm(entity_id, vorname="Moritz")  # then a run died holding the lock:
    http.edit_espocrm(entity_id, syncStatus="syncing", syncLockedAt=_at(http, minutes=-16))

    result = http.run(entity_id)

    stored = http.record(entity_id)
    assert result.outcome == "espocrm_newer" and stored["syncStatus"] == "clean"
    assert stored["syncLockedAt"] is None and http.party(betnr)["vorname"] == "Moritz"


def test_503_burst_in_the_middle_of_apply_releases_the_lock_and_next_run_heals(
    http: Http,
) -> None:
    entity_id, betnr = http.linked()
    http.edit_espocrm(
        entity_id,
        vorname="Moritz",
        phoneNumberData=[{"phoneNumber": "+49 30 1231234", "type": "Office", "primary": True}],
    )
    # The party update lands; every attempt at the Kommunikation after it gets a 503.
    http.sb.advoware_admin.set_faults(
        [{"method": "POST", "path": KOMM_POST, "kind": "error", "status": 503, "count": 5}]
    )

    failed = http.run(entity_id)

    stored = http.record(entity_id)
    assert failed.outcome == "failed" and stored["syncStatus"] == "failed"
    assert http.party(betnr)["vorname"] == "Moritz"  # half-written ...
    assert http.party(betnr)["kommunikation"] == []
    assert stored["syncLockedAt"] is None  # ... lock released, not clean, backoff set
    assert stored["syncRetryCount"] == 1 and stored["syncNextRetry"] == _at(http, minutes=1)
    assert stored["syncErrorMessage"] == (
        f"API error: ServerError, POST {KOMM_POST}, status 503, reason injectedFault"
    )
    assert http.sb.advoware_admin.calls(f"POST {KOMM_POST}") == 5  # the hook's retries

    assert http.run(entity_id).outcome == "skipped_backoff"
    http.clock.advance(minutes=1, seconds=1)
    healed = http.run(entity_id)

    stored, party = http.record(entity_id), http.party(betnr)
    assert healed.status == "clean" and stored["syncRetryCount"] == 0
    assert [k["tlf"] for k in party["kommunikation"]] == ["+49 30 1231234"]
    assert stored["advowareRowId"] == party["rowId"] and stored["syncErrorMessage"] is None


# --- backoff ladder, permanently_failed, auto-reset ------------------------------------------


def test_backoff_ladder_to_permanently_failed_and_auto_reset_after_24_hours(http: Http) -> None:
    entity_id, _ = http.linked()
    http.edit_espocrm(entity_id, vorname="Moritz")
    http.sb.advoware_admin.set_faults(
        [{"method": "GET", "path": ADVO_PARTY, "kind": "error", "status": 500}]
    )

    for count, minutes in enumerate((1, 5, 15, 60, 240), start=1):
        (result,) = sync_all(http.espocrm, http.advoware, clock=http.clock)
        stored = http.record(entity_id)
        assert stored["syncRetryCount"] == count
        assert stored["syncNextRetry"] == _at(http, minutes=minutes)
        assert stored["syncLockedAt"] is None
        if count < 5:
            assert result.outcome == "failed" and stored["syncStatus"] == "failed"
            http.clock.advance(minutes=minutes - 0.5)
            assert sync_all(http.espocrm, http.advoware, clock=http.clock) == []  # not due
            http.clock.advance(minutes=0.5, seconds=1)

    assert result.outcome == "permanently_failed"
    assert stored["syncStatus"] == "permanently_failed"
    assert stored["syncAutoResetAt"] == _at(http, hours=24)

    http.clock.advance(hours=23, minutes=59)
    http.reset_counters()
    assert reset_due_permanently_failed(http.espocrm, clock=http.clock) == []
    assert sync_all(http.espocrm, http.advoware, clock=http.clock) == []
    assert http.calls().writes("espocrm") == 0

    http.sb.advoware_admin.clear_faults()
    http.clock.advance(minutes=1, seconds=1)
    assert reset_due_permanently_failed(http.espocrm, clock=http.clock) == [entity_id]
    stored = http.record(entity_id)
    assert (stored["syncStatus"], stored["syncRetryCount"]) == ("failed", 0)

    (result,) = sync_all(http.espocrm, http.advoware, clock=http.clock)
    stored = http.record(entity_id)
    assert result.outcome == "espocrm_newer" and stored["syncStatus"] == "clean"
    assert stored["syncAutoResetAt"] is None and stored["syncNextRetry"] is None


def test_lost_validation_is_healed_after_the_stale_lock_without_a_false_conflict(
    http: Http,
) -> None:
    entity_id, betnr = http.linked()
    http.edit_espocrm(entity_id, vorname="Moritz")
    written = http.run(entity_id, validate_inline=False)  # ... and the validate task is lost
    assert written.needs_validation and http.record(entity_id)["syncStatus"] == "syncing"

    http.clock.advance(minutes=14)
    assert sync_all(http.espocrm, http.advoware, clock=http.clock) == []  # lock still live
    http.clock.advance(minutes=2)
    http.reset_counters()
    (result,) = sync_all(http.espocrm, http.advoware, clock=http.clock)

    stored = http.record(entity_id)
    # Both sides moved away from the old baseline, to the same data: not a conflict.
    assert result.outcome == "no_change" and stored["syncStatus"] == "clean"
    assert stored["advowareRowId"] == http.party(betnr)["rowId"]
    assert http.notes(entity_id) == [] and http.calls().writes("advoware") == 0
