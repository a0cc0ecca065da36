"""Issue 15, over the in-memory fakes, with the kommKz-0 defect on and off: unknown kinds, beA
and EPost, entries deleted in Advoware's own program, damaged markers."""

from __future__ import annotations

from typing import Any

import pytest

from include.beteiligte_sync.kommunikation import (
    SYNCED_VALUES_FIELD,
    compare_kommunikation,
    find_empty_slot,
    kommunikation_hash,
    synced_values_baseline,
)
from include.beteiligte_sync.markers import parse_bemerkung, render_slot_marker
from include.beteiligte_sync.ops import CreateKommunikation, MakeEmptySlot, UpdateKommunikation
from tests.fakes import FakePair
from tests.kommunikation.komm_support import plan_now, sync_once, synced

BETNR = 8015
SAFE_ID = "safe-sp1-1617181920-123456789"
EPOST = "max.mustermann@epost.de"
FAX = "030 2345678"
DEFECT = pytest.mark.parametrize("defect", [True, False], ids=["kommkz0", "kommkz_ok"])


def make_pair(
    komm: list[dict[str, Any]],
    *,
    defect: bool,
    emails: tuple[str, ...] = (),
    phones: tuple[tuple[str, str], ...] = (),
    **record: Any,
) -> tuple[FakePair, str]:
    pair = FakePair()
    pair.advoware.kommkz_zero_defect = defect
    pair.advoware.load({"betNr": BETNR, "name": "Muster", "kommunikation": komm})
    entity = pair.espocrm.load(
        {
            "name": "Muster",
            "betnr": BETNR,
            "emailAddressData": [{"emailAddress": e} for e in emails],
            "phoneNumberData": [{"phoneNumber": p, "type": t} for p, t in phones],
            **record,
        }
    )
    return pair, entity["id"]


def entries(pair: FakePair) -> dict[int, dict[str, Any]]:
    return {k["id"]: k for k in pair.advoware.party(BETNR)["kommunikation"]}


def phone_types(pair: FakePair, entity_id: str) -> dict[str, str]:
    return {p["phoneNumber"]: p["type"] for p in pair.espocrm.record(entity_id)["phoneNumberData"]}


def espo_values(pair: FakePair, entity_id: str) -> set[str]:
    record = pair.espocrm.record(entity_id)
    return {e["emailAddress"] for e in record["emailAddressData"]} | {
        p["phoneNumber"] for p in record["phoneNumberData"]
    }


def settled(pair: FakePair, entity_id: str) -> bool:
    espo, advo = pair.espocrm.record(entity_id), pair.advoware.party(BETNR)
    return compare_kommunikation(espo, advo) == [] and plan_now(pair, entity_id, BETNR).is_empty


def delete_entry(pair: FakePair, komm_id: int) -> None:
    """A person deletes the entry in Advoware's own program (the API cannot)."""
    pair.advoware.server.admin_edit({"betNr": BETNR, "delete_kommunikation": komm_id})


def remember_synced(pair: FakePair, entity_id: str) -> None:
    """What the engine stores after a checked sync (the synced-values baseline)."""
    espo, advo = pair.espocrm.record(entity_id), pair.advoware.party(BETNR)
    pair.espocrm.records[entity_id][SYNCED_VALUES_FIELD] = synced_values_baseline(espo, advo)


# --- case 1: kinds ------------------------------------------------------------------------------


@DEFECT
def test_fax_typed_in_advoware_arrives_as_fax_or_other_never_office(defect: bool) -> None:
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 2, "tlf": FAX, "bemerkung": ""}], defect=defect
    )
    sync_once(pair, entity_id, BETNR)
    assert phone_types(pair, entity_id) == {FAX: "Other" if defect else "Fax"}
    marker = parse_bemerkung(entries(pair)[1]["bemerkung"])
    assert marker.is_value and marker.kommkz == (None if defect else 2)  # no guess stored
    assert settled(pair, entity_id)


@DEFECT
def test_german_mobile_number_of_unknown_kind_arrives_as_mobile(defect: bool) -> None:
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 3, "tlf": "+49 171 2345678", "bemerkung": ""}], defect=defect
    )
    sync_once(pair, entity_id, BETNR)
    assert phone_types(pair, entity_id) == {"+49 171 2345678": "Mobile"}
    assert settled(pair, entity_id)


def test_private_phone_of_unknown_kind_arrives_as_other() -> None:
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 6, "tlf": "089 1234", "bemerkung": ""}], defect=True
    )
    sync_once(pair, entity_id, BETNR)
    assert phone_types(pair, entity_id) == {"089 1234": "Other"}


@DEFECT
@pytest.mark.parametrize("espocrm_wins", [False, True])
@pytest.mark.parametrize("direction", ["both", "to_espocrm", "to_advoware"])
def test_bea_safe_id_epost_and_web_address_are_never_touched(
    defect: bool, espocrm_wins: bool, direction: str
) -> None:
    komm = [
        {"id": 1, "kommKz": 12, "tlf": SAFE_ID, "bemerkung": ""},
        {"id": 2, "kommKz": 11, "tlf": EPOST, "bemerkung": "Kanzlei-EPost"},
        {"id": 3, "kommKz": 5, "tlf": "https://kanzlei.example", "bemerkung": ""},
        {"id": 4, "kommKz": 12, "tlf": "DE.BEA.1234abcd.5678", "bemerkung": ""},
    ]
    pair, entity_id = make_pair(
        [dict(k) for k in komm], defect=defect, phones=(("030 1", "Office"),)
    )
    before = pair.advoware.get_beteiligte(BETNR)["kommunikation"]
    plan = sync_once(pair, entity_id, BETNR, direction=direction, espocrm_wins=espocrm_wins)
    assert not {getattr(op, "komm_id", None) for op in plan.advoware_ops} & {1, 2, 3, 4}
    for original in komm:
        stored = entries(pair)[original["id"]]
        assert (stored["tlf"], stored["bemerkung"]) == (original["tlf"], original["bemerkung"])
    assert espo_values(pair, entity_id) == {"030 1"}  # never synced into EspoCRM
    assert kommunikation_hash(before) == kommunikation_hash(before[4:])  # not in the hash


@DEFECT
def test_removing_the_espocrm_copy_of_a_bea_id_never_empties_it(defect: bool) -> None:
    # The old system had synced the SAFE-ID into EspoCRM as a phone (kind guessed, marker ":1").
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 12, "tlf": SAFE_ID, "bemerkung": ""}],
        defect=defect,
        phones=((SAFE_ID, "Office"),),
    )
    pair.espocrm.edit_as_person(entity_id, {"phoneNumberData": []})
    plan = sync_once(pair, entity_id, BETNR)
    assert not any(isinstance(op, MakeEmptySlot) for op in plan.advoware_ops)
    assert entries(pair)[1]["tlf"] == SAFE_ID


@DEFECT
def test_unknown_kind_slot_is_not_reused_for_another_kind(defect: bool) -> None:
    # Conflict: an unmarked fax typed in Advoware becomes an empty slot.
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 2, "tlf": FAX, "bemerkung": ""}], defect=defect
    )
    sync_once(pair, entity_id, BETNR, espocrm_wins=True)
    slot = parse_bemerkung(entries(pair)[1]["bemerkung"])
    assert entries(pair)[1]["tlf"] == "" and slot.is_slot
    assert slot.kommkz == (None if defect else 2)  # "?" under the defect: no guessed TelGesch
    # A new office phone in EspoCRM: never written into the fax's slot.
    pair.espocrm.edit_as_person(
        entity_id, {"phoneNumberData": [{"phoneNumber": "030 1", "type": "Office"}]}
    )
    plan = sync_once(pair, entity_id, BETNR)
    assert [type(op) for op in plan.advoware_ops] == [CreateKommunikation]
    assert plan.advoware_ops[0].kommkz == 1
    assert entries(pair)[1]["tlf"] == ""
    assert settled(pair, entity_id)


def test_a_slot_is_reused_only_for_its_own_known_kind() -> None:
    komm = [
        {"id": 1, "kommKz": 0, "tlf": "", "bemerkung": render_slot_marker(None)},
        {"id": 2, "kommKz": 0, "tlf": "", "bemerkung": render_slot_marker(2)},
        {"id": 3, "kommKz": 12, "tlf": "", "bemerkung": render_slot_marker(1)},  # a beA entry
    ]
    assert find_empty_slot(1, komm) is None
    assert find_empty_slot(10, komm) is None
    assert find_empty_slot(2, komm) == komm[1]


# --- case 2: entry deleted in Advoware's own program ------------------------------------------


@DEFECT
def test_entry_deleted_in_advoware_is_removed_in_espocrm_not_created_again(defect: bool) -> None:
    pair, entity_id = make_pair(
        [synced(1, 1, "030 1"), synced(2, 4, "a@example.org")],
        defect=defect,
        emails=("a@example.org",),
        phones=(("030 1", "Office"),),
    )
    remember_synced(pair, entity_id)
    delete_entry(pair, 1)
    plan = sync_once(pair, entity_id, BETNR)
    assert plan.advoware_ops == []  # nothing created again
    assert plan.changes == 1
    assert espo_values(pair, entity_id) == {"a@example.org"}
    assert settled(pair, entity_id)


@DEFECT
def test_value_new_in_espocrm_after_the_last_sync_is_still_created(defect: bool) -> None:
    pair, entity_id = make_pair(
        [synced(1, 1, "030 1")], defect=defect, phones=(("030 1", "Office"),)
    )
    remember_synced(pair, entity_id)
    pair.espocrm.edit_as_person(
        entity_id,
        {
            "phoneNumberData": [
                {"phoneNumber": "030 1", "type": "Office"},
                {"phoneNumber": "030 9", "type": "Office"},
            ]
        },
    )
    plan = sync_once(pair, entity_id, BETNR)
    assert [type(op) for op in plan.advoware_ops] == [CreateKommunikation]  # Var1
    assert settled(pair, entity_id)


def test_deleted_entry_on_conflict_or_to_advoware_is_restored_from_espocrm() -> None:
    for kw in ({"espocrm_wins": True}, {"direction": "to_advoware"}):
        pair, entity_id = make_pair(
            [synced(1, 1, "030 1")], defect=True, phones=(("030 1", "Office"),)
        )
        remember_synced(pair, entity_id)
        delete_entry(pair, 1)
        plan = sync_once(pair, entity_id, BETNR, **kw)
        assert [type(op) for op in plan.advoware_ops] == [CreateKommunikation], kw


def test_without_a_synced_values_baseline_a_missing_value_counts_as_new() -> None:
    pair, entity_id = make_pair([], defect=True, phones=(("030 1", "Office"),))
    plan = plan_now(pair, entity_id, BETNR)
    assert [type(op) for op in plan.advoware_ops] == [CreateKommunikation]


def test_synced_values_baseline_holds_no_values_and_only_values_on_both_sides() -> None:
    pair, entity_id = make_pair(
        [synced(1, 1, "030 1"), {"id": 2, "kommKz": 1, "tlf": "030 7", "bemerkung": ""}],
        defect=True,
        phones=(("030 1", "Office"), ("030 2", "Office")),
    )
    baseline = synced_values_baseline(
        pair.espocrm.record(entity_id), pair.advoware.get_beteiligte(BETNR)
    )
    assert len(baseline.split()) == 1 and "030" not in baseline


# --- case 3: damaged markers ------------------------------------------------------------------

DAMAGED = {
    "kommKz 0": "[ESPOCRM:MDMwIDE=:0] Zentrale",
    "cut": "[ESPOCRM:MDMwIDE= Zentrale",
    "broken base64": "[ESPOCRM:MDMw!!IDE=:1] Zentrale",
}


@DEFECT
@pytest.mark.parametrize("damaged", list(DAMAGED.values()), ids=list(DAMAGED))
def test_damaged_marker_is_re_marked_with_a_warning_and_a_removal_is_then_honoured(
    defect: bool, damaged: str
) -> None:
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 1, "tlf": "030 1", "bemerkung": damaged}],
        defect=defect,
        phones=(("030 1", "Office"),),
    )
    plan = sync_once(pair, entity_id, BETNR)
    bemerkung = entries(pair)[1]["bemerkung"]
    assert bemerkung.endswith(" " + damaged)  # the damaged text kept as the person's text
    assert parse_bemerkung(bemerkung).is_value
    (warning,) = plan.warnings
    assert "Kommunikation 1: damaged marker" in warning and "re-marked" in warning
    assert "030" not in warning and "MDMw" not in warning
    assert settled(pair, entity_id)
    # Removed in EspoCRM: the entry becomes an empty slot, and stays one.
    pair.espocrm.edit_as_person(entity_id, {"phoneNumberData": []})
    plan = sync_once(pair, entity_id, BETNR)
    assert [type(op) for op in plan.advoware_ops] == [MakeEmptySlot]
    assert entries(pair)[1]["tlf"] == "" and entries(pair)[1]["bemerkung"].endswith(damaged)
    assert espo_values(pair, entity_id) == set()
    assert settled(pair, entity_id)


@DEFECT
def test_damaged_marker_and_removal_in_the_same_run_is_honoured_with_the_baseline(
    defect: bool,
) -> None:
    pair, entity_id = make_pair(
        [synced(1, 1, "030 1")], defect=defect, phones=(("030 1", "Office"),)
    )
    remember_synced(pair, entity_id)
    pair.advoware.edit_kommunikation_as_person(BETNR, 1, {"bemerkung": DAMAGED["kommKz 0"]})
    pair.espocrm.edit_as_person(entity_id, {"phoneNumberData": []})
    plan = sync_once(pair, entity_id, BETNR)
    assert [type(op) for op in plan.advoware_ops] == [MakeEmptySlot]
    assert "re-marked" in plan.warnings[0]
    assert espo_values(pair, entity_id) == set()  # not brought back from Advoware
    assert settled(pair, entity_id)


def test_damaged_marker_without_a_value_is_reported_and_left_alone() -> None:
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 1, "tlf": "", "bemerkung": "[ESPOCRM-SLOT:1 alt"}], defect=True
    )
    plan = sync_once(pair, entity_id, BETNR)
    assert plan.advoware_ops == []
    assert plan.warnings == [
        "Kommunikation 1: damaged marker (truncated or unreadable marker) left as is "
        "(nothing to mark in this run)"
    ]


def test_re_marked_update_keeps_the_online_flag() -> None:
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 1, "tlf": "030 1", "bemerkung": DAMAGED["cut"], "online": True}],
        defect=True,
        phones=(("030 1", "Office"),),
    )
    plan = plan_now(pair, entity_id, BETNR)
    (op,) = plan.advoware_ops
    assert isinstance(op, UpdateKommunikation) and op.online is True
