"""Field limits and value tables of both stand-ins, in one place.

These are the sandbox's model of what the real APIs accept. Over-long values are answered
with 400 (Advoware) or 400 ``validationFailure`` (EspoCRM), as the real systems do.
"""

from __future__ import annotations

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

#: EspoCRM ``maxSize`` default and the limit above which the list call is 403.
ESPOCRM_DEFAULT_MAX_SIZE = 20
ESPOCRM_MAX_SIZE_LIMIT = 200

#: EspoCRM ``syncStatus`` enum options (SPEC §6).
ESPOCRM_SYNC_STATUSES = (
    "pending_sync",
    "dirty",
    "syncing",
    "clean",
    "failed",
    "permanently_failed",
    "conflict",
    "deleted_in_advoware",
)

#: EspoCRM phone number types.
ESPOCRM_PHONE_TYPES = ("Office", "Mobile", "Home", "Fax", "Other")

#: Advoware token request timestamps must lie within this many seconds of the server clock.
ADVOWARE_TOKEN_CLOCK_SKEW_SECONDS = 300

#: Default token lifetime (real API: about 55 minutes).
ADVOWARE_DEFAULT_TOKEN_LIFETIME_SECONDS = 3300
