"""Issue 15 over HTTP (engine + hooks + sandbox), with the kommKz-0 defect on and off: a fax
typed in Advoware stays a fax, beA and EPost are never touched, a damaged marker is repaired
with a warning, an entry deleted in Advoware is not re-created, an unchanged party costs two
calls."""

from __future__ import annotations

from typing import Any

import pytest
from hooks.advoware import AdvowareHook
from hooks.espocrm import EspoCrmHook

from include.beteiligte_sync.kommunikation import (
    SYNCED_VALUES_FIELD,
    compare_kommunikation,
    plan_kommunikation,
    synced_values_baseline,
)
from include.beteiligte_sync.markers import parse_bemerkung
from include.beteiligte_sync.ops import CreateKommunikation
from tests.integration.http_support import Http
from tests.kommunikation.komm_support import apply_through

OFFICE = "+49 30 1111111"
FAX = "+49 30 2222229"
SAFE_ID = "safe-sp1-1617181920-123456789"
EPOST = "kanzlei.muster@epost.de"
DAMAGED = "[ESPOCRM:KzQ5IDMwIDExMTExMTE=:0] Zentrale"  # a person typed over the kind


@pytest.fixture(params=[True, False], ids=["kommkz0", "kommkz_ok"])
def defect(request: pytest.FixtureRequest, http: Http) -> bool:
    http.sb.advoware_admin.configure(kommkz_zero_defect=request.param)
    return bool(request.param)


def _phones(record: dict[str, Any]) -> dict[str, str]:
    return {p["phoneNumber"]: p["type"] for p in record["phoneNumberData"]}


def _entry(http: Http, betnr: int, tlf: str) -> dict[str, Any]:
    return next(k for k in http.party(betnr)["kommunikation"] if k["tlf"] == tlf)


def _linked_with_office(http: Http) -> tuple[str, int]:
    return http.linked(phoneNumberData=[{"phoneNumber": OFFICE, "type": "Office", "primary": True}])


def test_fax_typed_in_advoware_arrives_as_fax_or_other_never_office(
    http: Http, defect: bool
) -> None:
    entity_id, betnr = _linked_with_office(http)
    http.edit_kommunikation(betnr, tlf=FAX, kommKz=2, bemerkung="")

    result = http.run(entity_id)

    assert result.status == "clean", result.error
    assert _phones(http.record(entity_id)) == {
        OFFICE: "Office",
        FAX: "Other" if defect else "Fax",
    }
    fax = _entry(http, betnr, FAX)
    assert fax["kommKz"] == 2  # stored kind unchanged
    assert parse_bemerkung(fax["bemerkung"]).kommkz == (None if defect else 2)  # no guess
    assert http.run(entity_id).status == "clean"
    assert _phones(http.record(entity_id))[FAX] != "Office"


def test_bea_safe_id_and_epost_are_never_touched_even_on_conflict(http: Http, defect: bool) -> None:
    entity_id, betnr = _linked_with_office(http)
    bea = http.edit_kommunikation(betnr, tlf=SAFE_ID, kommKz=12, bemerkung="beA")
    epost = http.edit_kommunikation(betnr, tlf=EPOST, kommKz=11, bemerkung="")
    http.edit_espocrm(entity_id, vorname="Moritz")  # both sides changed: a conflict
    http.edit_advoware(betnr, vorname="Mads")

    result = http.run(entity_id)

    assert result.outcome == "conflict" and result.status == "clean", result.error
    for before in (bea, epost):
        stored = next(k for k in http.party(betnr)["kommunikation"] if k["id"] == before["id"])
        assert (stored["tlf"], stored["bemerkung"], stored["rowId"]) == (
            before["tlf"],
            before["bemerkung"],
            before["rowId"],
        )
    record = http.record(entity_id)
    assert _phones(record) == {OFFICE: "Office"}
    assert record.get("emailAddressData") in ([], None)


def test_damaged_marker_is_repaired_with_a_warning_and_a_removal_then_holds(
    http: Http, defect: bool
) -> None:
    entity_id, betnr = _linked_with_office(http)
    office = _entry(http, betnr, OFFICE)
    http.edit_kommunikation(betnr, id=office["id"], bemerkung=DAMAGED)

    result = http.run(entity_id)

    assert result.status == "clean", result.error
    assert f"Kommunikation {office['id']}: damaged marker" in result.plan_text
    assert "re-marked" in result.plan_text and "KzQ5" not in result.plan_text
    repaired = _entry(http, betnr, OFFICE)["bemerkung"]
    assert parse_bemerkung(repaired).is_value and repaired.endswith(" " + DAMAGED)

    http.edit_espocrm(entity_id, phoneNumberData=[])  # a person removes it in EspoCRM
    assert http.run(entity_id).status == "clean"
    emptied = next(k for k in http.party(betnr)["kommunikation"] if k["id"] == office["id"])
    assert emptied["tlf"] == "" and emptied["bemerkung"].endswith(DAMAGED)
    assert http.run(entity_id).status == "clean"
    assert _phones(http.record(entity_id)) == {}  # not brought back


def test_entry_deleted_in_advoware_is_removed_in_espocrm_not_created_again(
    http: Http, defect: bool
) -> None:
    entity_id, betnr = _linked_with_office(http)
    espocrm, advoware = EspoCrmHook(), AdvowareHook()
    espo = espocrm.get_beteiligte(entity_id)
    # What the engine stores after its checked sync (see the package docs: kommunikationSynced).
    espo[SYNCED_VALUES_FIELD] = synced_values_baseline(espo, advoware.get_beteiligte(betnr))
    office = _entry(http, betnr, OFFICE)
    http.sb.advoware_admin.edit(betNr=betnr, delete_kommunikation=office["id"])

    advo = advoware.get_beteiligte(betnr)
    plan = plan_kommunikation(espo, advo, direction="both", espocrm_wins=False, initial=False)
    assert not any(isinstance(op, CreateKommunikation) for op in plan.advoware_ops)
    assert plan.espocrm_fields == {"phoneNumberData": []} and plan.changes == 1
    apply_through(espocrm, advoware, entity_id, betnr, plan)

    assert http.party(betnr)["kommunikation"] == []
    espo, advo = espocrm.get_beteiligte(entity_id), advoware.get_beteiligte(betnr)
    assert compare_kommunikation(espo, advo) == []


def test_unchanged_party_with_kommunikationen_costs_two_calls(http: Http, defect: bool) -> None:
    entity_id, betnr = http.linked(
        emailAddressData=[{"emailAddress": "max@example.org", "primary": True}],
        phoneNumberData=[
            {"phoneNumber": OFFICE, "type": "Office", "primary": True},
            {"phoneNumber": "+49 171 2345678", "type": "Mobile", "primary": False},
        ],
    )
    http.edit_kommunikation(betnr, tlf=SAFE_ID, kommKz=12, bemerkung="")  # never synced
    assert http.run(entity_id).status == "clean"
    http.clock.advance(minutes=15)
    http.reset_counters()

    result = http.run(entity_id)

    calls = http.calls()
    assert result.status == "clean" and result.outcome == "no_change", result
    assert calls.business == 2, calls
