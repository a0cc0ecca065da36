"""The run summary: what a run did, per outcome, per failed entity, and in API calls.

Built from the plain result dicts the sync and validate steps return (so it works the same for a
DAG run, where the results travel through XCom, and for a direct loop in the CLI or benchmark).
Contains ids, counts and error messages, never names, phone numbers or emails.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include.beteiligte_sync.monitoring import mask_error_message

#: Report rows in display order: (key, label). Keys are the engine's outcomes plus ``resets``.
ROWS: tuple[tuple[str, str], ...] = (
    ("clean", "clean (validated)"),
    ("no_change", "no change"),
    ("created", "created in Advoware"),
    ("espocrm_newer", "updated in Advoware"),
    ("advoware_newer", "updated in EspoCRM"),
    ("merged", "updated on both sides"),
    ("conflict", "conflicts (EspoCRM won, noted)"),
    ("failed", "failed (will retry)"),
    ("permanently_failed", "permanently failed"),
    ("validation_failed", "validation failures"),
    ("deleted_in_advoware", "deleted in Advoware"),
    ("not_found_once", "not found in Advoware once (looked at again)"),
    ("not_found_unconfirmed", "not found, not marked (too many 404s)"),
    ("skipped_locked", "skipped: locked"),
    ("skipped_backoff", "skipped: backoff"),
    ("dry_run", "dry run (planned only)"),
    ("resets", "auto-resets (permanently failed -> failed)"),
)

#: Final entity statuses that count as failures in the report.
_FAILED_STATUSES = ("failed", "permanently_failed")


@dataclass
class RunReport:
    """Summary of one run."""

    counts: dict[str, int]
    failures: list[dict[str, Any]]
    api_calls: dict[str, int]
    entities: int
    warnings: list[str] = field(default_factory=list)
    #: per entity, what the sync noticed and mended (no alert): "entity <id>: <text>"
    notices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the report task's XCom)."""
        return asdict(self)

    def render(self) -> str:
        """A readable text table for the task log and the terminal (values in error messages
        masked: the log must not hold names, numbers or emails)."""
        width = max(len(label) for _, label in ROWS)
        lines = [f"Beteiligte sync report: {self.entities} entities", "-" * (width + 10)]
        known = {key for key, _ in ROWS}
        rows = [(label, self.counts.get(key, 0)) for key, label in ROWS]
        rows += [(key, n) for key, n in sorted(self.counts.items()) if key not in known]
        lines += [f"{label:<{width}}  {n:>7}" for label, n in rows]
        lines.append("-" * (width + 10))
        for system, n in sorted(self.api_calls.items()):
            lines.append(f"{'API calls ' + system:<{width}}  {n:>7}")
        if self.failures:
            lines.append("")
            lines.append(f"Entities that need attention ({len(self.failures)}):")
            for item in self.failures:
                betnr = item.get("betnr") or "-"
                error = mask_error_message(item.get("error")) or ""
                lines.append(f"  {item['entity_id']}  betnr {betnr}  {item['outcome']}: {error}")
        for warning in self.warnings:
            lines.append(f"WARNING: {warning}")
        if self.notices:
            lines.append("")
            lines.append(f"Noticed and mended ({len(self.notices)}):")
            lines += [f"  {notice}" for notice in self.notices]
        return "\n".join(lines)


def merge_results(
    sync_results: Iterable[Mapping[str, Any]], validate_results: Iterable[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """One final result per entity: the validate result replaces status/error of the sync one,
    and a validation failure becomes the entity's outcome."""
    merged: dict[str, dict[str, Any]] = {}
    for result in sync_results:
        merged[result["entity_id"]] = dict(result)
    for result in validate_results:
        entry = merged.setdefault(result["entity_id"], dict(result))
        entry["status"] = result.get("status")
        entry["error"] = result.get("error")
        entry["validated"] = result.get("outcome")
    return list(merged.values())


def build_report(
    results: Iterable[Mapping[str, Any]],
    *,
    resets: int = 0,
    api_calls: Mapping[str, int] | None = None,
    permanently_failed_threshold: int | None = None,
    validation_failure_threshold: int | None = None,
) -> RunReport:
    """Count outcomes of merged results (see :func:`merge_results`) into a :class:`RunReport`.

    Thresholds add a warning to the report when exceeded (operators alert on it).
    """
    counts: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    entities = 0
    notices: list[str] = []
    for result in results:
        entities += 1
        outcome = str(result.get("outcome"))
        notices += [f"entity {result['entity_id']}: {w}" for w in result.get("warnings") or []]
        counts[outcome] += 1
        validated = result.get("validated")
        if validated:
            counts[str(validated)] += 1
        status = result.get("status")
        if status in _FAILED_STATUSES and outcome not in _FAILED_STATUSES:
            counts[str(status)] += 1
        if status in _FAILED_STATUSES or outcome in _FAILED_STATUSES or result.get("error"):
            failures.append(
                {
                    "entity_id": result["entity_id"],
                    "betnr": result.get("betnr"),
                    "outcome": validated or outcome,
                    "status": status,
                    "error": result.get("error"),
                }
            )
    counts["resets"] = resets
    report = RunReport(
        counts=dict(counts),
        failures=failures,
        api_calls=dict(api_calls or {}),
        entities=entities,
        notices=notices,
    )
    _add_threshold_warnings(report, permanently_failed_threshold, validation_failure_threshold)
    return report


def _add_threshold_warnings(
    report: RunReport, permanently_failed: int | None, validation_failures: int | None
) -> None:
    unconfirmed = report.counts.get("not_found_unconfirmed", 0)
    if unconfirmed:
        report.warnings.append(
            f"{unconfirmed} parties answered 404 in Advoware where (almost) no party could be "
            "read: a wrong base URL or route? None was marked deleted_in_advoware"
        )
    pf = report.counts.get("permanently_failed", 0)
    if permanently_failed is not None and pf > permanently_failed:
        report.warnings.append(f"{pf} entities permanently failed (threshold {permanently_failed})")
    vf = report.counts.get("validation_failed", 0)
    if validation_failures is not None and vf > validation_failures:
        report.warnings.append(f"{vf} validation failures (threshold {validation_failures})")
