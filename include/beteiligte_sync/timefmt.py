"""Timestamps of both APIs, parsed and formatted in one place.

EspoCRM speaks UTC ``YYYY-MM-DD HH:MM:SS``; Advoware's ``geaendertAm`` is local time of the
firm (Europe/Berlin by default, a setting) as ``YYYY-MM-DDTHH:MM:SS`` without an offset. The
engine works with aware UTC datetimes only and gets "now" from an injected clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

import pendulum

#: The injected clock: returns an aware UTC datetime.
Clock = Callable[[], datetime]

_ESPOCRM_FORMAT = "%Y-%m-%d %H:%M:%S"


def format_espocrm(moment: datetime) -> str:
    """EspoCRM datetime text (UTC) for an aware datetime."""
    return moment.astimezone(UTC).strftime(_ESPOCRM_FORMAT)


def parse_espocrm(text: object) -> datetime | None:
    """Aware UTC datetime from an EspoCRM datetime; ``None`` for empty or unreadable values."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return datetime.strptime(text.strip()[:19], _ESPOCRM_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_advoware(text: object, timezone: str) -> datetime | None:
    """Aware UTC datetime from Advoware's local ``geaendertAm``; ``None`` if empty/unreadable.

    pendulum resolves the local time in ``timezone`` (DST gaps and folds included).
    """
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        parsed = pendulum.parse(text.strip(), tz=_timezone(timezone))
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        return None
    if not isinstance(parsed, datetime):
        return None
    return datetime.fromtimestamp(parsed.timestamp(), tz=UTC)


@lru_cache(maxsize=8)
def _timezone(name: str) -> pendulum.Timezone | pendulum.FixedTimezone:
    """The zone object, loaded once (pendulum reads the tz database file on every ``parse``
    given a name: a measurable share of a sync's CPU, issue 8)."""
    return pendulum.timezone(name)


def format_iso_utc(moment: datetime) -> str:
    """Compact ISO 8601 UTC text (used inside markers such as ``create-pending:``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_utc(text: str) -> datetime | None:
    """Inverse of :func:`format_iso_utc`; ``None`` if unreadable."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
