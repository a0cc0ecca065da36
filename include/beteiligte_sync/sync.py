"""The engine's public API, in one place: what the DAGs, the CLI and the benchmark call.

* one entity: :func:`sync_entity` (:mod:`.entity`), planned by :func:`plan_entity`
  (:mod:`.prepare`), checked by :func:`validate_entity` (:mod:`.validation`);
* a run: :func:`select_candidates`, :func:`sync_unit`, :func:`sync_all` (:mod:`.runs`);
* what a step did: :class:`EntityResult` (:mod:`.results`).
"""

from __future__ import annotations

from include.beteiligte_sync.bookkeeping import confirm_deletions
from include.beteiligte_sync.entity import definitely_not_done, sync_entity
from include.beteiligte_sync.prepare import Planning, plan_entity, skip_reason
from include.beteiligte_sync.results import LOG, EntityResult, describe_error
from include.beteiligte_sync.runs import (
    candidate_filters,
    clean_filters,
    records_by_id,
    reset_due_permanently_failed,
    select_candidates,
    sync_all,
    sync_unit,
)
from include.beteiligte_sync.status import OUTCOMES
from include.beteiligte_sync.timefmt import Clock
from include.beteiligte_sync.validation import validate_entity, validate_written

__all__ = [
    "LOG",
    "OUTCOMES",
    "Clock",
    "EntityResult",
    "Planning",
    "candidate_filters",
    "clean_filters",
    "confirm_deletions",
    "definitely_not_done",
    "describe_error",
    "plan_entity",
    "records_by_id",
    "reset_due_permanently_failed",
    "select_candidates",
    "skip_reason",
    "sync_all",
    "sync_entity",
    "sync_unit",
    "validate_entity",
    "validate_written",
]
