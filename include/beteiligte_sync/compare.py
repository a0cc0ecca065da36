"""Change detection (SPEC §6): which side changed since the last success, and who wins.

With a baseline (``syncedHash`` + ``advowareRowId`` stored at the last success) the decision
never looks at clocks: EspoCRM changed = the hash of its canonical business fields differs from
``syncedHash``; Advoware changed = its ``rowId`` differs from ``advowareRowId``. Our own writes
refresh both, so they are never seen as changes (no echo, no ping-pong).

Without a baseline (initial sync) seed #11 decides: the newer timestamp wins, equal ->
``no_change``, only one side has a timestamp -> that side, neither -> EspoCRM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from include.beteiligte_sync import baseline
from include.beteiligte_sync.mapping import Canonical, business_hash, differing_fields
from include.beteiligte_sync.status import Outcome
from include.beteiligte_sync.timefmt import parse_advoware, parse_espocrm

#: ``advowareRowId`` holds this prefix while a create in Advoware is in flight.
CREATE_PENDING_PREFIX = "create-pending:"

#: ``advowareRowId`` is a varchar of 100 in the shipped entity definition.
ROW_ID_MAX_LENGTH = 100


def baseline_row_id(row_id: object) -> str | None:
    """The Advoware ``rowId`` as stored in ``advowareRowId``: as it is when it fits the field,
    else a SHA-256 of it (equal rowIds still compare equal; nothing the sync writes may be too
    long for the field it goes to)."""
    if row_id in (None, ""):
        return None
    text = str(row_id)
    if len(text) <= ROW_ID_MAX_LENGTH:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


Basis = Literal["baseline", "timestamps", "baseline_mismatch"]


@dataclass(frozen=True)
class Comparison:
    """The decision for one linked pair.

    :param outcome: ``espocrm_newer``, ``advoware_newer``, ``no_change`` or ``conflict``.
    :param initial: True when no baseline existed (seed #11 rule used).
    :param differing: canonical fields whose values differ between the two sides.
    :param basis: what decided: the baseline, timestamps (initial), or timestamps because the
        baseline claimed "no change" while the data differ (left behind by a broken sync).
    """

    outcome: Outcome
    initial: bool
    espocrm_changed: bool
    advoware_changed: bool
    differing: tuple[str, ...]
    basis: Basis
    #: per field (of ``differing``): copied EspoCRM -> Advoware, Advoware -> EspoCRM, and the
    #: fields people changed on both sides (EspoCRM wins, the Advoware value goes to the Note).
    to_advoware: tuple[str, ...] = ()
    to_espocrm: tuple[str, ...] = ()
    conflicting: tuple[str, ...] = ()

    @classmethod
    def whole(
        cls,
        outcome: Outcome,
        initial: bool,
        espocrm_changed: bool,
        advoware_changed: bool,
        differing: tuple[str, ...],
        basis: Basis,
    ) -> Comparison:
        """One direction for every differing field (timestamps, or the hash baseline)."""
        to_advoware = differing if outcome in (Outcome.ESPOCRM_NEWER, Outcome.CONFLICT) else ()
        to_espocrm = differing if outcome is Outcome.ADVOWARE_NEWER else ()
        conflicting = differing if outcome is Outcome.CONFLICT else ()
        return cls(
            outcome,
            initial,
            espocrm_changed,
            advoware_changed,
            differing,
            basis,
            to_advoware,
            to_espocrm,
            conflicting,
        )


def has_baseline(record: Mapping[str, Any]) -> bool:
    """True if the record carries the baseline of a past success or of a create of ours (the
    ``syncedHash``; ``advowareRowId`` may be missing when the party could not be read back)."""
    if _is_pending(record.get("advowareRowId")):
        return False
    # syncBaseline alone: a first sync whose lock recorded its decision (kept across retries)
    return bool(record.get("syncedHash")) or baseline.read(record).values is not None


def _is_pending(row_id: object) -> bool:
    return isinstance(row_id, str) and row_id.startswith(CREATE_PENDING_PREFIX)


def initial_outcome(espocrm_time: datetime | None, advoware_time: datetime | None) -> Outcome:
    """Seed #11 exactly: newer wins, equal -> no_change, one timestamp -> that side, none ->
    EspoCRM."""
    if espocrm_time and advoware_time:
        if espocrm_time > advoware_time:
            return Outcome.ESPOCRM_NEWER
        if advoware_time > espocrm_time:
            return Outcome.ADVOWARE_NEWER
        return Outcome.NO_CHANGE
    if advoware_time and not espocrm_time:
        return Outcome.ADVOWARE_NEWER
    return Outcome.ESPOCRM_NEWER


def compare(
    espocrm_record: Mapping[str, Any],
    espocrm_canon: Canonical,
    advoware_record: Mapping[str, Any],
    advoware_canon: Canonical,
    *,
    advoware_timezone: str,
) -> Comparison:
    """Decide the outcome for a linked pair from both records and the stored baseline.

    With a per-field baseline (``syncBaseline``) each differing field is decided on its own:
    changed only in EspoCRM -> to Advoware, only in Advoware -> to EspoCRM, by people on both
    sides -> conflict (EspoCRM wins). Without one, the hash baseline decides for the whole
    party, and without any baseline the timestamps (seed #11).
    """
    differing = differing_fields(espocrm_canon, advoware_canon)
    by_time = initial_outcome(
        parse_espocrm(espocrm_record.get("modifiedAt")),
        parse_advoware(advoware_record.get("geaendertAm"), advoware_timezone),
    )
    if not has_baseline(espocrm_record):
        return Comparison.whole(by_time, True, False, False, differing, "timestamps")
    synced = baseline.effective(baseline.read(espocrm_record), advoware_canon)
    if synced is not None:
        row_baseline = espocrm_record.get("advowareRowId")
        row_unchanged = bool(row_baseline) and row_baseline == baseline_row_id(
            advoware_record.get("rowId")
        )
        if row_unchanged and any(advoware_canon.get(n) != synced.get(n) for n in differing):
            # Advoware's rowId says it did not change since the last success, yet it does not
            # hold what was recorded then (seed #13, entity 104860: clean with different names).
            # The baseline cannot be trusted: the timestamps decide.
            return Comparison.whole(by_time, False, False, False, differing, "baseline_mismatch")
        return _per_field(espocrm_canon, advoware_canon, synced, differing)
    return _by_hash(
        espocrm_record, espocrm_canon, advoware_record, advoware_canon, by_time, differing
    )


def _per_field(
    espocrm: Canonical, advoware: Canonical, synced: Canonical, differing: tuple[str, ...]
) -> Comparison:
    to_advoware, to_espocrm, conflicting = [], [], []
    for name in differing:
        espocrm_changed = espocrm.get(name) != synced.get(name)
        advoware_changed = advoware.get(name) != synced.get(name)
        if espocrm_changed and advoware_changed:
            conflicting.append(name)
        elif advoware_changed:
            to_espocrm.append(name)
        else:
            to_advoware.append(name)
    if conflicting:
        outcome = Outcome.CONFLICT
    elif to_advoware and to_espocrm:
        outcome = Outcome.MERGED
    elif to_advoware:
        outcome = Outcome.ESPOCRM_NEWER
    elif to_espocrm:
        outcome = Outcome.ADVOWARE_NEWER
    else:
        outcome = Outcome.NO_CHANGE
    return Comparison(
        outcome,
        False,
        bool(to_advoware or conflicting),
        bool(to_espocrm or conflicting),
        differing,
        "baseline",
        (*to_advoware, *conflicting),
        tuple(to_espocrm),
        tuple(conflicting),
    )


def _by_hash(
    espocrm_record: Mapping[str, Any],
    espocrm_canon: Canonical,
    advoware_record: Mapping[str, Any],
    advoware_canon: Canonical,
    by_time: Outcome,
    differing: tuple[str, ...],
) -> Comparison:
    """The decision of records synced before per-field baselines existed."""
    espo_changed = business_hash(espocrm_canon) != espocrm_record.get("syncedHash")
    row_baseline = espocrm_record.get("advowareRowId")
    if row_baseline:
        advo_changed = baseline_row_id(advoware_record.get("rowId")) != row_baseline
    else:  # no rowId recorded: Advoware changed if it no longer holds what was synced
        advo_changed = business_hash(advoware_canon) != espocrm_record.get("syncedHash")
    if espo_changed and advo_changed:
        # Both changed to the same data (typically our own write whose validation was lost,
        # healed after the stale lock): nothing to resolve, nothing overwritten.
        outcome = Outcome.CONFLICT if differing else Outcome.NO_CHANGE
    elif espo_changed:
        outcome = Outcome.ESPOCRM_NEWER
    elif advo_changed:
        outcome = Outcome.ADVOWARE_NEWER
    elif differing:
        # The baseline says "nothing changed" but the data differ (seed #13: entity 104860 was
        # marked clean with different names). The baseline cannot be trusted: use the timestamps.
        return Comparison.whole(by_time, False, False, False, differing, "baseline_mismatch")
    else:
        outcome = Outcome.NO_CHANGE
    return Comparison.whole(outcome, False, espo_changed, advo_changed, differing, "baseline")
