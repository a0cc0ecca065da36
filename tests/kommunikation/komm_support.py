"""Test support: apply a KommunikationPlan to the in-memory fakes, and the seed's data."""

from __future__ import annotations

from typing import Any

from include.beteiligte_sync.clients import AdvowareClient, EspoCrmClient
from include.beteiligte_sync.kommunikation import KommunikationPlan, plan_kommunikation
from include.beteiligte_sync.markers import render_slot_marker, render_value_marker
from include.beteiligte_sync.ops import CreateKommunikation, MakeEmptySlot, UpdateKommunikation
from tests.fakes import FakePair

SEED_BETNR = 104860


def apply_plan(pair: FakePair, entity_id: str, betnr: int, plan: KommunikationPlan) -> None:
    """Do what the engine's apply step does with a Kommunikation plan, through the fakes."""
    apply_through(pair.espocrm, pair.advoware, entity_id, betnr, plan)


def apply_through(
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    entity_id: str,
    betnr: int,
    plan: KommunikationPlan,
) -> None:
    """Apply a Kommunikation plan through any pair of clients (fakes or hooks)."""
    for op in plan.advoware_ops:
        if isinstance(op, CreateKommunikation):
            advoware.create_kommunikation(
                betnr,
                {
                    "tlf": op.tlf,
                    "bemerkung": op.bemerkung,
                    "kommKz": op.kommkz,
                    "online": op.online,
                },
            )
        elif isinstance(op, UpdateKommunikation):
            advoware.update_kommunikation(
                betnr, op.komm_id, {"tlf": op.tlf, "bemerkung": op.bemerkung, "online": op.online}
            )
        elif isinstance(op, MakeEmptySlot):
            advoware.update_kommunikation(
                betnr, op.komm_id, {"tlf": "", "bemerkung": op.bemerkung, "online": False}
            )
        else:  # pragma: no cover - the planner makes no other ops
            raise AssertionError(f"unexpected op {op!r}")
    if plan.espocrm_fields:
        espocrm.update_beteiligte(entity_id, plan.espocrm_fields)


def plan_now(pair: FakePair, entity_id: str, betnr: int, **kw: Any) -> KommunikationPlan:
    """Read both sides through the fakes (kommKz 0 defect included) and plan."""
    kw.setdefault("direction", "both")
    kw.setdefault("espocrm_wins", False)
    kw.setdefault("initial", False)
    espo = pair.espocrm.get_beteiligte(entity_id)
    advo = pair.advoware.get_beteiligte(betnr)
    return plan_kommunikation(espo, advo, **kw)


def sync_once(pair: FakePair, entity_id: str, betnr: int, **kw: Any) -> KommunikationPlan:
    """Plan and apply once; returns the plan."""
    plan = plan_now(pair, entity_id, betnr, **kw)
    apply_plan(pair, entity_id, betnr, plan)
    return plan


def value_marker(value: str, kommkz: int, text: str = "") -> str:
    """A bemerkung holding a value marker and ``text``."""
    return render_value_marker(value, kommkz) + text


def slot(komm_id: int, kommkz: int, *, tlf: str = "", text: str = "") -> dict[str, Any]:
    """An Advoware entry with a slot marker (``tlf`` set = a person typed into it)."""
    return {
        "id": komm_id,
        "kommKz": kommkz,
        "tlf": tlf,
        "bemerkung": render_slot_marker(kommkz) + text,
    }


def synced(komm_id: int, kommkz: int, value: str, *, text: str = "") -> dict[str, Any]:
    """An Advoware entry in sync with EspoCRM (value marker holds ``value``)."""
    return {
        "id": komm_id,
        "kommKz": kommkz,
        "tlf": value,
        "bemerkung": value_marker(value, kommkz, text),
    }


def seed_104860_kommunikation() -> list[dict[str, Any]]:
    """Entity 104860 as the seed describes it: 9 Kommunikationen, 4 sync-relevant.

    One email in sync; three new user values (the conflict trace's komm ids 149342, 149343,
    149350: a value typed into a TelGesch slot, an unmarked value, a value typed into a
    TelPrivat slot); five empty slots.
    """
    return [
        synced(149340, 4, "max3@example.org"),
        slot(149341, 1),
        slot(149342, 1, tlf="23423"),
        {"id": 149343, "kommKz": 1, "tlf": "1231211111", "bemerkung": ""},
        slot(149344, 4),
        slot(149345, 3),
        slot(149346, 6),
        slot(149347, 2, text=" alte Faxnummer"),
        slot(149350, 6, tlf="2342342423"),
    ]


def seed_104860(pair: FakePair) -> tuple[str, int]:
    """Load entity 104860 into both fakes; returns (entity_id, betnr)."""
    pair.advoware.load(
        {"betNr": SEED_BETNR, "name": "22Test8 GmbH", "kommunikation": seed_104860_kommunikation()}
    )
    record = pair.espocrm.load(
        {
            "name": "Max3 Mustermann",
            "betnr": SEED_BETNR,
            "emailAddressData": [{"emailAddress": "max3@example.org", "primary": True}],
            "phoneNumberData": [],
        }
    )
    return record["id"], SEED_BETNR
