"""The operations a sync plan is made of.

Like Alembic's ``ops``: each operation is a small frozen dataclass that names its target and the
reason it exists. The same list of operations is rendered for a person (dry run, run report) or
applied through the clients (:mod:`include.beteiligte_sync.apply`). Ops carry values as they will
be written; rendering masks personal values unless asked not to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Op:
    """Base of all plan operations. ``reason`` says why, in words an operator understands."""

    reason: str


# --- Advoware ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateAdvowareBeteiligte(Op):
    """Create the party in Advoware from the EspoCRM record ``entity_id``; store the new betNr."""

    entity_id: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class UpdateAdvowareBeteiligte(Op):
    """Write Advoware party fields. ``old`` holds the Advoware values being overwritten."""

    betnr: int
    fields: Mapping[str, Any]
    old: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateKommunikation(Op):
    """Create a Kommunikation on the party (Var1 when no empty slot of the kind is free)."""

    kommkz: int
    tlf: str
    bemerkung: str
    online: bool = False


@dataclass(frozen=True)
class UpdateKommunikation(Op):
    """Change ``tlf``/``bemerkung``/``online`` of an existing Kommunikation (Var5, slot reuse,
    marker refresh). ``kommKz`` cannot be changed through the API."""

    komm_id: int
    tlf: str
    bemerkung: str
    online: bool = False


@dataclass(frozen=True)
class MakeEmptySlot(Op):
    """Turn a Kommunikation into an empty slot (DELETE is forbidden in Advoware): ``tlf`` empty,
    ``bemerkung`` the slot marker of ``kommkz`` (user text after the marker kept), offline."""

    komm_id: int
    kommkz: int
    bemerkung: str


# --- EspoCRM ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateEspoCrm(Op):
    """Write business fields and/or ``phoneNumberData``/``emailAddressData`` to EspoCRM.

    ``old`` holds the EspoCRM values being overwritten (for the report)."""

    entity_id: str
    fields: Mapping[str, Any]
    old: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PostNote(Op):
    """Post a stream note on the EspoCRM record, e.g. the Advoware values a conflict overwrote."""

    entity_id: str
    text: str


ADVOWARE_OPS = (
    CreateAdvowareBeteiligte,
    UpdateAdvowareBeteiligte,
    CreateKommunikation,
    UpdateKommunikation,
    MakeEmptySlot,
)
ESPOCRM_OPS = (UpdateEspoCrm, PostNote)
