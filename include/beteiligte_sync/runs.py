"""Runs: the reset of due permanently failed entities, candidate selection, and the unit
runner the DAG tasks, the CLI and the benchmark share.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from include.beteiligte_sync import status
from include.beteiligte_sync.bookkeeping import confirm_deletions
from include.beteiligte_sync.clients import AdvowareClient, EspoCrmClient, Record, WhereItem
from include.beteiligte_sync.entity import sync_entity
from include.beteiligte_sync.errors import Conflict
from include.beteiligte_sync.options import RunOptions, SyncContext
from include.beteiligte_sync.results import LOG, EntityResult
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.status import Outcome, SyncStatus
from include.beteiligte_sync.timefmt import Clock, format_espocrm
from include.beteiligte_sync.validation import validate_in


def reset_due_permanently_failed(
    espocrm: EspoCrmClient, *, clock: Clock, settings: SyncSettings | None = None
) -> list[str]:
    """Give ``permanently_failed`` entities whose ``syncAutoResetAt`` has passed another chance
    (status ``failed``, retry count 0; seed #12). Returns the ids reset."""
    now = clock()
    where: list[WhereItem] = [
        {"type": "equals", "attribute": "syncStatus", "value": SyncStatus.PERMANENTLY_FAILED.value},
        {
            "type": "or",
            "value": [
                {"type": "before", "attribute": "syncAutoResetAt", "value": format_espocrm(now)},
                {"type": "isNull", "attribute": "syncAutoResetAt"},
            ],
        },
    ]
    select = ["id", "syncStatus", "syncAutoResetAt", "versionNumber"]
    # Collected first: writing while paging through the same filter would skip records.
    due = [r for r in espocrm.iter_beteiligte(where, select=select) if status.reset_due(r, now)]
    done = []
    for record in due:
        try:
            espocrm.update_beteiligte(
                str(record["id"]), status.reset(record), version_number=record.get("versionNumber")
            )
        except Conflict:
            continue  # changed meanwhile; the next run looks again
        done.append(str(record["id"]))
    LOG.info("auto-reset %d permanently_failed entities", len(done))
    return done


def candidate_filters(*, clock: Clock, settings: SyncSettings | None = None) -> list[WhereItem]:
    """Server-side ``where`` of the scheduled run: new, changed, failed with backoff over, and
    stale locks. (Clean entities are re-checked separately, oldest check first.)"""
    settings = settings or SyncSettings()
    now = clock()
    stale_before = format_espocrm(now - settings.lock_ttl)

    def due(attribute: str, before: str) -> WhereItem:
        return {
            "type": "or",
            "value": [
                {"type": "isNull", "attribute": attribute},
                {"type": "before", "attribute": attribute, "value": before},
            ],
        }

    def status_is(value: SyncStatus) -> WhereItem:
        return {"type": "equals", "attribute": "syncStatus", "value": value.value}

    return [
        {
            "type": "or",
            "value": [
                {"type": "in", "attribute": "syncStatus", "value": ["pending_sync", "dirty"]},
                {
                    "type": "and",
                    "value": [
                        status_is(SyncStatus.FAILED),
                        due("syncNextRetry", format_espocrm(now)),
                    ],
                },
                {
                    "type": "and",
                    "value": [status_is(SyncStatus.SYNCING), due("syncLockedAt", stale_before)],
                },
            ],
        }
    ]


def clean_filters() -> list[WhereItem]:
    """``where`` of the clean entities re-checked for changes made in Advoware."""
    return [{"type": "equals", "attribute": "syncStatus", "value": SyncStatus.CLEAN.value}]


def select_candidates(
    espocrm: EspoCrmClient,
    *,
    clock: Clock,
    settings: SyncSettings | None = None,
    entity_ids: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[Record]:
    """The EspoCRM records one run works on.

    With ``entity_ids`` (manual run): exactly those, in that order. Otherwise the candidates of
    :func:`candidate_filters` (oldest change first) plus a bounded share of ``clean`` entities
    not checked for the longest time.
    """
    settings = settings or SyncSettings()
    if entity_ids:
        where: list[WhereItem] = [{"type": "in", "attribute": "id", "value": list(entity_ids)}]
        found = {str(r["id"]): r for r in espocrm.iter_beteiligte(where)}
        return [found[i] for i in entity_ids if i in found]
    if limit is not None:
        clean_quota = int(limit * settings.clean_share)
        work_limit: int | None = limit - clean_quota
    else:
        clean_quota, work_limit = settings.clean_batch, None
    work = list(
        espocrm.iter_beteiligte(
            candidate_filters(clock=clock, settings=settings),
            order_by="modifiedAt",
            order="asc",
            limit=work_limit,
        )
    )
    if work_limit is not None:
        clean_quota += work_limit - len(work)  # unused capacity goes to the re-checks
    if clean_quota <= 0:
        return work
    clean = espocrm.iter_beteiligte(
        clean_filters(), order_by="advowareLastSync", order="asc", limit=clean_quota
    )
    return work + list(clean) + _deleted_to_recheck(espocrm, clock(), settings)


def _deleted_to_recheck(
    espocrm: EspoCrmClient, now: datetime, settings: SyncSettings
) -> list[Record]:
    """A few ``deleted_in_advoware`` parties not looked at for days: one restored in Advoware
    comes back."""
    if settings.deleted_recheck_batch <= 0:
        return []
    before = format_espocrm(now - timedelta(days=settings.deleted_recheck_days))
    where: list[WhereItem] = [
        {
            "type": "equals",
            "attribute": "syncStatus",
            "value": SyncStatus.DELETED_IN_ADVOWARE.value,
        },
        {
            "type": "or",
            "value": [
                {"type": "isNull", "attribute": "advowareLastSync"},
                {"type": "before", "attribute": "advowareLastSync", "value": before},
            ],
        },
    ]
    return list(
        espocrm.iter_beteiligte(
            where, order_by="advowareLastSync", order="asc", limit=settings.deleted_recheck_batch
        )
    )


def sync_all(
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    clock: Clock,
    settings: SyncSettings | None = None,
    direction: str = "both",
    force: bool = False,
    dry_run: bool = False,
    entity_ids: Sequence[str] | None = None,
    limit: int | None = None,
    log: logging.Logger = LOG,
) -> list[EntityResult]:
    """A whole run in one loop (CLI, benchmark): reset, select, sync and validate each entity."""
    options = RunOptions.of(direction, force=force, dry_run=dry_run)
    ctx = SyncContext(espocrm, advoware, clock, settings or SyncSettings(), log)
    if not dry_run:
        reset_due_permanently_failed(espocrm, clock=clock, settings=ctx.settings)
    candidates = select_candidates(
        espocrm, clock=clock, settings=ctx.settings, entity_ids=entity_ids, limit=limit
    )
    return _sync_each(((str(r["id"]), r) for r in candidates), ctx, options, validate_inline=True)


#: Ids per list call when a unit fetches its records (EspoCRM's maxSize limit; the hook cuts
#: the ``in`` filter further where the request line would be too long).
UNIT_PAGE = 200


def records_by_id(espocrm: EspoCrmClient, entity_ids: Sequence[str]) -> dict[str, Record]:
    """The list records of ``entity_ids``, one list call per :data:`UNIT_PAGE` ids."""
    found: dict[str, Record] = {}
    for start in range(0, len(entity_ids), UNIT_PAGE):
        where: list[WhereItem] = [
            {"type": "in", "attribute": "id", "value": list(entity_ids[start : start + UNIT_PAGE])}
        ]
        found.update((str(r["id"]), r) for r in espocrm.iter_beteiligte(where))
    return found


def sync_unit(
    entity_ids: Sequence[str],
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    clock: Clock,
    settings: SyncSettings | None = None,
    direction: str = "both",
    force: bool = False,
    dry_run: bool = False,
    validate_inline: bool = False,
    log: logging.Logger = LOG,
) -> list[EntityResult]:
    """One work unit, the way every run works: fetch the records page by page, sync each.

    The DAG's mapped ``sync`` task, the CLI and the benchmark all run this. Written entities
    wait, locked, for their validation (``validate_inline`` does it right after each write).
    A unit that runs long (a third of the lock TTL) validates what it wrote so far at once and
    every later entity right after its write, so no lock it holds runs past its TTL unnoticed.
    """
    options = RunOptions.of(direction, force=force, dry_run=dry_run)
    ctx = SyncContext(espocrm, advoware, clock, settings or SyncSettings(), log)
    return _sync_each(_paged(entity_ids, espocrm), ctx, options, validate_inline=validate_inline)


def _paged(
    entity_ids: Sequence[str], espocrm: EspoCrmClient
) -> Iterator[tuple[str, Record | None]]:
    """Each id with its list record (None if EspoCRM has none), fetched a page at a time."""
    for start in range(0, len(entity_ids), UNIT_PAGE):
        page = list(entity_ids[start : start + UNIT_PAGE])
        records = records_by_id(espocrm, page)
        for entity_id in page:
            yield entity_id, records.pop(entity_id, None)


def _sync_each(
    records: Iterable[tuple[str, Record | None]],
    ctx: SyncContext,
    options: RunOptions,
    *,
    validate_inline: bool,
) -> list[EntityResult]:
    """Sync each record in turn; a run that grows long validates what it wrote so far at once
    and every later entity right after its write; deletions confirmed at the end."""
    started = time.monotonic()
    results: list[EntityResult] = []
    for entity_id, record in records:
        if record is None:
            ctx.log.warning("entity %s: not found in EspoCRM", entity_id)
            gone = "not found in EspoCRM"
            results.append(EntityResult(entity_id, None, Outcome.FAILED.value, error=gone))
            continue
        if not validate_inline and _late(started, ctx):
            validate_inline = True
            results = [validate_in(r, ctx, options.direction) for r in results]
        results.append(
            sync_entity(
                record,
                ctx.espocrm,
                ctx.advoware,
                clock=ctx.clock,
                settings=ctx.settings,
                validate_inline=validate_inline,
                log=ctx.log,
                options=options,
            )
        )
    return confirm_deletions(
        results, ctx.espocrm, clock=ctx.clock, settings=ctx.settings, log=ctx.log
    )


def _late(started: float, ctx: SyncContext) -> bool:
    """A third of the lock TTL has passed since the unit started."""
    return time.monotonic() - started > ctx.settings.lock_ttl.total_seconds() / 3
