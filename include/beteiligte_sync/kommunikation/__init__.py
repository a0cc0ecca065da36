"""Kommunikation sync (SPEC §6): one package, three stages.

* :mod:`.classify`: what each Advoware entry and EspoCRM value is (kind, known or not,
  relevance), ``kommunikationHash``, empty slots, the synced-values baseline;
* :mod:`.planning`: the three-way diff into a :class:`KommunikationPlan` (Var1 to Var6);
* :mod:`.rendering`: ops with markers, EspoCRM items, note lines and warnings;

plus :mod:`.check`, the round-trip check. Other modules import the public names from here.
"""

from include.beteiligte_sync.kommunikation.check import compare_kommunikation
from include.beteiligte_sync.kommunikation.classify import (
    SYNCED_VALUES_FIELD,
    Kind,
    changed_kommunikation_hash,
    find_empty_slot,
    is_sync_relevant,
    kommunikation_hash,
    mask_value,
    read_synced_values,
    resolve_kind,
    resolve_kommkz,
    synced_values_baseline,
)
from include.beteiligte_sync.kommunikation.planning import (
    DIRECTIONS,
    KommunikationPlan,
    plan_kommunikation,
)
from include.beteiligte_sync.kommunikation.rendering import BEMERKUNG_MAX, TLF_MAX

__all__ = [
    "BEMERKUNG_MAX",
    "DIRECTIONS",
    "SYNCED_VALUES_FIELD",
    "TLF_MAX",
    "Kind",
    "KommunikationPlan",
    "changed_kommunikation_hash",
    "compare_kommunikation",
    "find_empty_slot",
    "is_sync_relevant",
    "kommunikation_hash",
    "mask_value",
    "plan_kommunikation",
    "read_synced_values",
    "resolve_kind",
    "resolve_kommkz",
    "synced_values_baseline",
]
