"""The kommKz table: the one place that knows what each Advoware Kommunikation kind is.

SPEC §5 gives the codes and where each kind lives in EspoCRM. This module holds that table,
the way back (a new EspoCRM value becomes which ``kommKz``), kind detection from a value (the
real API may report ``kommKz`` 0 on GET), and the normalised form values are compared in.

Which kinds are synced
    Emails (4 MailGesch, 8 MailPrivat) go to ``emailAddressData``; telephone and fax kinds
    (1, 2, 3, 6, 7, 9) and 10 Sonstige go to ``phoneNumberData`` with the type of the table.
    5 Internet, 11 EPost and 12 beA are **not synced** by default: they are web or
    electronic-mailbox addresses, not phone numbers, and EspoCRM has no field for them (its phone
    field would mislabel or reject a URL). Excluding them keeps them untouched in Advoware: they
    are never sync-relevant, never in the hash, never turned into empty slots on a conflict.
    A deployment that wants them in EspoCRM gives them a channel with :meth:`KommKzTable.with_kind`
    or :func:`table_from_config` (e.g. ``{"kinds": {"5": {"channel": "phone", "phone_type":
    "Other"}}}``); everything else follows from the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

Channel = Literal["email", "phone"]
EMAIL: Channel = "email"
PHONE: Channel = "phone"
#: EspoCRM ``phoneNumberData[].type`` values (SPEC §4).
ESPOCRM_PHONE_TYPES = ("Office", "Mobile", "Home", "Fax", "Other")

# The same loose rule EspoCRM applies (and the fakes/sandbox mirror): something@something.tld.
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL_RE = re.compile(r"^(https?://|www\.)\S+$", re.IGNORECASE)
# Separators people type into phone numbers; they do not change the number.
_PHONE_SEPARATORS = re.compile(r"[\s\-/().]")
# Forms of values whose kinds are never synced, for entries whose kind is unknown (GET defect):
# beA SAFE-IDs ("safe-sp1-1234-...", "DE.BEA.1234...", "DE.BRAK...", "DE.Justiz...") and EPost
# addresses (at epost.de or the EPost gateway epost-gka.de).
_SAFE_ID_RE = re.compile(r"^(safe-[\w.-]+|DE\.[A-Za-z]+\.[\w.-]+)$", re.IGNORECASE)
_EPOST_RE = re.compile(r"@([\w-]+\.)*epost(-gka)?\.de$", re.IGNORECASE)
# German mobile numbers (015x, 016x, 017x; +49/0049 with or without the trunk 0), normalised.
_GERMAN_MOBILE_RE = re.compile(r"^(?:(?:\+|00)49(?:0)?|0)1[567]\d{5,}$")

#: Codes the value's form stands for when the kind is unknown (see :func:`kommkz_from_form`).
INTERNET, EPOST, BEA = 5, 11, 12
FORM_EMAIL, FORM_MOBILE, FORM_OTHER_PHONE = 4, 3, 10


@dataclass(frozen=True)
class KommKind:
    """One row of the table.

    :param kommkz: Advoware code.
    :param name: Advoware name (for logs, notes and messages).
    :param channel: where the kind lives in EspoCRM; ``None`` = not synced.
    :param phone_type: EspoCRM phone type for ``channel == "phone"``.
    """

    kommkz: int
    name: str
    channel: Channel | None
    phone_type: str | None = None


@dataclass(frozen=True)
class KommKzTable:
    """The kommKz table and the mapping of new EspoCRM values to Advoware kinds.

    :param kinds: every known ``kommKz`` (codes not in here are *unknown*, e.g. in a marker).
    :param kommkz_for_phone_type: EspoCRM phone type -> ``kommKz`` of a new Advoware entry.
    :param email_kommkz: ``kommKz`` of a new Advoware entry made from an EspoCRM email.
    :param primary_order: which kind becomes EspoCRM's primary entry first, when one must be
        chosen (business before private, phone before mobile before fax).
    """

    kinds: Mapping[int, KommKind]
    kommkz_for_phone_type: Mapping[str, int]
    email_kommkz: int = 4
    primary_order: tuple[int, ...] = (4, 8, 1, 3, 6, 9, 10, 2, 7, 5, 11, 12)
    fallback_phone_type: str = "Other"

    def kind(self, kommkz: int | None) -> KommKind | None:
        """The row of ``kommkz``, or ``None`` if the code is unknown."""
        return self.kinds.get(kommkz) if kommkz is not None else None

    def is_known(self, kommkz: object) -> bool:
        """True for a code that is in the table."""
        return isinstance(kommkz, int) and not isinstance(kommkz, bool) and kommkz in self.kinds

    def channel(self, kommkz: int) -> Channel | None:
        """``"email"``, ``"phone"`` or ``None`` (not synced / unknown)."""
        row = self.kind(kommkz)
        return row.channel if row else None

    def name(self, kommkz: int) -> str:
        """Advoware name of the kind, ``"kommKz <n>"`` for unknown codes."""
        row = self.kind(kommkz)
        return row.name if row else f"kommKz {kommkz}"

    def phone_type(self, kommkz: int) -> str:
        """EspoCRM phone type of a phone kind (the fallback type for anything else)."""
        row = self.kind(kommkz)
        return (row.phone_type if row and row.phone_type else None) or self.fallback_phone_type

    def espocrm_phone_type(self, raw_type: object) -> str:
        """An EspoCRM phone type as the table knows it (unknown or missing -> fallback)."""
        if isinstance(raw_type, str) and raw_type in self.kommkz_for_phone_type:
            return raw_type
        return self.fallback_phone_type

    def kommkz_for_new(self, channel: Channel, phone_type: str | None = None) -> int:
        """``kommKz`` of a new Advoware entry for an EspoCRM value of ``channel``/``phone_type``."""
        if channel == EMAIL:
            return self.email_kommkz
        return self.kommkz_for_phone_type[self.espocrm_phone_type(phone_type)]

    def primary_rank(self, kommkz: int) -> int:
        """Lower is preferred as EspoCRM primary entry."""
        try:
            return self.primary_order.index(kommkz)
        except ValueError:
            return len(self.primary_order)

    def with_kind(
        self, kommkz: int, *, channel: Channel | None, phone_type: str | None = None
    ) -> KommKzTable:
        """A copy of the table with the row of ``kommkz`` routed to ``channel``/``phone_type``."""
        row = self.kinds.get(kommkz) or KommKind(kommkz, f"kommKz {kommkz}", None)
        kinds = dict(self.kinds)
        kinds[kommkz] = replace(row, channel=channel, phone_type=phone_type)
        return replace(self, kinds=kinds)


def _default_kinds() -> dict[int, KommKind]:
    rows = [
        KommKind(1, "TelGesch", PHONE, "Office"),
        KommKind(2, "FaxGesch", PHONE, "Fax"),
        KommKind(3, "Mobil", PHONE, "Mobile"),
        KommKind(4, "MailGesch", EMAIL),
        KommKind(5, "Internet", None),  # no EspoCRM home, see module docstring
        KommKind(6, "TelPrivat", PHONE, "Home"),
        KommKind(7, "FaxPrivat", PHONE, "Fax"),
        KommKind(8, "MailPrivat", EMAIL),
        KommKind(9, "AutoTelefon", PHONE, "Mobile"),
        KommKind(10, "Sonstige", PHONE, "Other"),
        KommKind(11, "EPost", None),  # no EspoCRM home
        KommKind(12, "beA", None),  # no EspoCRM home
    ]
    return {row.kommkz: row for row in rows}


DEFAULT_TABLE = KommKzTable(
    kinds=_default_kinds(),
    kommkz_for_phone_type={"Office": 1, "Fax": 2, "Mobile": 3, "Home": 6, "Other": 10},
)


def table_from_config(config: Mapping[str, Any], base: KommKzTable = DEFAULT_TABLE) -> KommKzTable:
    """Build a table from a JSON-like override, e.g. from an Airflow Variable.

    ``{"kinds": {"5": {"channel": "phone", "phone_type": "Other"}},
    "kommkz_for_phone_type": {"Other": 10}, "email_kommkz": 4}``. Unknown channels or phone types
    raise ``ValueError`` so a typo is found at start-up, not in the middle of a run.
    """
    table = base
    for code, row in (config.get("kinds") or {}).items():
        channel = row.get("channel")
        phone_type = row.get("phone_type")
        if channel not in (EMAIL, PHONE, None):
            raise ValueError(f"kommKz {code}: unknown channel {channel!r}")
        if channel == PHONE and phone_type not in ESPOCRM_PHONE_TYPES:
            raise ValueError(f"kommKz {code}: unknown EspoCRM phone type {phone_type!r}")
        table = table.with_kind(int(code), channel=channel, phone_type=phone_type)
    mapping = dict(table.kommkz_for_phone_type)
    for phone_type, code in (config.get("kommkz_for_phone_type") or {}).items():
        if phone_type not in ESPOCRM_PHONE_TYPES or not table.is_known(code):
            raise ValueError(f"bad mapping {phone_type!r} -> {code!r}")
        mapping[phone_type] = code
    email_kommkz = config.get("email_kommkz", table.email_kommkz)
    if table.channel(email_kommkz) != EMAIL:
        raise ValueError(f"email_kommkz {email_kommkz!r} is not an email kind")
    return replace(table, kommkz_for_phone_type=mapping, email_kommkz=email_kommkz)


def is_email_like(value: str) -> bool:
    """True if ``value`` looks like an email address (the rule EspoCRM accepts)."""
    return bool(_EMAIL_RE.match(value.strip()))


def detect_kommkz(value: str) -> int:
    """The seed's detection from the value alone: email-like -> 4, URL -> 5, otherwise 1.

    Kept for messages and the ``kommkz`` of ops on entries of unknown kind (the seed's trace
    names it); routing uses :func:`kommkz_from_form`, which never guesses an office phone.
    """
    if is_email_like(value):
        return 4
    if _URL_RE.match(value.strip()):
        return 5
    return 1


def kommkz_from_form(value: str) -> int:
    """What an entry of *unknown* kind is treated as, judged by its value's form alone.

    Never-synced kinds are recognised first: a beA SAFE-ID -> 12, an EPost address -> 11, a URL
    -> 5. Then the guess only chooses the EspoCRM list: email-like -> 4 (an email of unknown
    kind), a German mobile number (015x/016x/017x, also +49) -> 3 (EspoCRM type ``Mobile``),
    anything else -> 10 (type ``Other``, never ``Office``: a fax or private number typed in
    Advoware must not arrive as an office phone). The code is a routing hint, never stored as
    the entry's kind (its marker says the kind is unknown).
    """
    text = value.strip()
    if _SAFE_ID_RE.match(text):
        return BEA
    if is_email_like(text):
        return EPOST if _EPOST_RE.search(text) else FORM_EMAIL
    if _URL_RE.match(text):
        return INTERNET
    if _GERMAN_MOBILE_RE.match(normalise_value(PHONE, text)):
        return FORM_MOBILE
    return FORM_OTHER_PHONE


def normalise_value(channel: Channel, value: str) -> str:
    """The form values are compared in (they are stored as the person typed them).

    Emails: trimmed, lower case. Phones: without whitespace and the separators ``-/().``.
    """
    if channel == EMAIL:
        return value.strip().lower()
    return _PHONE_SEPARATORS.sub("", value)


def synced_kommkz(table: KommKzTable = DEFAULT_TABLE) -> Iterable[int]:
    """Codes whose entries are synced at all (have a channel)."""
    return [code for code, row in table.kinds.items() if row.channel is not None]
