"""Kommunikation, last stage: the ops, EspoCRM items, note lines and warnings a plan carries.

Everything a person or a server reads is rendered here: Advoware ops with their markers (user
text kept, the kind written only when known), EspoCRM ``...Data`` items with exactly one primary,
the stream Note lines for overwritten Advoware values, and the warnings (ids and reasons, never
values). Length limits are checked here, where the text is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from include.beteiligte_sync.errors import EntityError
from include.beteiligte_sync.kommkz import EMAIL, KommKzTable, detect_kommkz, is_email_like
from include.beteiligte_sync.kommunikation.classify import (
    Damaged,
    Entry,
    EspoValue,
    mask_value,
)
from include.beteiligte_sync.markers import (
    parse_bemerkung,
    render_slot_marker,
    render_value_marker,
    with_marker,
)
from include.beteiligte_sync.ops import (
    CreateKommunikation,
    MakeEmptySlot,
    Op,
    UpdateKommunikation,
)

#: Advoware field limits (SPEC §5 / the API): values that do not fit are an EntityError.
TLF_MAX = 100
BEMERKUNG_MAX = 500


def check_tlf_length(value: str, where: str) -> None:
    """Refuse a value Advoware cannot hold (never truncated)."""
    if len(value) > TLF_MAX:
        raise EntityError(
            f"{where}: value has {len(value)} characters, Advoware holds at most {TLF_MAX} "
            "(not truncated; shorten it)"
        )


def checked_bemerkung(bemerkung: str, where: str) -> str:
    """``bemerkung`` if Advoware can hold it (user text is never truncated)."""
    if len(bemerkung) > BEMERKUNG_MAX:
        raise EntityError(
            f"{where}: bemerkung with marker would have {len(bemerkung)} characters, Advoware "
            f"holds at most {BEMERKUNG_MAX} (user text is never truncated; shorten it)"
        )
    return bemerkung


def check_for_espocrm(entry: Entry, table: KommKzTable) -> None:
    """EspoCRM answers 400 on an invalid email: fail the entity with a readable reason."""
    if entry.channel == EMAIL and not is_email_like(entry.tlf):
        raise EntityError(
            f"Kommunikation {entry.komm_id} ({kind_name(entry, table)}): "
            f"'{mask_value(entry.tlf)}' is not a valid email address, EspoCRM would reject "
            "it; correct it in Advoware"
        )


def kind_name(entry: Entry, table: KommKzTable) -> str:
    """The entry's kind for messages and notes (``"kind unknown"`` under the GET defect)."""
    return table.name(entry.kommkz) if entry.kind.known else "kind unknown"


# --- Advoware ops -----------------------------------------------------------------------------


def value_marker_update(entry: Entry, value: str, reason: str) -> UpdateKommunikation | None:
    """Write ``value`` and its value marker into the entry (a damaged marker is kept as the
    person's text after the new one); ``None`` if nothing would change."""
    bemerkung = with_marker(entry.bemerkung, render_value_marker(value, entry.kind.marker_kommkz))
    if value == entry.tlf and bemerkung == entry.bemerkung.raw:
        return None
    return UpdateKommunikation(
        reason=reason,
        komm_id=entry.komm_id,
        tlf=value,
        bemerkung=checked_bemerkung(bemerkung, f"Kommunikation {entry.komm_id}"),
        online=entry.online,
    )


def empty_slot(entry: Entry, reason: str) -> MakeEmptySlot:
    """The entry as an empty slot of its kind (``?`` when unknown: reused by no kind).

    The op's ``kommkz`` names the kind for the log; for an unknown kind it is the seed's
    detection from the value (the marker does not store it).
    """
    kommkz = entry.kommkz if entry.kind.known else detect_kommkz(entry.tlf or _base(entry))
    bemerkung = with_marker(entry.bemerkung, render_slot_marker(entry.kind.marker_kommkz))
    return MakeEmptySlot(
        reason=reason,
        komm_id=entry.komm_id,
        kommkz=kommkz,
        bemerkung=checked_bemerkung(bemerkung, f"Kommunikation {entry.komm_id}"),
    )


def _base(entry: Entry) -> str:
    return entry.bemerkung.value or ""


def new_entry(value: EspoValue, kommkz: int, reason: str) -> CreateKommunikation:
    """A new Advoware entry for an EspoCRM value (its kind is ours, hence known)."""
    check_tlf_length(value.value, f"EspoCRM {label(value)}")
    return CreateKommunikation(
        reason=reason,
        kommkz=kommkz,
        tlf=value.value,
        bemerkung=checked_bemerkung(render_value_marker(value.value, kommkz), "new Kommunikation"),
    )


def slot_reuse(slot: Mapping[str, Any], value: EspoValue, kommkz: int) -> UpdateKommunikation:
    """An EspoCRM value written into an empty slot of its kind (user text kept)."""
    check_tlf_length(value.value, f"EspoCRM {label(value)}")
    parsed = parse_bemerkung(slot.get("bemerkung"))
    marker = render_value_marker(value.value, kommkz)
    return UpdateKommunikation(
        reason="Var1: new in EspoCRM (reuses empty slot)",
        komm_id=slot["id"],
        tlf=value.value,
        bemerkung=checked_bemerkung(with_marker(parsed, marker), f"slot {slot['id']}"),
        online=bool(slot.get("online", False)),
    )


# --- EspoCRM items ----------------------------------------------------------------------------


def espocrm_item(entry: Entry, phone_type: str, like: Mapping[str, Any] | None) -> EspoValue:
    """The entry's value as an EspoCRM item (``like``: flags of a replaced item)."""
    item: dict[str, Any] = {
        "primary": False,
        "optOut": False,
        "invalid": False,
        **{k: v for k, v in (like or {}).items() if k in ("primary", "optOut")},
    }
    if entry.channel == EMAIL:
        item.update(emailAddress=entry.tlf, lower=entry.tlf.lower())
        return EspoValue(entry.channel, entry.tlf, None, item)
    item.update(phoneNumber=entry.tlf, type=phone_type)
    return EspoValue(entry.channel, entry.tlf, phone_type, item)


def with_one_primary(values: Sequence[EspoValue], table: KommKzTable) -> list[dict[str, Any]]:
    """Items for EspoCRM with exactly one primary: the kept one, else the table's choice."""
    items = [dict(v.item) for v in values]
    if not items:
        return items
    flagged = [i for i, item in enumerate(items) if item.get("primary")]
    chosen = flagged[0] if flagged else min(range(len(values)), key=_rank(values, table))
    for index, item in enumerate(items):
        item["primary"] = index == chosen
    return items


def _rank(values: Sequence[EspoValue], table: KommKzTable) -> Callable[[int], tuple[int, int]]:
    def rank(index: int) -> tuple[int, int]:
        value = values[index]
        kommkz = table.kommkz_for_new(value.channel, value.phone_type)
        return (table.primary_rank(kommkz), index)

    return rank


def label(value: EspoValue) -> str:
    """``"email"`` or ``"phone <type>"``: how a value is named in messages."""
    return "email" if value.channel == EMAIL else f"phone {value.phone_type}"


# --- note lines and warnings ------------------------------------------------------------------


def note_overwritten(entry: Entry, table: KommKzTable, why: str) -> str:
    """Stream Note line: the entry's Advoware value was overwritten with EspoCRM's."""
    return (
        f"Kommunikation {entry.komm_id} ({kind_name(entry, table)}): Advoware value "
        f"'{entry.tlf}' overwritten with the EspoCRM value ({why})"
    )


def note_emptied(entry: Entry, table: KommKzTable, why: str) -> str:
    """Stream Note line: the entry's Advoware value was replaced by an empty slot."""
    return (
        f"Kommunikation {entry.komm_id} ({kind_name(entry, table)}): Advoware value "
        f"'{entry.tlf}' replaced by an empty slot ({why})"
    )


def damaged_warnings(damaged: Sequence[Damaged], ops: Sequence[Op]) -> list[str]:
    """One warning per damaged marker: re-marked (an op rewrites the entry) or left as is."""
    rewritten = {getattr(op, "komm_id", None) for op in ops}
    warnings = []
    for item in damaged:
        if item.komm_id in rewritten:
            what = "re-marked; the damaged text is kept after the new marker"
        else:
            what = "left as is (nothing to mark in this run)"
        warnings.append(f"Kommunikation {item.komm_id}: damaged marker ({item.problem}) {what}")
    return warnings
