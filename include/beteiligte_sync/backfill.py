"""Selection for history runs (the ``beteiligte_backfill`` DAG).

A backfill interval selects every EspoCRM record created or modified within ``[start, end)``.
Across the whole history each party is therefore selected at least once (it was created at some
point). Changes made only in Advoware are found while syncing the selected entity (its ``rowId``
and Kommunikation hash are compared); the Advoware API of the contract has no "changed since"
listing to select by.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from include.beteiligte_sync.clients import EspoCrmClient
from include.beteiligte_sync.timefmt import format_espocrm


def interval_filter(start: datetime, end: datetime) -> list[dict[str, Any]]:
    """EspoCRM ``where[]``: created or modified within ``[start, end)`` (aware datetimes)."""
    if end <= start:
        raise ValueError("the interval end must lie after its start")
    lo, hi = format_espocrm(start), format_espocrm(end)

    def within(attribute: str) -> dict[str, Any]:
        return {
            "type": "and",
            "value": [
                # EspoCRM has no "on or after": "not before start" is written as an or.
                {
                    "type": "or",
                    "value": [
                        {"type": "after", "attribute": attribute, "value": lo},
                        {"type": "equals", "attribute": attribute, "value": lo},
                    ],
                },
                {"type": "before", "attribute": attribute, "value": hi},
            ],
        }

    return [{"type": "or", "value": [within("modifiedAt"), within("createdAt")]}]


def modified_between(
    espocrm: EspoCrmClient, start: datetime, end: datetime
) -> Iterator[dict[str, Any]]:
    """Yield ``{"id": ...}`` of every record created or modified within ``[start, end)``."""
    yield from espocrm.iter_beteiligte(
        interval_filter(start, end), select=["id"], order_by="createdAt", order="asc"
    )
