"""Kommunikation round-trip check (seed #13): do both sides hold the same sync-relevant values?"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from include.beteiligte_sync.kommkz import DEFAULT_TABLE, EMAIL, KommKzTable
from include.beteiligte_sync.kommunikation.classify import (
    Key,
    advoware_values,
    mask_value,
    read_espo,
    resolve_kommkz,
    tlf_of,
)
from include.beteiligte_sync.kommunikation.planning import check_direction
from include.beteiligte_sync.kommunikation.rendering import label

log = logging.getLogger(__name__)


def _sync_values(
    espo: Mapping[str, Any], advo: Mapping[str, Any], table: KommKzTable
) -> tuple[dict[Key, str], dict[Key, str]]:
    """Normalised key -> label of the sync-relevant values of each side."""
    espo_side = {k: f"{label(v)}: {mask_value(v.value)}" for k, v in read_espo(espo, table).items()}
    advo_side: dict[Key, str] = {}
    for key, komm in advoware_values(advo.get("kommunikation") or [], table).items():
        kommkz = resolve_kommkz(komm, table=table)
        kind = "email" if key[0] == EMAIL else f"phone {table.phone_type(kommkz)}"
        advo_side[key] = f"{kind}: {mask_value(tlf_of(komm))}"
    return espo_side, advo_side


def compare_kommunikation(
    espo: dict[str, Any],
    advo: dict[str, Any],
    *,
    direction: str = "both",
    table: KommKzTable = DEFAULT_TABLE,
) -> list[str]:
    """Round-trip check: differences between the sync-relevant values of both sides.

    Each difference reads ``"phone Office: +4…34 != (missing)"`` (EspoCRM side first; values
    masked, since the text goes into ``syncErrorMessage`` and may reach logs). With a one-way
    ``direction`` only the target side is checked for the source's values.
    """
    check_direction(direction)
    espo_side, advo_side = _sync_values(espo, advo, table)
    differences = []
    if direction in ("both", "to_advoware"):
        differences += [f"{espo_side[k]} != (missing)" for k in espo_side if k not in advo_side]
    if direction in ("both", "to_espocrm"):
        differences += [f"(missing) != {advo_side[k]}" for k in advo_side if k not in espo_side]
    log.debug("[KOMM] Validation: %d Kommunikation differences", len(differences))
    return differences
