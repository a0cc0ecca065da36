"""The executor: applies a :class:`Plan` through the client protocols, op by op.

It decides nothing; it only carries out the plan in its order and keeps track of what changed:
the betnr of a newly created party (written to EspoCRM at once, so a failure later in the plan
cannot lead to a second party on the next run) and the latest EspoCRM record (its
``versionNumber`` guards each following EspoCRM write).

Every EspoCRM write sends ``syncStatus="syncing"``: the firm's EspoCRM marks a record ``dirty``
when a write changes business fields without setting ``syncStatus``; our own writes must not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from include.beteiligte_sync import baseline, compare, mapping
from include.beteiligte_sync.clients import AdvowareClient, EspoCrmClient, Record
from include.beteiligte_sync.errors import ApiError, BadResponse, EntityError
from include.beteiligte_sync.ops import (
    CreateAdvowareBeteiligte,
    CreateKommunikation,
    MakeEmptySlot,
    Op,
    PostNote,
    UpdateAdvowareBeteiligte,
    UpdateEspoCrm,
    UpdateKommunikation,
)
from include.beteiligte_sync.plan import Plan
from include.beteiligte_sync.status import SyncStatus


@dataclass
class ApplyState:
    """What the executor knows while applying: the current betnr and EspoCRM record."""

    betnr: int | None
    espocrm_record: Record
    ops_applied: int = 0
    #: what a create sent, and its hash (the baseline that goes with the new betnr)
    created_values: mapping.Canonical | None = None
    created_hash: str | None = None
    #: fingerprint of the Note posted (recorded if a later op fails: never posted twice)
    noted: str | None = None
    #: the party's own fields were written to Advoware (the lock's pending values landed)
    advoware_party_written: bool = False


def apply_plan(
    plan: Plan, espocrm: EspoCrmClient, advoware: AdvowareClient, state: ApplyState
) -> ApplyState:
    """Apply ``plan``'s ops in order, starting from ``state`` (the betnr known and the record
    as the lock write returned it). Raises whatever the clients raise; the caller releases the
    lock and still finds in ``state`` what was done (a new betnr, for instance)."""
    for op in plan.ops:
        _apply_op(op, state, espocrm, advoware)
        state.ops_applied += 1
    return state


def _apply_op(op: Op, state: ApplyState, espocrm: EspoCrmClient, advoware: AdvowareClient) -> None:
    if isinstance(op, CreateAdvowareBeteiligte):
        state.betnr = _new_betnr(advoware.create_beteiligte(op.fields))
        state.created_values = mapping.from_advoware(op.fields)
        state.created_hash = mapping.business_hash(state.created_values)
        # The betnr is recorded at once, so a failure later in the plan cannot lead to a second
        # party. Advoware's answer carries only the betNr (SPEC §5): the party is read back for
        # the rowId. The baseline goes with the betnr: if the rest of the plan or its validation
        # fails, later runs decide by it, not by timestamps that our own bookkeeping writes keep
        # moving (EspoCRM's modifiedAt would always look newer).
        try:
            row_id = compare.baseline_row_id(advoware.get_beteiligte(state.betnr).get("rowId"))
        except ApiError:
            row_id = None  # the betnr must be recorded whatever happens; validation reads again
        recorded = {
            "betnr": state.betnr,
            "advowareRowId": row_id,
            "syncedHash": state.created_hash,
            "syncBaseline": baseline.render(state.created_values),
        }
        _write_espocrm(espocrm, state, recorded)
    elif isinstance(op, UpdateAdvowareBeteiligte):
        advoware.update_beteiligte(op.betnr, op.fields)
        state.advoware_party_written = True
    elif isinstance(op, CreateKommunikation):
        data = {"tlf": op.tlf, "bemerkung": op.bemerkung, "kommKz": op.kommkz, "online": op.online}
        advoware.create_kommunikation(_betnr(state), data)
    elif isinstance(op, UpdateKommunikation):
        data = {"tlf": op.tlf, "bemerkung": op.bemerkung, "online": op.online}
        advoware.update_kommunikation(_betnr(state), op.komm_id, data)
    elif isinstance(op, MakeEmptySlot):
        data = {"tlf": "", "bemerkung": op.bemerkung, "online": False}
        advoware.update_kommunikation(_betnr(state), op.komm_id, data)
    elif isinstance(op, UpdateEspoCrm):
        _write_espocrm(espocrm, state, op.fields)
    elif isinstance(op, PostNote):
        espocrm.post_note(op.entity_id, op.text)
        state.noted = baseline.fingerprint(op.text)
    else:
        raise TypeError(f"unknown op {type(op).__name__}")


def _new_betnr(answer: object) -> int:
    """The ``betNr`` of Advoware's answer to a create (the only thing it carries)."""
    betnr = answer.get("betNr") if isinstance(answer, Mapping) else None
    if isinstance(betnr, bool) or not isinstance(betnr, int | str) or not str(betnr).isdigit():
        raise BadResponse("the create answer carries no betNr")
    return int(betnr)


def _betnr(state: ApplyState) -> int:
    if state.betnr is None:
        raise EntityError("Kommunikation op without an Advoware party (no betnr)")
    return state.betnr


def _write_espocrm(espocrm: EspoCrmClient, state: ApplyState, fields: Mapping[str, Any]) -> None:
    record = state.espocrm_record
    data = {**fields, "syncStatus": SyncStatus.SYNCING.value}
    state.espocrm_record = espocrm.update_beteiligte(
        str(record["id"]), data, version_number=record.get("versionNumber")
    )
