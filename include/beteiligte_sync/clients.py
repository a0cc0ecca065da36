"""The client interface the engine talks through.

The Airflow hooks in ``plugins/hooks`` implement these protocols over HTTP; tests implement
them in memory. The engine imports only this module, never a hook.

Records are plain ``dict`` objects exactly as the APIs return them (EspoCRM ``CBeteiligte``
and Advoware ``Beteiligte`` JSON, see SPEC §4-§5). Every method raises the typed errors of
:mod:`include.beteiligte_sync.errors` (``NotFound``, ``Conflict``, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

Record = dict[str, Any]
#: One EspoCRM ``where[]`` item, e.g. ``{"type": "equals", "attribute": "syncStatus",
#: "value": "dirty"}``; ``or``/``and`` items carry a list of items as ``value``.
WhereItem = Mapping[str, Any]


@runtime_checkable
class EspoCrmClient(Protocol):
    """What the engine needs from EspoCRM (entity type ``CBeteiligte``)."""

    def iter_beteiligte(
        self,
        where: Sequence[WhereItem] = (),
        *,
        select: Sequence[str] | None = None,
        order_by: str | None = None,
        order: str = "asc",
        limit: int | None = None,
    ) -> Iterator[Record]:
        """Yield all matching records page by page (never more than 200 per request)."""
        ...

    def get_beteiligte(self, entity_id: str) -> Record:
        """Return one record; ``NotFound`` if it does not exist."""
        ...

    def update_beteiligte(
        self, entity_id: str, data: Mapping[str, Any], *, version_number: int | None = None
    ) -> Record:
        """Partially update a record and return it in full.

        With ``version_number`` the write only succeeds if the record still has that
        ``versionNumber``; otherwise ``Conflict`` (reason ``modified``).
        """
        ...

    def post_note(self, entity_id: str, text: str) -> Record:
        """Post a stream note (``type=Post``) on the record."""
        ...


@runtime_checkable
class AdvowareClient(Protocol):
    """What the engine needs from Advoware."""

    def get_beteiligte(self, betnr: int) -> Record:
        """Return one party including its ``kommunikation`` list; ``NotFound`` if unknown."""
        ...

    def find_beteiligte(self, name: str) -> list[Record] | None:
        """Return the parties whose ``name`` equals ``name`` (used to recover an interrupted
        create: see the engine's create step), or ``None`` where Advoware offers no search
        (no search endpoint is confirmed for the real API: an optional capability)."""
        ...

    def create_beteiligte(self, data: Mapping[str, Any]) -> Record:
        """Create a party; the answer carries only the new ``betNr`` (read the party back)."""
        ...

    def update_beteiligte(self, betnr: int, data: Mapping[str, Any]) -> Record:
        """Update a party's own fields; the answer carries only the ``betNr``."""
        ...

    def create_kommunikation(self, betnr: int, data: Mapping[str, Any]) -> Record:
        """Create a Kommunikation (``tlf``, ``bemerkung``, ``kommKz``, ``online``)."""
        ...

    def update_kommunikation(self, betnr: int, komm_id: int, data: Mapping[str, Any]) -> Record:
        """Change ``tlf``, ``bemerkung``, ``online`` of a Kommunikation (``kommKz``: read-only)."""
        ...
