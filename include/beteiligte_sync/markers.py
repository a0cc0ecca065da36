"""The marker grammar in Advoware ``bemerkung``: the one place that parses and renders it.

Two markers exist (SPEC §6):

* value marker ``[ESPOCRM:<base64 of the value as last synced>:<kommKz>]``: the three-way base
  of the entry and its true kind (the API may report ``kommKz`` 0);
* slot marker ``[ESPOCRM-SLOT:<kommKz>]``: an empty slot of that kind, waiting for reuse.

Whatever a person wrote around the marker is user text and is kept byte for byte: parsing
splits ``bemerkung`` into ``prefix + marker + text`` and rendering puts exactly those pieces back.

A ``bemerkung`` that mentions ``[ESPOCRM`` but does not hold exactly one well-formed marker
(bad base64, unknown ``kommKz``, truncated brackets, two markers) is *malformed*: it is reported
(``problem``, never a value), treated as unmarked user data, and never parsed into a base.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Container
from dataclasses import dataclass
from enum import StrEnum

from include.beteiligte_sync.kommkz import DEFAULT_TABLE

MARKER_START = "[ESPOCRM"
_VALUE_RE = re.compile(r"\[ESPOCRM:([^:\]\[]*):([^\]\[]*)\]")
_SLOT_RE = re.compile(r"\[ESPOCRM-SLOT:([^\]\[]*)\]")
_CODE_RE = re.compile(r"^[0-9]{1,3}$")


class MarkerKind(StrEnum):
    """What a ``bemerkung`` holds."""

    NONE = "none"
    VALUE = "value"
    SLOT = "slot"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Bemerkung:
    """A parsed ``bemerkung``.

    :param kind: which marker it holds.
    :param raw: the ``bemerkung`` as read (``None`` read as ``""``).
    :param prefix: user text before the marker (``""`` unless a person typed in front of it).
    :param text: user text after the marker, byte for byte.
    :param value: the synced value of a value marker (the three-way base).
    :param kommkz: the kind of a value or slot marker.
    :param problem: why a marker is malformed (no values in it).
    """

    kind: MarkerKind
    raw: str
    prefix: str = ""
    text: str = ""
    value: str | None = None
    kommkz: int | None = None
    problem: str | None = None

    @property
    def is_value(self) -> bool:
        """True for a well-formed value marker."""
        return self.kind is MarkerKind.VALUE

    @property
    def is_slot(self) -> bool:
        """True for a well-formed slot marker."""
        return self.kind is MarkerKind.SLOT


def _malformed(raw: str, problem: str) -> Bemerkung:
    return Bemerkung(MarkerKind.MALFORMED, raw, text=raw, problem=problem)


def _parse_code(code: str, known_kommkz: Container[int]) -> int | None:
    if not _CODE_RE.match(code):
        return None
    number = int(code)
    return number if number in known_kommkz else None


def _decode_value(encoded: str) -> str | None:
    """Strict base64 -> UTF-8 text; ``None`` if it is not that (or empty)."""
    try:
        value = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return value or None


def parse_bemerkung(
    bemerkung: str | None, *, known_kommkz: Container[int] = DEFAULT_TABLE.kinds
) -> Bemerkung:
    """Split ``bemerkung`` into user text and at most one marker; never raises.

    :param bemerkung: the Advoware ``bemerkung`` (``None`` and non-text read as no marker).
    :param known_kommkz: codes a marker may name; others make the marker malformed.
    """
    raw = bemerkung if isinstance(bemerkung, str) else ""
    count = raw.count(MARKER_START)
    if count == 0:
        return Bemerkung(MarkerKind.NONE, raw, text=raw)
    if count > 1:
        return _malformed(raw, "more than one marker")
    start = raw.index(MARKER_START)
    slot = _SLOT_RE.match(raw, start)
    if slot:
        code = _parse_code(slot.group(1), known_kommkz)
        if code is None:
            return _malformed(raw, "unknown kommKz in slot marker")
        return Bemerkung(
            MarkerKind.SLOT, raw, prefix=raw[:start], text=raw[slot.end() :], kommkz=code
        )
    value_match = _VALUE_RE.match(raw, start)
    if not value_match:
        return _malformed(raw, "truncated or unreadable marker")
    value = _decode_value(value_match.group(1))
    if value is None:
        return _malformed(raw, "invalid base64 in marker")
    code = _parse_code(value_match.group(2), known_kommkz)
    if code is None:
        return _malformed(raw, "unknown kommKz in marker")
    return Bemerkung(
        MarkerKind.VALUE,
        raw,
        prefix=raw[:start],
        text=raw[value_match.end() :],
        value=value,
        kommkz=code,
    )


def render_value_marker(value: str, kommkz: int) -> str:
    """``[ESPOCRM:<base64(value)>:<kommKz>]``."""
    encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
    return f"[ESPOCRM:{encoded}:{kommkz}]"


def render_slot_marker(kommkz: int) -> str:
    """``[ESPOCRM-SLOT:<kommKz>]``."""
    return f"[ESPOCRM-SLOT:{kommkz}]"


def with_marker(parsed: Bemerkung, marker: str) -> str:
    """The ``bemerkung`` with ``marker`` in place of the current one, user text kept.

    A marked ``bemerkung`` keeps its prefix and text byte for byte around the new marker. An
    unmarked or malformed one is kept whole after the marker, separated by a space so the
    marker does not run into the person's words. (A malformed one stays malformed: it is only
    ever given a slot marker, whose entry is then empty and therefore ignored.)
    """
    if parsed.kind in (MarkerKind.VALUE, MarkerKind.SLOT):
        return parsed.prefix + marker + parsed.text
    if parsed.raw and not parsed.raw[0].isspace():
        return f"{marker} {parsed.raw}"
    return marker + parsed.raw
