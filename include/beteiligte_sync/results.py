"""What one sync step did with one entity (EntityResult), and readable error texts."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from include.beteiligte_sync.errors import ApiError, BadResponse, EntityError
from include.beteiligte_sync.plan import Plan, render
from include.beteiligte_sync.status import Outcome

LOG = logging.getLogger("beteiligte_sync")


@dataclass
class EntityResult:
    """What one step did with one entity (JSON-serialisable via :meth:`to_dict` for XCom).

    :param outcome: one of :data:`OUTCOMES`.
    :param status: ``syncStatus`` written at the end (None if none was written).
    :param error: the message written to ``syncErrorMessage``, if any.
    :param needs_validation: something was written and the lock is still held for validation.
    :param plan_text: the rendered plan, personal values masked.
    """

    entity_id: str
    betnr: int | None
    outcome: str
    status: str | None = None
    error: str | None = None
    needs_validation: bool = False
    plan_text: str = ""
    kommunikation_changes: int = 0
    ops_applied: int = 0
    #: Set while ``needs_validation``: the token of our lock and the EspoCRM ``versionNumber``
    #: our last write left. Validation uses them to tell our own writes from a person's edit
    #: made while we held the lock.
    lock_token: str | None = None
    espocrm_version: int | None = None
    #: Advoware answered 404 a second time: marked at the end of the unit (confirm_deletions)
    confirm_deletion: bool = False
    #: what the plan noticed and mended (damaged markers, ...), without personal values
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for XCom."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EntityResult:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def describe_error(exc: BaseException) -> str:
    """A readable, value-free description for ``syncErrorMessage``."""
    if isinstance(exc, EntityError):
        return str(exc)
    if isinstance(exc, ApiError):
        parts = [type(exc).__name__]
        if exc.request:
            parts.append(exc.request)
        if exc.status is not None:
            parts.append(f"status {exc.status}")
        if exc.reason:
            parts.append(f"reason {exc.reason}")
        text = "API error: " + ", ".join(parts)
        if isinstance(exc, BadResponse) and exc.args:
            text += f" ({exc.args[0]})"  # what was wrong with the answer; never its content
        return text
    return f"internal error: {type(exc).__name__}"


def _unrecorded_failure(
    record: Mapping[str, Any], exc: ApiError, log: logging.Logger
) -> EntityResult:
    """A write that records the outcome failed (API down, token refused): the entity's status
    could not be written. Its lock, if one is held, goes stale after the TTL and is taken over;
    the run goes on with the other entities."""
    entity_id = str(record.get("id"))
    log.error("entity %s: could not record the outcome: %s", entity_id, type(exc).__name__)
    return EntityResult(
        entity_id, record.get("betnr"), Outcome.FAILED.value, error=describe_error(exc)
    )


def _result(plan: Plan, outcome: str, **kw: Any) -> EntityResult:
    return EntityResult(
        plan.entity_id,
        kw.pop("betnr", plan.betnr),
        outcome,
        plan_text=render(plan),
        kommunikation_changes=plan.kommunikation_changes,
        warnings=list(plan.warnings),
        **kw,
    )
