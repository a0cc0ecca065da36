"""Field limits and value tables of both stand-ins, in one place.

These are the sandbox's model of what the real APIs accept. Over-long values are answered
with 400 (Advoware) or 400 ``validationFailure`` (EspoCRM), as the real systems do.

EspoCRM's limits of ``CBeteiligte`` are *read* from the entity definition the project ships
(``docs/espocrm/entityDefs/CBeteiligte.json``): ``maxLength`` of varchar fields, the options of
enum fields, ``min`` of int fields. A varchar field the file does not define (the entity's
standard fields such as ``name``) has EspoCRM's default length of 255.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The entity definition the firm imports into EspoCRM (one source of the field limits).
ESPOCRM_ENTITY_DEFS_PATH = (
    Path(__file__).resolve().parent.parent / "docs/espocrm/entityDefs/CBeteiligte.json"
)


def load_entity_fields(path: Path = ESPOCRM_ENTITY_DEFS_PATH) -> dict[str, dict[str, Any]]:
    """The ``fields`` of an EspoCRM entityDefs file (``ValueError`` if it has none)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    fields = data.get("fields") if isinstance(data, dict) else None
    if not isinstance(fields, dict) or not all(isinstance(v, dict) for v in fields.values()):
        raise ValueError(f"{path}: no 'fields' object")
    return fields


#: Advoware party fields: maximum length in characters (``name`` is also required on POST).
ADVOWARE_PARTY_MAX_LENGTH: dict[str, int] = {
    "name": 80,
    "vorname": 60,
    "anrede": 40,
    "titel": 40,
    "rechtsform": 40,
    "handelsRegisterNummer": 40,
    "registergericht": 80,
}

#: Advoware Kommunikation text fields: maximum length in characters.
ADVOWARE_KOMM_MAX_LENGTH: dict[str, int] = {"tlf": 100, "bemerkung": 500}

#: Valid ``kommKz`` codes on POST of a Kommunikation (SPEC §5: 1 TelGesch ... 12 beA).
ADVOWARE_KOMMKZ_RANGE = range(1, 13)

#: EspoCRM varchar fields default to 255 characters.
ESPOCRM_VARCHAR_MAX_LENGTH = 255

#: The custom fields of ``CBeteiligte`` as the shipped entityDefs define them.
ESPOCRM_FIELD_DEFS: dict[str, dict[str, Any]] = load_entity_fields()

#: Field type per custom field (``varchar``, ``int``, ``enum``, ``datetime``, ``text``, ...).
ESPOCRM_FIELD_TYPES: dict[str, str] = {
    name: str(defs.get("type")) for name, defs in ESPOCRM_FIELD_DEFS.items()
}

#: ``maxLength`` of the varchar fields the entityDefs define (others: the 255 default).
ESPOCRM_MAX_LENGTH: dict[str, int] = {
    name: int(defs.get("maxLength", ESPOCRM_VARCHAR_MAX_LENGTH))
    for name, defs in ESPOCRM_FIELD_DEFS.items()
    if defs.get("type") == "varchar"
}

#: Fields without a length limit (EspoCRM ``text``).
ESPOCRM_TEXT_FIELDS: frozenset[str] = frozenset(
    name for name, kind in ESPOCRM_FIELD_TYPES.items() if kind == "text"
)

#: Options of the enum fields.
ESPOCRM_ENUM_OPTIONS: dict[str, tuple[str, ...]] = {
    name: tuple(defs.get("options") or ())
    for name, defs in ESPOCRM_FIELD_DEFS.items()
    if defs.get("type") == "enum"
}

#: ``min`` of the int fields that declare one.
ESPOCRM_INT_MIN: dict[str, int] = {
    name: int(defs["min"])
    for name, defs in ESPOCRM_FIELD_DEFS.items()
    if defs.get("type") == "int" and isinstance(defs.get("min"), int)
}


def espocrm_max_length(field: str) -> int | None:
    """The longest value EspoCRM accepts for a string field (``None``: no limit)."""
    if field in ESPOCRM_TEXT_FIELDS:
        return None
    return ESPOCRM_MAX_LENGTH.get(field, ESPOCRM_VARCHAR_MAX_LENGTH)


#: EspoCRM email addresses and phone numbers (entities ``EmailAddress``/``PhoneNumber``).
ESPOCRM_EMAIL_MAX_LENGTH = 255
ESPOCRM_PHONE_MAX_LENGTH = 36

#: EspoCRM ``maxSize`` default and the limit above which the list call is 403.
ESPOCRM_DEFAULT_MAX_SIZE = 20
ESPOCRM_MAX_SIZE_LIMIT = 200

#: EspoCRM ``syncStatus`` enum options (SPEC §6), from the entityDefs.
ESPOCRM_SYNC_STATUSES = ESPOCRM_ENUM_OPTIONS["syncStatus"]

#: EspoCRM phone number types.
ESPOCRM_PHONE_TYPES = ("Office", "Mobile", "Home", "Fax", "Other")

#: Advoware token request timestamps must lie within this many seconds of the server clock.
ADVOWARE_TOKEN_CLOCK_SKEW_SECONDS = 300

#: Default token lifetime (real API: about 55 minutes).
ADVOWARE_DEFAULT_TOKEN_LIFETIME_SECONDS = 3300
