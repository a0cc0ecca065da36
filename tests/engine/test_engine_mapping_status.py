"""Mapping table, status machine and the seed #11 initial-sync rule (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from include.beteiligte_sync import mapping, status
from include.beteiligte_sync.compare import initial_outcome
from include.beteiligte_sync.errors import EntityError
from include.beteiligte_sync.status import Outcome, TransitionError

NOW = datetime(2026, 2, 8, 10, 0, tzinfo=UTC)


def test_mapping_trims_treats_empty_as_null_and_converts_dates() -> None:
    espo = {"name": "  Muster GmbH ", "vorname": "", "rechtsform": "GmbH", "geburtsdatum": None}
    advo = {"name": "Muster GmbH", "vorname": None, "rechtsform": " GmbH", "geburtsdatum": None}
    assert mapping.from_espocrm(espo) == mapping.from_advoware(advo)
    person = mapping.from_espocrm({"name": "Muster", "geburtsdatum": "1980-05-01"})
    assert mapping.to_advoware(person)["geburtsdatum"] == "1980-05-01T00:00:00"
    back = mapping.from_advoware({"name": "Muster", "geburtsdatum": "1980-05-01T00:00:00"})
    assert back == person
    assert mapping.to_espocrm(back)["geburtsdatum"] == "1980-05-01"


def test_mapping_renames_handelsregister_field() -> None:
    canon = mapping.from_espocrm({"name": "X AG", "handelsregisterNummer": "HRB 1"})
    assert mapping.to_advoware(canon)["handelsRegisterNummer"] == "HRB 1"
    assert "handelsregisterNummer" not in mapping.to_advoware(canon)


def test_party_kind_is_company_when_rechtsform_set() -> None:
    assert mapping.party_kind(mapping.from_espocrm({"name": "X", "rechtsform": "AG"})) == "company"
    assert mapping.party_kind(mapping.from_espocrm({"name": "X", "rechtsform": " "})) == "person"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"name": ["a list"]}, "name: EspoCRM value is not text"),
        (
            {"name": "X", "geburtsdatum": "1980-13-01"},
            "geburtsdatum: EspoCRM value is not a valid date",
        ),
        (
            {"name": "X", "geburtsdatum": "yesterday"},
            "geburtsdatum: EspoCRM value is not a valid date",
        ),
        ({"name": 42}, "name: EspoCRM value is not text"),
    ],
)
def test_unreadable_values_are_entity_errors(record: dict, expected: str) -> None:
    with pytest.raises(EntityError, match=expected):
        mapping.from_espocrm(record)


def test_too_long_value_is_an_entity_error_without_the_value_and_never_truncated() -> None:
    canon = mapping.from_espocrm({"name": "N" * 81, "vorname": "Max"})
    with pytest.raises(EntityError) as info:
        mapping.check_fits(canon, "Advoware")
    assert "name: 81 characters, Advoware allows 80" in str(info.value)
    assert "NNNN" not in str(info.value)
    assert len(mapping.to_advoware(canon)["name"]) == 81


def test_business_hash_ignores_trimming_and_empty_vs_null_but_not_values() -> None:
    a = mapping.from_espocrm({"name": "Muster ", "vorname": ""})
    b = mapping.from_espocrm({"name": "Muster", "vorname": None})
    c = mapping.from_espocrm({"name": "Muster", "vorname": "Max"})
    assert mapping.business_hash(a) == mapping.business_hash(b) != mapping.business_hash(c)


@pytest.mark.parametrize(
    ("espo", "advo", "expected"),
    [
        (NOW, NOW - timedelta(minutes=1), Outcome.ESPOCRM_NEWER),
        (NOW - timedelta(minutes=1), NOW, Outcome.ADVOWARE_NEWER),
        (NOW, NOW, Outcome.NO_CHANGE),
        (None, NOW, Outcome.ADVOWARE_NEWER),
        (NOW, None, Outcome.ESPOCRM_NEWER),
        (None, None, Outcome.ESPOCRM_NEWER),
    ],
)
def test_initial_sync_follows_seed_11(espo, advo, expected) -> None:  # type: ignore[no-untyped-def]
    assert initial_outcome(espo, advo) is expected


def test_backoff_ladder_and_permanent_failure() -> None:
    record: dict = {"syncStatus": "syncing", "syncRetryCount": 0}
    waits = []
    for _ in range(5):
        fields = status.failure(record, NOW, "boom")
        waits.append(fields["syncNextRetry"])
        record = {**record, **fields}
    assert waits == [
        "2026-02-08 10:01:00",
        "2026-02-08 10:05:00",
        "2026-02-08 10:15:00",
        "2026-02-08 11:00:00",
        "2026-02-08 14:00:00",
    ]
    assert record["syncStatus"] == "permanently_failed"
    assert record["syncAutoResetAt"] == "2026-02-09 10:00:00"


def test_success_releases_lock_and_clears_counters() -> None:
    fields = status.success(
        {"syncStatus": "syncing", "syncRetryCount": 3, "kommunikationHash": "h"},
        NOW,
        synced_hash="s",
        advoware_row_id="r",
        kommunikation_hash="h",
    )
    assert fields["syncStatus"] == "clean" and fields["syncLockedAt"] is None
    assert fields["syncRetryCount"] == 0 and fields["syncErrorMessage"] is None
    assert "kommunikationHash" not in fields  # unchanged hash is not rewritten


def test_status_machine_refuses_invalid_transitions() -> None:
    with pytest.raises(TransitionError):
        status.reset({"syncStatus": "clean"})
    with pytest.raises(TransitionError):
        status.link({"syncStatus": "clean", "betnr": 100001}, 100002)


def test_lock_is_stale_after_ttl() -> None:
    locked = {"syncStatus": "syncing", "syncLockedAt": "2026-02-08 09:50:00"}
    assert status.is_locked(locked, NOW)
    assert not status.is_locked(locked, NOW + timedelta(minutes=6))
    assert not status.is_locked({"syncStatus": "syncing"}, NOW)  # no lock time: broken, stale


def test_a_fifth_failure_of_a_party_marked_deleted_is_permanent_not_a_crash() -> None:
    record = {"syncStatus": "deleted_in_advoware", "syncRetryCount": 4}
    fields = status.failure(record, NOW, "API error: ServerError")
    assert fields["syncStatus"] == "permanently_failed" and fields["syncRetryCount"] == 5


def test_marking_deleted_clears_the_retry_count() -> None:
    fields = status.deleted({"syncStatus": "failed", "syncRetryCount": 3}, NOW, 100001)
    assert fields["syncRetryCount"] == 0 and fields["syncAutoResetAt"] is None


@pytest.mark.parametrize("raw", ["viele", None, True, -3, "2.5", {"n": 1}])
def test_an_unreadable_retry_count_counts_as_zero(raw: object) -> None:
    fields = status.failure({"syncStatus": "dirty", "syncRetryCount": raw}, NOW, "x")
    assert fields["syncStatus"] == "failed" and fields["syncRetryCount"] == 1


def test_the_lock_token_check_falls_back_to_the_status_where_espocrm_lacks_the_field() -> None:
    assert status.holds_lock({"syncStatus": "syncing"}, "t1")  # field not defined: no key
    assert not status.holds_lock({"syncStatus": "clean"}, "t1")
    assert not status.holds_lock({"syncStatus": "syncing", "syncLockToken": "t2"}, "t1")
    assert status.holds_lock({"syncStatus": "dirty", "syncLockToken": "t1"}, "t1")


def test_a_baseline_round_trip_keeps_only_the_pending_fields_it_names() -> None:
    from include.beteiligte_sync import baseline

    values = {name: f"v-{name}" for name in mapping.FIELD_NAMES}
    text = baseline.render(values, {"vorname": "Moritz"}, before={"vorname": "Max"})
    read = baseline.read({"syncBaseline": text})
    assert read.values == values and read.pending == {"vorname": "Moritz"}
    assert read.before == {"vorname": "Max"}
    advoware = {**values, "vorname": "Moritz", "name": "changed by a person"}
    assert baseline.effective(read, advoware, landed=True) == {**values, "vorname": "Moritz"}
