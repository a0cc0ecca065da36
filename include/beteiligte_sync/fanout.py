"""Splitting a run's candidates into work units for Airflow's dynamic task mapping.

One code path for small and large runs: candidates are cut into at most ``max_units`` units of
equal size. While there are no more candidates than ``max_units``, every unit holds one entity (one
mapped task instance per entity, labelled with its id in the UI); beyond that, units become batches
so the number of task instances stays bounded (Airflow spends roughly a second of scheduler work per
task instance and refuses more than ``[core] max_map_length`` mapped instances).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

#: Default bound on mapped task instances per mapped task and run (far below max_map_length 1024:
#: each task instance costs about a second of scheduler and worker start-up, so a few well-filled
#: batches beat many small ones once a run has more than a handful of entities).
DEFAULT_MAX_UNITS = 16


class WorkUnit(TypedDict):
    """One mapped task instance's share of the run: ids only, never personal data."""

    label: str
    entity_ids: list[str]


def split_into_units(
    entity_ids: Sequence[str], max_units: int = DEFAULT_MAX_UNITS
) -> list[WorkUnit]:
    """Cut ``entity_ids`` into at most ``max_units`` units of (nearly) equal size, order kept."""
    if max_units < 1:
        raise ValueError("max_units must be at least 1")
    ids = list(dict.fromkeys(entity_ids))  # drop duplicates, keep order
    if not ids:
        return []
    size = math.ceil(len(ids) / max_units)
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    return [
        {"label": _label(n, chunk, len(chunks)), "entity_ids": chunk}
        for n, chunk in enumerate(chunks)
    ]


def _label(n: int, chunk: list[str], total: int) -> str:
    if len(chunk) == 1:
        return f"entity {chunk[0]}"
    return f"batch {n + 1}/{total} ({len(chunk)} entities)"
