"""Splitting a run's candidates into work units for Airflow's dynamic task mapping.

One code path for small and large runs. While there are no more candidates than ``max_units``,
every unit holds one entity (one mapped task instance per entity, labelled with its id in the
UI). Beyond that, the candidates are dealt into ``batches`` units, by default one per slot of the
``advoware_api`` pool (:data:`API_CONCURRENCY`): each task instance costs about a second of
scheduler and worker start-up, so one well-filled batch per slot runs all batches in a single
round of task starts instead of several.

Why one batch per slot is also the concurrency bound: a sync or validate task instance makes its
API calls one after another, and it runs only while it holds a pool slot. So at most
``API_CONCURRENCY`` calls per API are in flight across every running ``beteiligte_*`` DAG run
and every worker, which is what the pools promise. Candidates are dealt round-robin (unit ``k``
gets candidates ``k, k + n, k + 2n, ...``) so each batch gets its share of expensive changes and
cheap re-checks alike, and no batch runs long after the others have finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict

#: Bound on one-entity units: up to this many candidates, each gets its own mapped task instance.
DEFAULT_MAX_UNITS = 16

#: Concurrent API calls per API: the slots of the ``espocrm_api`` and ``advoware_api`` pools
#: (created by ``include/tools/setup_airflow.py``) and the number of batches of a large run.
API_CONCURRENCY = 4


class WorkUnit(TypedDict):
    """One mapped task instance's share of the run: ids only, never personal data."""

    label: str
    entity_ids: list[str]
    #: validation units only: per entity, what its sync step left (lock token, version, ...).
    written: NotRequired[dict[str, dict[str, Any]]]


def split_into_units(
    entity_ids: Sequence[str],
    max_units: int = DEFAULT_MAX_UNITS,
    batches: int | None = None,
) -> list[WorkUnit]:
    """Cut ``entity_ids`` into work units.

    :param max_units: up to this many (distinct) candidates, one unit per entity.
    :param batches: number of units beyond that (default: ``max_units``); candidates are
        dealt round-robin, so unit sizes differ by at most one and each unit keeps the
        candidates' order (oldest change first).
    """
    if max_units < 1 or (batches is not None and batches < 1):
        raise ValueError("max_units and batches must be at least 1")
    ids = list(dict.fromkeys(entity_ids))  # drop duplicates, keep order
    if not ids:
        return []
    if len(ids) <= max_units:
        return [{"label": f"entity {i}", "entity_ids": [i]} for i in ids]
    count = min(batches or max_units, len(ids))
    chunks = [ids[k::count] for k in range(count)]
    return [
        {"label": _label(n, chunk, len(chunks)), "entity_ids": chunk}
        for n, chunk in enumerate(chunks)
    ]


def _label(n: int, chunk: list[str], total: int) -> str:
    if len(chunk) == 1:
        return f"entity {chunk[0]}"
    return f"batch {n + 1}/{total} ({len(chunk)} entities)"
