"""The six variants, initial matching, conflicts, directions and bad input, over the fakes."""

from __future__ import annotations

from typing import Any

import pytest

from include.beteiligte_sync.errors import EntityError
from include.beteiligte_sync.kommunikation import (
    compare_kommunikation,
    plan_kommunikation,
)
from include.beteiligte_sync.markers import parse_bemerkung
from include.beteiligte_sync.ops import CreateKommunikation, MakeEmptySlot, UpdateKommunikation
from tests.fakes import FakePair
from tests.kommunikation.komm_support import plan_now, slot, sync_once, synced

BETNR = 7001


def make_pair(
    komm: list[dict[str, Any]],
    emails: list[str] = (),
    phones: list[tuple[str, str]] = (),
) -> tuple[FakePair, str]:
    pair = FakePair()
    pair.advoware.load({"betNr": BETNR, "name": "Muster", "kommunikation": komm})
    record = pair.espocrm.load(
        {
            "name": "Muster",
            "betnr": BETNR,
            "emailAddressData": [{"emailAddress": e} for e in emails],
            "phoneNumberData": [{"phoneNumber": p, "type": t} for p, t in phones],
        }
    )
    return pair, record["id"]


def entries(pair: FakePair) -> dict[int, dict[str, Any]]:
    return {k["id"]: k for k in pair.advoware.party(BETNR)["kommunikation"]}


def espo_values(pair: FakePair, entity_id: str) -> set[tuple[str, str]]:
    rec = pair.espocrm.record(entity_id)
    return {("email", e["emailAddress"]) for e in rec["emailAddressData"]} | {
        (p["type"], p["phoneNumber"]) for p in rec["phoneNumberData"]
    }


def assert_settled(pair: FakePair, entity_id: str) -> None:
    """Both sides hold the same values and a second sync plans nothing."""
    assert compare_kommunikation(pair.espocrm.record(entity_id), pair.advoware.party(BETNR)) == []
    assert plan_now(pair, entity_id, BETNR).is_empty


def test_var1_new_in_espocrm_creates_with_the_kind_of_the_phone_type() -> None:
    pair, entity_id = make_pair([], emails=["a@example.org"], phones=[("0171 1", "Mobile")])
    plan = sync_once(pair, entity_id, BETNR)
    assert all(isinstance(op, CreateKommunikation) for op in plan.advoware_ops)
    kinds = {parse_bemerkung(k["bemerkung"]).value: k["kommKz"] for k in entries(pair).values()}
    assert kinds == {"a@example.org": 4, "0171 1": 3}
    assert plan.changes == 2 and plan.espocrm_fields == {}
    assert_settled(pair, entity_id)


def test_var1_reuses_a_matching_empty_slot_before_creating() -> None:
    pair, entity_id = make_pair(
        [slot(1, 3), slot(2, 1, text=" Zentrale")], phones=[("030 9", "Office")]
    )
    plan = sync_once(pair, entity_id, BETNR)
    assert [type(op) for op in plan.advoware_ops] == [UpdateKommunikation]
    assert entries(pair)[2]["tlf"] == "030 9"
    assert parse_bemerkung(entries(pair)[2]["bemerkung"]).text == " Zentrale"
    assert entries(pair)[1]["tlf"] == ""
    assert_settled(pair, entity_id)


def test_var2_removed_in_espocrm_becomes_empty_slot_never_deleted() -> None:
    pair, entity_id = make_pair([synced(1, 1, "030 1", text=" Büro")], phones=[])
    plan = sync_once(pair, entity_id, BETNR)
    assert [type(op) for op in plan.advoware_ops] == [MakeEmptySlot]
    entry = entries(pair)[1]
    assert (entry["tlf"], entry["bemerkung"], entry["online"]) == (
        "",
        "[ESPOCRM-SLOT:1] Büro",
        False,
    )
    assert pair.advoware.calls["delete_kommunikation"] == 0
    assert_settled(pair, entity_id)


def test_var3_removed_in_advoware_is_removed_in_espocrm() -> None:
    pair, entity_id = make_pair(
        [synced(1, 1, "030 1"), synced(2, 3, "0171 2")],
        phones=[("030 1", "Office"), ("0171 2", "Mobile")],
    )
    pair.advoware.edit_kommunikation_as_person(BETNR, 1, {"tlf": ""})
    plan = sync_once(pair, entity_id, BETNR)
    assert espo_values(pair, entity_id) == {("Mobile", "0171 2")}
    assert parse_bemerkung(entries(pair)[1]["bemerkung"]).is_slot
    assert plan.changes == 1
    assert_settled(pair, entity_id)


def test_var4_new_in_advoware_is_added_to_espocrm_with_the_tables_type() -> None:
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 6, "tlf": "030 55", "bemerkung": "privat"}], emails=["a@example.org"]
    )
    pair.advoware.kommkz_zero_defect = False  # the reported kind is used when it is not 0
    plan = sync_once(pair, entity_id, BETNR)
    assert ("Home", "030 55") in espo_values(pair, entity_id)
    assert parse_bemerkung(entries(pair)[1]["bemerkung"]).text == " privat"
    assert plan.changes == 2  # Var4 + Var1 of the EspoCRM email
    assert_settled(pair, entity_id)


def test_var5_changed_in_espocrm_updates_the_entry_in_place() -> None:
    pair, entity_id = make_pair([synced(1, 4, "a@example.org")], emails=["a@example.org"])
    pair.espocrm.edit_as_person(
        entity_id, {"emailAddressData": [{"emailAddress": "b@example.org"}]}
    )
    plan = sync_once(pair, entity_id, BETNR)
    assert [(type(op), op.komm_id) for op in plan.advoware_ops] == [(UpdateKommunikation, 1)]
    assert entries(pair)[1]["tlf"] == "b@example.org"
    assert plan.note_lines == []
    assert_settled(pair, entity_id)


def test_var6_changed_in_advoware_replaces_the_value_in_espocrm() -> None:
    pair, entity_id = make_pair(
        [synced(1, 1, "030 1"), synced(2, 4, "a@example.org")],
        emails=["a@example.org"],
        phones=[("030 1", "Office")],
    )
    pair.espocrm.edit_as_person(
        entity_id,
        {"phoneNumberData": [{"phoneNumber": "030 1", "type": "Office", "optOut": True}]},
    )
    pair.advoware.edit_kommunikation_as_person(BETNR, 1, {"tlf": "030 2"})
    plan = sync_once(pair, entity_id, BETNR)
    assert list(plan.espocrm_fields) == ["phoneNumberData"]
    phones = pair.espocrm.record(entity_id)["phoneNumberData"]
    assert [(p["phoneNumber"], p["type"], p["optOut"], p["primary"]) for p in phones] == [
        ("030 2", "Office", True, True)
    ]
    assert parse_bemerkung(entries(pair)[1]["bemerkung"]).value == "030 2"
    assert_settled(pair, entity_id)


def test_initial_sync_matches_equal_values_instead_of_duplicating() -> None:
    pair, entity_id = make_pair(
        [
            {"id": 1, "kommKz": 1, "tlf": "+49 30 1234", "bemerkung": "Zentrale"},
            {"id": 2, "kommKz": 4, "tlf": "Info@Example.org", "bemerkung": ""},
        ],
        emails=["info@example.org"],
        phones=[("+49301234", "Office")],
    )
    plan = sync_once(pair, entity_id, BETNR, initial=True)
    assert not any(isinstance(op, CreateKommunikation) for op in plan.advoware_ops)
    assert plan.espocrm_fields == {}
    assert len(entries(pair)) == 2
    assert entries(pair)[1]["tlf"] == "+49 30 1234"  # stored as typed
    assert parse_bemerkung(entries(pair)[1]["bemerkung"]).text == " Zentrale"
    assert all(parse_bemerkung(k["bemerkung"]).is_value for k in entries(pair).values())
    assert_settled(pair, entity_id)


def test_entry_changed_on_both_sides_espocrm_wins_and_the_note_keeps_advoware() -> None:
    pair, entity_id = make_pair([synced(1, 1, "030 1")], phones=[("030 1", "Office")])
    pair.espocrm.edit_as_person(
        entity_id, {"phoneNumberData": [{"phoneNumber": "030 9", "type": "Office"}]}
    )
    pair.advoware.edit_kommunikation_as_person(BETNR, 1, {"tlf": "030 5"})
    plan = sync_once(pair, entity_id, BETNR)
    assert entries(pair)[1]["tlf"] == "030 9"
    assert len(plan.note_lines) == 1 and "'030 5'" in plan.note_lines[0]
    assert_settled(pair, entity_id)


def test_entity_conflict_reverts_advoware_changes_to_the_espocrm_value() -> None:
    pair, entity_id = make_pair(
        [synced(1, 1, "030 1"), synced(2, 3, "0171 2")],
        phones=[("030 1", "Office"), ("0171 2", "Mobile")],
    )
    pair.advoware.edit_kommunikation_as_person(BETNR, 1, {"tlf": "030 5"})
    pair.advoware.edit_kommunikation_as_person(BETNR, 2, {"tlf": ""})
    plan = sync_once(pair, entity_id, BETNR, espocrm_wins=True)
    assert (entries(pair)[1]["tlf"], entries(pair)[2]["tlf"]) == ("030 1", "0171 2")
    assert plan.espocrm_fields == {}
    assert len(plan.note_lines) == 1 and "'030 5'" in plan.note_lines[0]
    assert plan.changes == 2
    assert_settled(pair, entity_id)


def test_type_change_alone_is_not_synced_because_kommkz_is_read_only() -> None:
    pair, entity_id = make_pair([synced(1, 1, "0171 1")], phones=[("0171 1", "Office")])
    pair.espocrm.edit_as_person(
        entity_id, {"phoneNumberData": [{"phoneNumber": "0171 1", "type": "Mobile"}]}
    )
    # Same value, other type: identity is the value, so nothing to do (kommKz is read-only).
    assert plan_now(pair, entity_id, BETNR).is_empty


def test_direction_to_advoware_leaves_advoware_only_values_alone() -> None:
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 1, "tlf": "030 1", "bemerkung": ""}], emails=["a@example.org"]
    )
    plan = sync_once(pair, entity_id, BETNR, direction="to_advoware")
    assert [type(op) for op in plan.advoware_ops] == [CreateKommunikation]
    assert plan.espocrm_fields == {}
    assert entries(pair)[1]["bemerkung"] == ""
    assert any("Var4 skipped" in w for w in plan.warnings)
    espo, advo = pair.espocrm.record(entity_id), pair.advoware.party(BETNR)
    assert compare_kommunikation(espo, advo, direction="to_advoware") == []
    assert compare_kommunikation(espo, advo) != []
    assert plan_now(pair, entity_id, BETNR, direction="to_advoware").is_empty


def test_direction_to_espocrm_does_not_write_espocrm_values_to_advoware() -> None:
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 1, "tlf": "030 1", "bemerkung": ""}], emails=["a@example.org"]
    )
    plan = sync_once(pair, entity_id, BETNR, direction="to_espocrm", espocrm_wins=True)
    assert not any(isinstance(op, CreateKommunikation | MakeEmptySlot) for op in plan.advoware_ops)
    # Unmarked, reported as kommKz 0: kind unknown, so "Other" (never "Office").
    assert espo_values(pair, entity_id) == {("email", "a@example.org"), ("Other", "030 1")}
    espo, advo = pair.espocrm.record(entity_id), pair.advoware.party(BETNR)
    assert compare_kommunikation(espo, advo, direction="to_espocrm") == []
    assert plan_now(pair, entity_id, BETNR, direction="to_espocrm").is_empty


def test_new_party_gets_every_espocrm_value_created() -> None:
    espo = {
        "emailAddressData": [{"emailAddress": "a@example.org", "primary": True}],
        "phoneNumberData": [{"phoneNumber": "030 1", "type": "Fax"}],
    }
    plan = plan_kommunikation(espo, None, direction="both", espocrm_wins=False, initial=True)
    assert [(op.kommkz, op.tlf) for op in plan.advoware_ops] == [(4, "a@example.org"), (2, "030 1")]
    assert all(isinstance(op, CreateKommunikation) for op in plan.advoware_ops)
    assert plan.changes == 2


def test_malformed_marker_is_re_marked_keeping_the_users_text() -> None:
    broken = "[ESPOCRM:!!kaputt!!:1] bitte nicht löschen"
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 1, "tlf": "030 1", "bemerkung": broken}], phones=[]
    )
    plan = sync_once(pair, entity_id, BETNR)
    # The GET reports kommKz 0 and the damaged marker names no kind: unknown, "?" and "Other".
    assert entries(pair)[1]["bemerkung"] == "[ESPOCRM:MDMwIDE=:?] " + broken
    assert entries(pair)[1]["tlf"] == "030 1"
    assert espo_values(pair, entity_id) == {("Other", "030 1")}
    assert plan.warnings and "invalid base64" in plan.warnings[0]
    assert "re-marked" in plan.warnings[0]
    assert "030" not in " ".join(plan.warnings)
    assert_settled(pair, entity_id)


def test_malformed_marker_on_conflict_keeps_the_text_in_the_slot() -> None:
    broken = "[ESPOCRM:MTIz:1][ESPOCRM:MTIz:1] Notiz"
    pair, entity_id = make_pair([{"id": 1, "kommKz": 1, "tlf": "030 1", "bemerkung": broken}])
    plan = sync_once(pair, entity_id, BETNR, espocrm_wins=True)
    assert plan.changes == 1
    assert entries(pair)[1]["tlf"] == ""
    assert broken in entries(pair)[1]["bemerkung"]
    assert plan_now(pair, entity_id, BETNR, espocrm_wins=True).is_empty


def test_invalid_email_from_advoware_is_an_entity_error_with_masked_value() -> None:
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 4, "tlf": "max.mustermann(at)example", "bemerkung": ""}]
    )
    pair.advoware.kommkz_zero_defect = False
    with pytest.raises(EntityError) as info:
        plan_now(pair, entity_id, BETNR)
    assert "not a valid email" in str(info.value) and "Kommunikation 1" in str(info.value)
    assert "mustermann" not in str(info.value)


def test_value_too_long_for_advoware_is_an_entity_error_not_truncated() -> None:
    # EspoCRM holds email addresses longer than Advoware's 100-character tlf (phone numbers
    # it limits to less itself).
    pair, entity_id = make_pair([], emails=["a" * 90 + "@kanzlei.example"])
    with pytest.raises(EntityError, match="at most 100"):
        plan_now(pair, entity_id, BETNR)


def test_bemerkung_too_long_with_marker_is_an_entity_error() -> None:
    pair, entity_id = make_pair(
        [{"id": 1, "kommKz": 1, "tlf": "030 1", "bemerkung": "x" * 495}], phones=[]
    )
    with pytest.raises(EntityError, match="at most 500"):
        plan_now(pair, entity_id, BETNR)
    assert entries(pair)[1]["bemerkung"] == "x" * 495


def test_non_text_tlf_is_an_entity_error() -> None:
    espo = {"emailAddressData": [], "phoneNumberData": []}
    advo = {"kommunikation": [{"id": 3, "kommKz": 1, "tlf": 12345, "bemerkung": ""}]}
    with pytest.raises(EntityError, match="Kommunikation 3"):
        plan_kommunikation(espo, advo, direction="both", espocrm_wins=False, initial=False)


def test_compare_reports_masked_differences() -> None:
    espo = {
        "emailAddressData": [],
        "phoneNumberData": [{"phoneNumber": "+49 30 1234", "type": "Office"}],
    }
    advo = {"kommunikation": [{"id": 1, "kommKz": 4, "tlf": "a.b@example.org", "bemerkung": ""}]}
    assert compare_kommunikation(espo, advo) == [
        "phone Office: +4…34 != (missing)",
        "(missing) != email: a.…rg",
    ]


def test_primary_is_chosen_by_the_table_when_the_primary_value_goes() -> None:
    pair, entity_id = make_pair(
        [synced(1, 2, "030 7"), synced(2, 1, "030 1"), synced(3, 3, "0171 3")],
        phones=[("030 7", "Fax"), ("030 1", "Office"), ("0171 3", "Mobile")],
    )
    pair.espocrm.edit_as_person(
        entity_id,
        {
            "phoneNumberData": [
                {"phoneNumber": "030 7", "type": "Fax"},
                {"phoneNumber": "030 1", "type": "Office", "primary": True},
                {"phoneNumber": "0171 3", "type": "Mobile"},
            ]
        },
    )
    pair.advoware.edit_kommunikation_as_person(BETNR, 2, {"tlf": ""})
    sync_once(pair, entity_id, BETNR)
    phones = pair.espocrm.record(entity_id)["phoneNumberData"]
    assert [(p["phoneNumber"], p["primary"]) for p in phones] == [
        ("030 7", False),
        ("0171 3", True),
    ]


def test_to_advoware_leaves_a_value_changed_only_in_advoware_for_a_two_way_run() -> None:
    pair, entity_id = make_pair([synced(1, 1, "030 1")], phones=[("030 1", "Office")])
    pair.advoware.edit_kommunikation_as_person(BETNR, 1, {"tlf": "030 5"})
    plan = sync_once(pair, entity_id, BETNR, direction="to_advoware")
    # nothing to copy from EspoCRM, and a one-way run destroys nothing on its target
    assert plan.is_empty and plan.blocked and plan.note_lines == []
    assert entries(pair)[1]["tlf"] == "030 5"
    sync_once(pair, entity_id, BETNR)  # the next two-way run: Var6
    assert espo_values(pair, entity_id) == {("Office", "030 5")}


def test_to_espocrm_puts_a_value_removed_in_espocrm_back() -> None:
    pair, entity_id = make_pair([synced(1, 4, "a@example.org")], emails=["a@example.org"])
    pair.espocrm.edit_as_person(entity_id, {"emailAddressData": []})
    plan = sync_once(pair, entity_id, BETNR, direction="to_espocrm")
    assert espo_values(pair, entity_id) == {("email", "a@example.org")}
    assert plan.advoware_ops == []
    assert entries(pair)[1]["tlf"] == "a@example.org"
    assert_settled(pair, entity_id)


def test_same_change_on_both_sides_only_refreshes_the_marker() -> None:
    pair, entity_id = make_pair([synced(1, 1, "030 1")], phones=[("030 1", "Office")])
    pair.espocrm.edit_as_person(
        entity_id, {"phoneNumberData": [{"phoneNumber": "030 9", "type": "Office"}]}
    )
    pair.advoware.edit_kommunikation_as_person(BETNR, 1, {"tlf": "0309"})
    plan = sync_once(pair, entity_id, BETNR)
    assert [(type(op), op.tlf) for op in plan.advoware_ops] == [(UpdateKommunikation, "0309")]
    assert plan.espocrm_fields == {} and plan.note_lines == []
    assert parse_bemerkung(entries(pair)[1]["bemerkung"]).value == "0309"
    assert_settled(pair, entity_id)


def test_removed_on_both_sides_leaves_a_reusable_slot() -> None:
    pair, entity_id = make_pair([synced(1, 3, "0171 1")], phones=[("0171 1", "Mobile")])
    pair.espocrm.edit_as_person(entity_id, {"phoneNumberData": []})
    pair.advoware.edit_kommunikation_as_person(BETNR, 1, {"tlf": ""})
    plan = sync_once(pair, entity_id, BETNR)
    assert [type(op) for op in plan.advoware_ops] == [MakeEmptySlot]
    assert plan.espocrm_fields == {} and plan.note_lines == []
    assert entries(pair)[1]["bemerkung"] == "[ESPOCRM-SLOT:3]"
    assert_settled(pair, entity_id)


def test_website_entries_are_left_alone_even_on_conflict() -> None:
    website = {"id": 1, "kommKz": 5, "tlf": "https://kanzlei.example", "bemerkung": "Homepage"}
    pair, entity_id = make_pair([website])
    plan = sync_once(pair, entity_id, BETNR, espocrm_wins=True)
    assert plan.is_empty and plan.changes == 0
    assert (entries(pair)[1]["tlf"], entries(pair)[1]["bemerkung"]) == (
        "https://kanzlei.example",
        "Homepage",
    )


def advoware_holders(pair: FakePair) -> list[str]:
    """Advoware values (as stored) of the entries that hold one."""
    return sorted(k["tlf"] for k in entries(pair).values() if k["tlf"])


def copied_into_advoware_after_a_change(*, cleared: bool = False) -> tuple[FakePair, str]:
    """Entry 1 was synced with "030 1"; in Advoware a person changed it (or ``cleared`` it) and
    then typed EspoCRM's "030 1" as a new entry (another format) -- the proof's sequence."""
    pair, entity_id = make_pair([synced(1, 1, "030 1")], phones=[("030 1", "Office")])
    pair.advoware.edit_kommunikation_as_person(BETNR, 1, {"tlf": "" if cleared else "030 5"})
    pair.advoware.edit_kommunikation_as_person(BETNR, None, {"tlf": "0301", "kommKz": 1})
    return pair, entity_id


@pytest.mark.parametrize("cleared", [False, True])
def test_conflict_does_not_restore_a_value_another_entry_already_holds(cleared: bool) -> None:
    pair, entity_id = copied_into_advoware_after_a_change(cleared=cleared)
    plan = sync_once(pair, entity_id, BETNR, espocrm_wins=True)
    assert advoware_holders(pair) == ["0301"]  # once, not restored into entry 1 as well
    assert parse_bemerkung(entries(pair)[1]["bemerkung"]).is_slot
    assert plan.espocrm_fields == {}
    assert [("'030 5'" in line) for line in plan.note_lines] == ([] if cleared else [True])
    assert_settled(pair, entity_id)
    assert plan_now(pair, entity_id, BETNR, espocrm_wins=True).is_empty


def test_to_advoware_does_not_restore_a_value_another_entry_already_holds() -> None:
    pair, entity_id = copied_into_advoware_after_a_change()
    plan = sync_once(pair, entity_id, BETNR, direction="to_advoware")
    assert advoware_holders(pair) == ["030 5", "0301"]  # Advoware's own value left alone
    assert plan.espocrm_fields == {} and plan.note_lines == []
    espo, advo = pair.espocrm.record(entity_id), pair.advoware.party(BETNR)
    assert compare_kommunikation(espo, advo, direction="to_advoware") == []
    assert plan_now(pair, entity_id, BETNR, direction="to_advoware").is_empty


def test_both_directions_keep_the_copied_value_and_add_the_changed_one() -> None:
    pair, entity_id = copied_into_advoware_after_a_change()
    sync_once(pair, entity_id, BETNR)
    assert advoware_holders(pair) == ["030 5", "0301"]
    assert espo_values(pair, entity_id) == {("Office", "030 1"), ("Office", "030 5")}
    assert_settled(pair, entity_id)


def test_conflict_restores_a_value_once_when_an_entry_changed_into_it() -> None:
    # Entry 2's value was removed in EspoCRM while a person changed it in Advoware into the
    # value entry 1 held before it, too, was changed: only one entry may get "030 1" back.
    pair, entity_id = make_pair(
        [synced(1, 1, "030 1"), synced(2, 1, "030 2")], phones=[("030 1", "Office")]
    )
    pair.advoware.edit_kommunikation_as_person(BETNR, 1, {"tlf": "030 5"})
    pair.advoware.edit_kommunikation_as_person(BETNR, 2, {"tlf": "0301"})
    plan = sync_once(pair, entity_id, BETNR, espocrm_wins=True)
    assert advoware_holders(pair) == ["0301"]
    assert any("'030 5'" in line for line in plan.note_lines)
    assert_settled(pair, entity_id)
