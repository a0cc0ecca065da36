"""What the CLI shows, as plain JSON-ready dicts, built from the engine's own functions.

Each ``*_view`` function reads through the engine's client protocols (the Airflow hooks in
production, anything protocol-shaped in tests) and returns data; :mod:`include.cli.output` turns
it into tables or JSON. Personal values (names, numbers, addresses, dates of birth, and the
values quoted in validation messages) are masked unless ``show_values`` is true; ids, betnr,
field names, kinds, statuses, counts and timestamps of the bookkeeping always show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from include.beteiligte_sync import compare as cmp
from include.beteiligte_sync import kommunikation as komm
from include.beteiligte_sync import mapping, planner, status
from include.beteiligte_sync import sync as engine
from include.beteiligte_sync.clients import AdvowareClient, EspoCrmClient, Record, WhereItem
from include.beteiligte_sync.errors import EntityError, NotFound
from include.beteiligte_sync.kommkz import DEFAULT_TABLE, EMAIL, Channel, normalise_value
from include.beteiligte_sync.markers import parse_bemerkung
from include.beteiligte_sync.monitoring import (
    CountingClient,
    MonitoringSettings,
    high_retry_where,
    mask_error_message,
    status_where,
)
from include.beteiligte_sync.plan import render
from include.beteiligte_sync.results import EntityResult, describe_error
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.status import Outcome, SyncStatus

#: The sync bookkeeping fields of CBeteiligte (SPEC §4), in display order.
BOOKKEEPING = (
    "syncStatus",
    "syncRetryCount",
    "syncNextRetry",
    "syncAutoResetAt",
    "syncErrorMessage",
    "syncLockedAt",
    "advowareLastSync",
    "advowareRowId",
    "syncedHash",
    "kommunikationHash",
    "modifiedAt",
    "versionNumber",
)
_MASK = "***"


def mask(value: Any, show_values: bool) -> Any:
    """``value`` itself when values are shown, else ``***`` (empty stays empty)."""
    if show_values or value in (None, ""):
        return value
    return _MASK


# --- resolving what the operator typed --------------------------------------------------------


class EntityNotFound(LookupError):
    """The id or betnr the operator gave matches no CBeteiligte."""


def find_entity(espocrm: EspoCrmClient, key: str) -> Record:
    """The CBeteiligte for ``key``: an EspoCRM id, or a betnr (digits only) looked up by
    ``betnr``. An id made of digits is tried as an id when no betnr matches."""
    key = key.strip()
    if key.isdigit():
        where: list[WhereItem] = [{"type": "equals", "attribute": "betnr", "value": int(key)}]
        found = list(espocrm.iter_beteiligte(where, limit=2))
        if len(found) > 1:
            raise EntityNotFound(f"betnr {key} is linked to more than one entity")
        if found:
            # List records carry no email and phone arrays: read the whole record.
            return espocrm.get_beteiligte(str(found[0]["id"]))
    try:
        return espocrm.get_beteiligte(key)
    except NotFound:
        raise EntityNotFound(f"no CBeteiligte with id or betnr {key!r}") from None


# --- compare ----------------------------------------------------------------------------------


@dataclass
class Planning:
    """What the engine would do now: the plan, or why there is none."""

    planned: planner.Planned | None = None
    skip: str | None = None
    error: str | None = None
    deleted: bool = False


def plan_now(
    record: Record,
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    direction: str,
    force: bool,
    now: datetime,
    settings: SyncSettings,
) -> Planning:
    """The engine's decision for ``record`` as a dry run would make it (no write anywhere):
    the very planning function the sync calls (:func:`include.beteiligte_sync.sync.plan_entity`)."""
    skip = engine.skip_reason(record, now, force, settings)
    if skip is Outcome.SKIPPED_LOCKED:
        return Planning(skip=skip.value)
    skipped = skip.value if skip else None
    try:
        planning = engine.plan_entity(
            record, espocrm, advoware, direction=direction, now=now, settings=settings
        )
    except NotFound:
        return Planning(skip=skipped, deleted=True)
    except Exception as exc:  # the engine would record exactly this on the entity
        return Planning(skip=skipped, error=describe_error(exc))
    return Planning(planned=planning.planned, skip=skipped)


def _field_rows(
    record: Mapping[str, Any], advo: Mapping[str, Any] | None, show_values: bool
) -> list[dict[str, Any]]:
    espo = _canonical(mapping.from_espocrm, record)
    other = _canonical(mapping.from_advoware, advo) if advo is not None else {}
    rows = []
    for name in mapping.FIELD_NAMES:
        a, b = espo.get(name), other.get(name)
        rows.append(
            {
                "field": name,
                "espocrm": mask(a, show_values),
                "advoware": mask(b, show_values) if advo is not None else None,
                "same": advo is not None and a == b,
            }
        )
    return rows


def _canonical(read: Any, record: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return dict(read(record))
    except EntityError:
        # Unreadable values are shown raw (the plan's error line says what is wrong).
        return {name: record.get(name) for name in mapping.FIELD_NAMES}


def _espo_values(record: Mapping[str, Any]) -> dict[tuple[Channel, str], dict[str, Any]]:
    out: dict[tuple[Channel, str], dict[str, Any]] = {}
    for channel, field_name, attr in (
        (EMAIL, "emailAddressData", "emailAddress"),
        ("phone", "phoneNumberData", "phoneNumber"),
    ):
        for item in record.get(field_name) or []:
            value = item.get(attr) if isinstance(item, Mapping) else None
            if isinstance(value, str) and value.strip():
                label = "email" if channel == EMAIL else f"phone {item.get('type') or 'Other'}"
                key = (channel, normalise_value(channel, value))
                out.setdefault(key, {"value": value, "label": label})
    return out


def _komm_state(
    tlf: str, marker_kind: str, base_key: Any, key: Any, espo: Mapping[Any, Any]
) -> str:
    """A person's reading of one Advoware entry against EspoCRM (the plan decides)."""
    if not tlf:
        if marker_kind == "slot":
            return "empty slot"
        if marker_kind == "value":
            return "removed in Advoware" if base_key in espo else "removed on both sides"
        return "empty, unmarked"
    if key in espo:
        if marker_kind == "value":
            return "in sync" if base_key == key else "in sync, marker outdated"
        return "equal, not yet marked"
    if marker_kind == "value" and base_key == key:
        return "removed in EspoCRM"
    if marker_kind == "value" and base_key in espo:
        return "changed in Advoware"
    if marker_kind == "value":
        return "changed on both sides"
    return "new in Advoware"


def kommunikation_rows(
    record: Mapping[str, Any], advo: Mapping[str, Any] | None, show_values: bool
) -> list[dict[str, Any]]:
    """Advoware entries matched with EspoCRM values by their marker, then EspoCRM-only values."""
    table = DEFAULT_TABLE
    espo = _espo_values(record)
    used: set[Any] = set()
    rows: list[dict[str, Any]] = []
    for entry in (advo or {}).get("kommunikation") or []:
        kommkz = komm.resolve_kommkz(entry, table=table)
        channel = table.channel(kommkz)
        parsed = parse_bemerkung(entry.get("bemerkung"), known_kommkz=table.kinds)
        tlf = entry.get("tlf") if isinstance(entry.get("tlf"), str) else ""
        tlf = tlf if tlf.strip() else ""
        row = {
            "komm_id": entry.get("id"),
            "kommKz": kommkz,
            "kind": table.name(kommkz),
            "marker": parsed.kind.value,
            "advoware": mask(tlf, show_values),
            "marker_value": mask(parsed.value, show_values),
            "espocrm": None,
            "state": "not synced (kind)",
        }
        if channel is not None:
            key = (channel, normalise_value(channel, tlf)) if tlf else None
            base = parsed.value if parsed.is_value else None
            base_key = (channel, normalise_value(channel, base)) if base else None
            row["state"] = _komm_state(tlf, parsed.kind.value, base_key, key, espo)
            match = key if key in espo else base_key if base_key in espo else None
            if match is not None:
                used.add(match)
                row["espocrm"] = mask(espo[match]["value"], show_values)
        rows.append(row)
    for key, item in espo.items():
        if key not in used:
            rows.append(
                {
                    "komm_id": None,
                    "kommKz": None,
                    "kind": item["label"],
                    "marker": None,
                    "advoware": None,
                    "marker_value": None,
                    "espocrm": mask(item["value"], show_values),
                    "state": "new in EspoCRM" if advo is not None else "not in Advoware yet",
                }
            )
    return rows


def _bookkeeping(
    record: Mapping[str, Any], advo: Mapping[str, Any] | None, show_values: bool
) -> dict[str, Any]:
    out = {name: record.get(name) for name in BOOKKEEPING}
    out["syncErrorMessage"] = (
        out["syncErrorMessage"] if show_values else mask_error_message(out["syncErrorMessage"])
    )
    baseline = cmp.has_baseline(record)
    out["baseline"] = baseline
    if advo is not None:
        out["advoware_rowId"] = advo.get("rowId")
        out["advoware_geaendertAm"] = advo.get("geaendertAm")
    # "Changed since the last success" only means something when there was one.
    out["espocrm_changed_since_baseline"] = None
    out["advoware_changed_since_baseline"] = None
    out["kommunikation_changed_since_baseline"] = None
    if not baseline:
        return out
    if advo is not None:
        out["advoware_changed_since_baseline"] = advo.get("rowId") != record.get("advowareRowId")
        stored = record.get("kommunikationHash")
        current = komm.kommunikation_hash(advo.get("kommunikation") or [])
        out["kommunikation_changed_since_baseline"] = bool(stored) and stored != current
    try:
        now_hash = mapping.business_hash(mapping.from_espocrm(record))
        out["espocrm_changed_since_baseline"] = now_hash != record.get("syncedHash")
    except EntityError:
        pass  # unreadable values: the plan's error line says which
    return out


def _plan_dict(planning: Planning, betnr: Any, show_values: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"skip": planning.skip, "error": None, "outcome": None, "ops": 0}
    if planning.deleted:
        out["outcome"] = Outcome.NOT_FOUND_ONCE.value
        out["text"] = (
            f"Advoware party {betnr} not found (404): a second look in a later run marks it "
            "deleted_in_advoware; nothing is deleted"
        )
    elif planning.error is not None:
        out["outcome"] = Outcome.FAILED.value
        out["error"] = planning.error if show_values else mask_error_message(planning.error)
        out["text"] = f"would fail: {out['error']}"
    elif planning.planned is not None:
        plan = planning.planned.plan
        out.update(
            outcome=plan.outcome,
            ops=len(plan.ops),
            text=render(plan, show_values=show_values),
            kommunikation_changes=plan.kommunikation_changes,
            warnings=list(plan.warnings),
        )
    else:
        out["text"] = f"would skip: {planning.skip}"
    return out


def compare_view(
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    key: str,
    *,
    now: datetime,
    settings: SyncSettings,
    direction: str = "both",
    force: bool = False,
    show_values: bool = False,
) -> dict[str, Any]:
    """Both records field by field, the Kommunikationen matched by marker, the differences, the
    plan the engine would make now, and the sync bookkeeping."""
    planner.check_direction(direction)
    record = find_entity(espocrm, key)
    betnr = record.get("betnr")
    advo: Record | None = None
    advoware_note = "not linked (no betnr): the sync would create the party in Advoware"
    if betnr:
        try:
            advo = advoware.get_beteiligte(int(betnr))
            advoware_note = ""
        except NotFound:
            advoware_note = f"Advoware party {betnr} not found (404)"
    planning = plan_now(
        record, espocrm, advoware, direction=direction, force=force, now=now, settings=settings
    )
    fields = _field_rows(record, advo, show_values)
    differences = planner.differences(record, advo) if advo is not None else []
    return {
        "entity_id": record["id"],
        "betnr": betnr,
        "kind": _kind(record),
        "advoware_note": advoware_note,
        "fields": fields,
        "kommunikation": kommunikation_rows(record, advo, show_values),
        "differences": [_difference(d, show_values) for d in differences],
        "in_sync": advo is not None and not differences,
        "plan": _plan_dict(planning, betnr, show_values),
        "bookkeeping": _bookkeeping(record, advo, show_values),
    }


def _kind(record: Mapping[str, Any]) -> str:
    return "company" if record.get("rechtsform") else "person"


def _difference(text: str, show_values: bool) -> str:
    if show_values:
        return text
    masked = mask_error_message("Validation failed: " + text) or ""
    return masked.removeprefix("Validation failed: ")


# --- status -----------------------------------------------------------------------------------


class StatusClient(EspoCrmClient, CountingClient, Protocol):
    """EspoCRM client that can also count (the hook does)."""


_LIST_SELECT = [
    "id",
    "betnr",
    "syncStatus",
    "syncRetryCount",
    "syncNextRetry",
    "syncAutoResetAt",
    "syncErrorMessage",
    "advowareLastSync",
]


def _listed(
    espocrm: EspoCrmClient,
    where: Sequence[WhereItem],
    order_by: str,
    order: str,
    limit: int,
    show_values: bool,
) -> list[dict[str, Any]]:
    records = espocrm.iter_beteiligte(
        where, select=_LIST_SELECT, order_by=order_by, order=order, limit=limit
    )
    out = []
    for record in records:
        row = {name: record.get(name) for name in _LIST_SELECT}
        if not show_values:
            row["syncErrorMessage"] = mask_error_message(row["syncErrorMessage"])
        out.append(row)
    return out


def status_view(
    espocrm: StatusClient,
    *,
    settings: SyncSettings,
    monitoring: MonitoringSettings,
    show_values: bool = False,
) -> dict[str, Any]:
    """Counts per ``syncStatus``, high retry counts, the permanently failed with reset times and
    last errors, and the clean entity checked longest ago; plus threshold warnings."""
    counts = {s.value: espocrm.count_beteiligte(status_where(s)) for s in SyncStatus}
    counts["(none)"] = espocrm.count_beteiligte(status_where(None))
    limit = monitoring.list_limit
    high_retry = _listed(
        espocrm,
        high_retry_where(monitoring.high_retry_count),
        "syncRetryCount",
        "desc",
        limit,
        show_values,
    )
    permanently_failed = _listed(
        espocrm,
        status_where(SyncStatus.PERMANENTLY_FAILED),
        "syncAutoResetAt",
        "asc",
        limit,
        show_values,
    )
    oldest = _listed(
        espocrm, status_where(SyncStatus.CLEAN), "advowareLastSync", "asc", 1, show_values
    )
    warnings = []
    pf = counts[SyncStatus.PERMANENTLY_FAILED.value]
    if pf > settings.alert_permanently_failed:
        warnings.append(
            f"{pf} entities permanently failed (threshold {settings.alert_permanently_failed})"
        )
    return {
        "total": sum(counts.values()),
        "counts": counts,
        "high_retry_threshold": monitoring.high_retry_count,
        "high_retry_count": espocrm.count_beteiligte(high_retry_where(monitoring.high_retry_count)),
        "high_retry": high_retry,
        "permanently_failed": permanently_failed,
        "oldest_clean": oldest[0] if oldest else None,
        "warnings": warnings,
    }


# --- sync and reset ---------------------------------------------------------------------------


def result_dict(result: EntityResult, show_values: bool) -> dict[str, Any]:
    """An :class:`EntityResult` for output, its error masked unless ``show_values``."""
    out = result.to_dict()
    if not show_values:
        out["error"] = mask_error_message(out.get("error"))
    return out


def reset_entity(espocrm: EspoCrmClient, record: Record) -> dict[str, Any]:
    """Put a ``permanently_failed`` entity back in the queue (status ``failed``, count 0, no
    backoff): the engine's own reset, written with the record's version number."""
    fields = status.reset(record)  # TransitionError for any other status
    updated = espocrm.update_beteiligte(
        str(record["id"]), fields, version_number=record.get("versionNumber")
    )
    return {
        "entity_id": record["id"],
        "betnr": record.get("betnr"),
        "previous_status": record.get("syncStatus"),
        "status": updated.get("syncStatus"),
        "syncRetryCount": updated.get("syncRetryCount"),
    }


def link_entity(
    espocrm: EspoCrmClient, advoware: AdvowareClient, record: Record, betnr: int | None
) -> dict[str, Any]:
    """A person's decision for an entity without betnr, typically after an interrupted create:
    link it to the existing Advoware party ``betnr`` (checked to exist), or, with ``None``,
    allow the next run to create it. Written with the record's version number."""
    if betnr is None:
        fields = status.allow_create(record)
    else:
        try:
            advoware.get_beteiligte(betnr)
        except NotFound:
            raise EntityNotFound(f"Advoware has no party with betNr {betnr}") from None
        fields = status.link(record, betnr)
    updated = espocrm.update_beteiligte(
        str(record["id"]), fields, version_number=record.get("versionNumber")
    )
    return {
        "entity_id": record["id"],
        "betnr": updated.get("betnr"),
        "previous_status": record.get("syncStatus"),
        "status": updated.get("syncStatus"),
    }
