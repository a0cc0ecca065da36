"""The marker grammar in Advoware ``bemerkung``: the one place that parses and renders it.

Two markers exist (SPEC §6):

* value marker ``[ESPOCRM:<base64 of the value as last synced>:<kommKz>]``: the three-way base
  of the entry and its true kind (the API may report ``kommKz`` 0);
* slot marker ``[ESPOCRM-SLOT:<kommKz>]``: an empty slot of that kind, waiting for reuse.

``<kommKz>`` is ``?`` when the entry's kind is unknown (the API reported 0 and nothing else
says it): a guess is never stored as if it were the kind. An unknown-kind slot is reused by no
kind.

Whatever a person wrote around the marker is user text and is kept byte for byte: parsing
splits ``bemerkung`` into ``prefix + marker + text`` and rendering puts exactly those pieces back.

A ``bemerkung`` that mentions ``[ESPOCRM`` but does not hold exactly one well-formed marker
(bad base64, unknown ``kommKz`` or ``0``, truncated brackets, two markers) is *malformed*: it is
reported (``problem``, never a value) and never parsed into a base. The sync re-marks such an
entry: a fresh marker, then a space, then the damaged text kept whole as the person's text. A
well-formed marker at the very start followed by whitespace therefore makes everything after it
text, even if that text holds more ``[ESPOCRM``.
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
#: The ``<kommKz>`` of a marker whose entry is of unknown kind.
UNKNOWN_KIND = "?"
_INVALID = -1


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
    :param kommkz: the kind of a value or slot marker (``None``: unknown, marker code ``?``).
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
    """The marker's kind, ``None`` for ``?`` (unknown), ``_INVALID`` for anything else."""
    if code == UNKNOWN_KIND:
        return None
    if not _CODE_RE.match(code):
        return _INVALID
    number = int(code)
    return number if number in known_kommkz else _INVALID


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
        remarked = _parse_at(raw, 0, known_kommkz)
        if remarked.kind is not MarkerKind.MALFORMED and remarked.text[:1].isspace():
            return remarked  # our marker in front of a damaged one kept as the person's text
        return _malformed(raw, "more than one marker")
    return _parse_at(raw, raw.index(MARKER_START), known_kommkz)


def _parse_at(raw: str, start: int, known_kommkz: Container[int]) -> Bemerkung:
    """The marker starting at ``start`` (malformed if there is none)."""
    slot = _SLOT_RE.match(raw, start)
    if slot:
        code = _parse_code(slot.group(1), known_kommkz)
        if code == _INVALID:
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
    if code == _INVALID:
        return _malformed(raw, "unknown kommKz in marker")
    return Bemerkung(
        MarkerKind.VALUE,
        raw,
        prefix=raw[:start],
        text=raw[value_match.end() :],
        value=value,
        kommkz=code,
    )


def _code(kommkz: int | None) -> str:
    return UNKNOWN_KIND if kommkz is None else str(kommkz)


def render_value_marker(value: str, kommkz: int | None) -> str:
    """``[ESPOCRM:<base64(value)>:<kommKz>]`` (``kommkz`` None: unknown kind, code ``?``)."""
    encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
    return f"[ESPOCRM:{encoded}:{_code(kommkz)}]"


def render_slot_marker(kommkz: int | None) -> str:
    """``[ESPOCRM-SLOT:<kommKz>]`` (``kommkz`` None: unknown kind, code ``?``)."""
    return f"[ESPOCRM-SLOT:{_code(kommkz)}]"


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
