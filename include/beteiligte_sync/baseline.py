"""The per-field baseline: the Stammdaten as both sides last held them, field by field.

Stored as JSON in the EspoCRM text field ``syncBaseline`` (beside ``syncedHash``, which is its
hash). Deciding per field which side changed since the last sync lets two people edit different
fields without a conflict, and lets every decision and every Note say who changed what (SPEC §6).

Our own writes must never look like a person's change on the next run, even when the run dies
between a write and its validation. So the lock write records the values it is about to send to
Advoware as ``pending``; a later run that finds Advoware holding a pending value knows the write
landed and counts that value as synced. Where Advoware holds neither the old nor the pending
value, a person typed it: that is a change in Advoware.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from include.beteiligte_sync.mapping import FIELD_NAMES, Canonical

#: EspoCRM text field holding the baseline JSON (``docs/espocrm/entityDefs``).
BASELINE_FIELD = "syncBaseline"


@dataclass(frozen=True)
class Baseline:
    """What ``syncBaseline`` holds.

    :param values: the synced Stammdaten (canonical form), or None where none is recorded (a
        record synced before per-field baselines, or a field the firm has not added yet).
    :param pending: values a write of ours was sending to Advoware when the lock was taken.
    """

    values: Canonical | None
    pending: Canonical = field(default_factory=dict)
    #: fingerprint of the conflict Note already posted for the current differences
    noted: str | None = None
    #: when Advoware first answered 404 for the party (a second look in a later run decides)
    gone: str | None = None
    #: our write of the pending values is known to have succeeded (its answer came)
    landed: bool = False
    #: what Advoware held in the pending fields when the write was planned
    before: Canonical = field(default_factory=dict)


def read(record: Mapping[str, Any]) -> Baseline:
    """The record's baseline; anything unreadable counts as none recorded (never an error: the
    hash baseline and the timestamps still decide)."""
    raw = record.get(BASELINE_FIELD)
    if not isinstance(raw, str) or not raw:
        return Baseline(None)
    try:
        data = json.loads(raw)
    except ValueError:
        return Baseline(None)
    if not isinstance(data, dict):
        return Baseline(None)
    noted = data.get("noted") if isinstance(data.get("noted"), str) else None
    gone = data.get("gone") if isinstance(data.get("gone"), str) else None
    return Baseline(
        _canonical(data.get("values")),
        _partial(data.get("pending")),
        noted,
        gone,
        data.get("landed") is True,
        _partial(data.get("before")),
    )


def _canonical(value: object) -> Canonical | None:
    if not isinstance(value, dict):
        return None
    return {
        name: value.get(name) if isinstance(value.get(name), str) else None for name in FIELD_NAMES
    }


def _partial(value: object) -> Canonical:
    """Only the fields a pending write names (a missing field is not a pending empty value)."""
    if not isinstance(value, dict):
        return {}
    return {
        name: value[name] if isinstance(value[name], str) else None
        for name in FIELD_NAMES
        if name in value
    }


def render(
    values: Mapping[str, Any] | None,
    pending: Mapping[str, Any] | None = None,
    noted: str | None = None,
    gone: str | None = None,
    landed: bool = False,
    before: Mapping[str, Any] | None = None,
) -> str:
    """The JSON text for ``syncBaseline`` (compact, stable key order)."""
    data: dict[str, Any] = {
        "values": None if values is None else {name: values.get(name) for name in FIELD_NAMES}
    }
    if gone:
        data["gone"] = gone
    if pending:
        data["pending"] = {name: pending[name] for name in FIELD_NAMES if name in pending}
        if landed:
            data["landed"] = True
        if before:
            data["before"] = {name: before[name] for name in FIELD_NAMES if name in pending}
    if noted:
        data["noted"] = noted
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def with_noted(record: Mapping[str, Any], noted: str) -> str | None:
    """The record's ``syncBaseline`` with ``noted`` added (None where it holds no values)."""
    current = read(record)
    if current.values is None:
        return None
    return dump(replace(current, noted=noted))


def with_gone(record: Mapping[str, Any], gone: str) -> str:
    """The record's ``syncBaseline`` noting that Advoware answered 404 at ``gone``."""
    return dump(replace(read(record), gone=gone))


def dump(baseline: Baseline) -> str:
    """The JSON text of a whole :class:`Baseline` (see :func:`render`)."""
    return render(
        baseline.values,
        baseline.pending,
        baseline.noted,
        baseline.gone,
        baseline.landed,
        baseline.before,
    )


def fingerprint(note: str) -> str:
    """A short fingerprint of a Note's text: the same conflict gives the same Note."""
    return hashlib.sha256(note.encode("utf-8")).hexdigest()[:16]


def effective(baseline: Baseline, advoware: Canonical, *, landed: bool = False) -> Canonical | None:
    """The synced values as they are now: a pending value Advoware holds landed (our write),
    so it counts as synced. Where our write is known to have succeeded (``landed``), a pending
    value also counts where Advoware no longer holds the old one: a person changed it after
    our write. Where Advoware still holds the old value, our write did not take (Advoware
    ignored the field): the old value stays the synced one."""
    if baseline.values is None:
        return None
    landed = landed or baseline.landed
    out = dict(baseline.values)
    for name, value in baseline.pending.items():
        current = advoware.get(name)
        held_before = baseline.before.get(name, baseline.values.get(name))
        if current == value or (landed and current != held_before):
            out[name] = value
    return out


def after_check(
    baseline: Baseline, espocrm: Canonical, advoware: Canonical, *, landed: bool = False
) -> dict[str, str | None]:
    """The values to record after a check of both sides: a field both sides hold equally is
    synced; any other keeps what was synced before (with our landed writes), so the next run
    sees exactly the changes people made, never our own writes.

    :param landed: our write of the pending values is known to have succeeded (its answer
        came): they count as synced even where a person changed Advoware again since.
    """
    base = effective(baseline, advoware, landed=landed) or {}
    return {
        name: espocrm.get(name) if espocrm.get(name) == advoware.get(name) else base.get(name)
        for name in FIELD_NAMES
    }


def promote(record: Mapping[str, Any]) -> str | None:
    """The record's ``syncBaseline`` marked: our write of its pending values succeeded (None
    where it holds no pending values)."""
    current = read(record)
    if current.values is None or not current.pending:
        return None
    return dump(replace(current, landed=True))
