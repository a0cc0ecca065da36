"""The field table CBeteiligte (EspoCRM) <-> Beteiligte (Advoware), in one place.

Values travel through a *canonical form*: a dict keyed by the EspoCRM field name whose values
are trimmed strings or ``None`` (an empty string and null are the same), dates as
``YYYY-MM-DD``. Both sides are read into it, compared in it, hashed in it and written from it.

A value a system cannot hold (too long, wrong JSON type, invalid date) raises
:class:`EntityError` naming the field and the problem, never the value: it is a per-entity
error, not a crash, and nothing is ever truncated silently.

Kind: a party is a company when ``rechtsform`` is set, else a person (SPEC §4). Both kinds use
the same table, so no field a person typed is dropped because of the kind.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from include.beteiligte_sync.errors import EntityError

Canonical = dict[str, str | None]
#: C0 control characters and DEL, except tab, line feed and carriage return (trimmed anyway).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: EspoCRM varchar default maximum length.
ESPOCRM_VARCHAR_MAX = 255


@dataclass(frozen=True)
class FieldMap:
    """One mapped business field.

    :param espocrm: field name in CBeteiligte (also the canonical key).
    :param advoware: field name in the Advoware Beteiligte JSON.
    :param kind: ``text`` or ``date``.
    :param advoware_max: Advoware's maximum length (None = no limit known).
    """

    espocrm: str
    advoware: str
    kind: Literal["text", "date"] = "text"
    advoware_max: int | None = None
    espocrm_max: int = ESPOCRM_VARCHAR_MAX


FIELDS: tuple[FieldMap, ...] = (
    FieldMap("name", "name", advoware_max=80),
    FieldMap("vorname", "vorname", advoware_max=60),
    FieldMap("anrede", "anrede", advoware_max=40),
    FieldMap("titel", "titel", advoware_max=40),
    FieldMap("rechtsform", "rechtsform", advoware_max=40),
    FieldMap("geburtsdatum", "geburtsdatum", kind="date"),
    FieldMap("handelsregisterNummer", "handelsRegisterNummer", advoware_max=40),
    FieldMap("registergericht", "registergericht", advoware_max=80),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.espocrm for f in FIELDS)
#: Fields compared by the seed's validation at least (seed #13); we compare all of FIELDS.
CRITICAL_FIELDS: tuple[str, ...] = ("name", "rechtsform")
_BY_NAME = {f.espocrm: f for f in FIELDS}


def _text(value: Any, spec: FieldMap, system: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EntityError(f"{spec.espocrm}: {system} value is not text ({type(value).__name__})")
    if _CONTROL.search(value):
        # NUL, ESC and friends are never typed on purpose; they break the other system's
        # storage or display. A person must look at the value, we do not clean it silently.
        raise EntityError(f"{spec.espocrm}: {system} value contains control characters")
    return value.strip() or None


def _date(value: Any, spec: FieldMap, system: str) -> str | None:
    text = _text(value, spec, system)
    if text is None:
        return None
    # EspoCRM "YYYY-MM-DD", Advoware "YYYY-MM-DDT00:00:00": the date part is what counts.
    try:
        if len(text) < 10 or (len(text) > 10 and text[10] not in "T "):
            raise ValueError(text)
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        raise EntityError(f"{spec.espocrm}: {system} value is not a valid date") from None


def _read(record: Mapping[str, Any], system: Literal["EspoCRM", "Advoware"]) -> Canonical:
    canon: Canonical = {}
    for spec in FIELDS:
        raw = record.get(spec.espocrm if system == "EspoCRM" else spec.advoware)
        canon[spec.espocrm] = (_date if spec.kind == "date" else _text)(raw, spec, system)
    return canon


def from_espocrm(record: Mapping[str, Any]) -> Canonical:
    """Canonical business fields of an EspoCRM record (EntityError on unreadable values)."""
    return _read(record, "EspoCRM")


def from_advoware(record: Mapping[str, Any]) -> Canonical:
    """Canonical business fields of an Advoware party (EntityError on unreadable values)."""
    return _read(record, "Advoware")


def check_fits(canon: Canonical, target: Literal["EspoCRM", "Advoware"]) -> None:
    """Raise EntityError if a value cannot be held by ``target`` (lengths; never truncated)."""
    problems = []
    for spec in FIELDS:
        value = canon.get(spec.espocrm)
        limit = spec.advoware_max if target == "Advoware" else spec.espocrm_max
        if value is not None and limit is not None and len(value) > limit:
            problems.append(f"{spec.espocrm}: {len(value)} characters, {target} allows {limit}")
    if target == "Advoware" and not canon.get("name"):
        problems.append("name: required by Advoware but empty")
    if problems:
        raise EntityError("; ".join(problems))


def to_advoware(canon: Canonical, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Advoware party JSON for the canonical fields ``names`` (default: all)."""
    out: dict[str, Any] = {}
    for name in names or FIELD_NAMES:
        spec, value = _BY_NAME[name], canon.get(name)
        if spec.kind == "date" and value is not None:
            value = f"{value}T00:00:00"
        out[spec.advoware] = value
    return out


def to_espocrm(canon: Canonical, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """EspoCRM field dict for the canonical fields ``names`` (default: all)."""
    return {name: canon.get(name) for name in names or FIELD_NAMES}


def differing_fields(a: Canonical, b: Canonical) -> tuple[str, ...]:
    """Canonical field names whose values differ, in table order."""
    return tuple(name for name in FIELD_NAMES if a.get(name) != b.get(name))


def business_hash(canon: Canonical) -> str:
    """Stable hash of the canonical business fields (the ``syncedHash`` baseline)."""
    payload = json.dumps({n: canon.get(n) for n in FIELD_NAMES}, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def party_kind(canon: Canonical) -> Literal["company", "person"]:
    """``company`` when a Rechtsform is set, else ``person`` (SPEC §4)."""
    return "company" if canon.get("rechtsform") else "person"
