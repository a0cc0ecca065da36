"""Shared helpers of the engine tests: build linked pairs on the fakes and run the engine."""

from __future__ import annotations

from typing import Any

from include.beteiligte_sync.sync import EntityResult, sync_entity
from tests.fakes import FakePair


def run(pair: FakePair, entity_id: str, **kw: Any) -> EntityResult:
    """One sync of ``entity_id`` as a scheduled run would do it (record from the list)."""
    kw.setdefault("validate_inline", True)
    return sync_entity(
        list_record(pair, entity_id), pair.espocrm, pair.advoware, clock=pair.clock, **kw
    )


def list_record(pair: FakePair, entity_id: str) -> dict[str, Any]:
    """The record as EspoCRM's list answer carries it (no email and phone arrays), uncounted."""
    record = dict(pair.espocrm.record(entity_id))
    record.pop("emailAddressData", None)
    record.pop("phoneNumberData", None)
    return record


def linked_pair(pair: FakePair, **espo_fields: Any) -> tuple[str, int]:
    """A party created in EspoCRM and synced once (clean, with baselines). Calls reset."""
    fields = {"name": "Mustermann", "vorname": "Max", "anrede": "Herr"} | espo_fields
    record = pair.espocrm.create_as_person(fields)
    result = run(pair, record["id"])
    assert result.status == "clean", result
    pair.clock.advance(minutes=10)
    pair.reset_calls()
    betnr = pair.espocrm.record(record["id"])["betnr"]
    return record["id"], betnr


def writes(pair: FakePair) -> dict[str, int]:
    """Counts of write calls per side (everything but reads)."""
    reads = {"get_beteiligte", "iter_beteiligte", "find_beteiligte"}
    return {
        "espocrm": sum(n for m, n in pair.espocrm.calls.items() if m not in reads),
        "advoware": sum(n for m, n in pair.advoware.calls.items() if m not in reads),
    }
