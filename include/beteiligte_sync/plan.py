"""A sync plan for one entity and its text form (dry run, task log).

The plan is data: the outcome the comparison decided and the ops that carry it out. The same
plan is rendered for a person or applied by :mod:`include.beteiligte_sync.apply`. Rendering
masks personal values unless ``show_values=True`` (field names, ids and counts stay visible).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from include.beteiligte_sync.ops import (
    ADVOWARE_OPS,
    CreateAdvowareBeteiligte,
    CreateKommunikation,
    MakeEmptySlot,
    Op,
    PostNote,
    UpdateAdvowareBeteiligte,
    UpdateEspoCrm,
    UpdateKommunikation,
)


@dataclass
class Plan:
    """Everything one sync step intends to do with one entity.

    :param outcome: the entity-level decision (an ``Outcome`` value).
    :param ops: the operations in the order they are applied.
    :param initial: no baseline existed (seed #11 rule).
    :param create_pending: marker to store in ``advowareRowId`` with the lock before creating a
        party in Advoware (so an interrupted create is adopted, not repeated).
    :param kommunikation_changes: number of Kommunikation changes (seed: "3 total changes").
    :param warnings: readable notes without personal values (malformed markers, ...).
    """

    entity_id: str
    betnr: int | None
    outcome: str
    direction: str = "both"
    ops: list[Op] = field(default_factory=list)
    initial: bool = False
    create_pending: str | None = None
    kommunikation_changes: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def writes_advoware(self) -> bool:
        """True if any op writes to Advoware."""
        return any(isinstance(op, ADVOWARE_OPS) for op in self.ops)


def _value(value: Any, show: bool) -> str:
    if not show:
        return "***" if value not in (None, "") else "(empty)"
    return repr(value)


def _fields(fields: Mapping[str, Any], old: Mapping[str, Any], show: bool) -> str:
    parts = []
    for name, new in fields.items():
        if name in old:
            parts.append(f"{name}: {_value(old[name], show)} -> {_value(new, show)}")
        elif show:
            parts.append(f"{name}={_value(new, show)}")
        else:
            parts.append(name)
    return ", ".join(parts) or "(no fields)"


def render_op(op: Op, show_values: bool = False) -> str:
    """One line for one op; personal values masked unless ``show_values``."""
    show = show_values
    if isinstance(op, CreateAdvowareBeteiligte):
        text = f"create Advoware party: {_fields(op.fields, {}, show)}"
    elif isinstance(op, UpdateAdvowareBeteiligte):
        text = f"update Advoware party {op.betnr}: {_fields(op.fields, op.old, show)}"
    elif isinstance(op, CreateKommunikation):
        text = f"create Kommunikation kommKz={op.kommkz} tlf={_value(op.tlf, show)}"
    elif isinstance(op, UpdateKommunikation):
        text = f"update Kommunikation {op.komm_id} tlf={_value(op.tlf, show)}"
    elif isinstance(op, MakeEmptySlot):
        text = f"make Kommunikation {op.komm_id} an empty slot (kommKz={op.kommkz})"
    elif isinstance(op, UpdateEspoCrm):
        text = f"update EspoCRM {op.entity_id}: {_fields(op.fields, op.old, show)}"
    elif isinstance(op, PostNote):
        lines = op.text.count("\n") + 1
        text = f"post stream note on {op.entity_id} ({lines} lines)"
    else:
        text = type(op).__name__
    return f"{text}  [{op.reason}]"


def render(plan: Plan, show_values: bool = False) -> str:
    """The plan as text, one op per line (dry run, task log). Values masked by default."""
    betnr = plan.betnr if plan.betnr is not None else "-"
    head = f"entity {plan.entity_id} betnr {betnr}: {plan.outcome} (direction {plan.direction}"
    head += ", initial sync)" if plan.initial else ")"
    lines = [head]
    lines += [f"  - {render_op(op, show_values)}" for op in plan.ops] or ["  (nothing to do)"]
    if plan.kommunikation_changes:
        lines.append(f"  Kommunikation changes: {plan.kommunikation_changes}")
    lines += [f"  warning: {w}" for w in plan.warnings]
    return "\n".join(lines)
