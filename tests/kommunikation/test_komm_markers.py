"""Marker grammar and the kommKz table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from include.beteiligte_sync.kommkz import (
    DEFAULT_TABLE,
    detect_kommkz,
    normalise_value,
    table_from_config,
)
from include.beteiligte_sync.kommunikation import (
    Kind,
    find_empty_slot,
    is_sync_relevant,
    resolve_kind,
    resolve_kommkz,
)
from include.beteiligte_sync.markers import (
    MarkerKind,
    parse_bemerkung,
    render_slot_marker,
    render_value_marker,
    with_marker,
)

user_text = st.text().filter(lambda t: "[ESPOCRM" not in t)
values = st.text(min_size=1)
codes = st.sampled_from(sorted(DEFAULT_TABLE.kinds))


@given(prefix=user_text, value=values, kommkz=codes, text=user_text)
def test_value_marker_round_trip_keeps_user_text_byte_for_byte(
    prefix: str, value: str, kommkz: int, text: str
) -> None:
    parsed = parse_bemerkung(prefix + render_value_marker(value, kommkz) + text)
    assert parsed.kind is MarkerKind.VALUE
    assert (parsed.prefix, parsed.value, parsed.kommkz, parsed.text) == (
        prefix,
        value,
        kommkz,
        text,
    )


@given(kommkz=codes, text=user_text, new_value=values)
def test_replacing_a_marker_keeps_user_text(kommkz: int, text: str, new_value: str) -> None:
    parsed = parse_bemerkung(render_slot_marker(kommkz) + text)
    assert parsed.is_slot and parsed.kommkz == kommkz and parsed.text == text
    again = parse_bemerkung(with_marker(parsed, render_value_marker(new_value, kommkz)))
    assert (again.value, again.text) == (new_value, text)


@given(text=user_text)
def test_unmarked_text_is_kept_whole_after_a_new_marker(text: str) -> None:
    parsed = parse_bemerkung(text)
    assert parsed.kind is MarkerKind.NONE and parsed.text == text
    marked = parse_bemerkung(with_marker(parsed, render_value_marker("x", 1)))
    assert marked.is_value
    assert marked.text.strip() == text.strip() and text in marked.text


@pytest.mark.parametrize(
    ("bemerkung", "problem"),
    [
        ("[ESPOCRM:!!notbase64!!:1] Büro", "invalid base64 in marker"),
        ("[ESPOCRM:/w==:1] Büro", "invalid base64 in marker"),  # not UTF-8
        ("[ESPOCRM:MTIz:99] Büro", "unknown kommKz in marker"),
        ("[ESPOCRM:MTIz:0]", "unknown kommKz in marker"),
        ("[ESPOCRM-SLOT:42]", "unknown kommKz in slot marker"),
        ("[ESPOCRM:MTIz:1", "truncated or unreadable marker"),
        ("[ESPOCRM-SLOT:1", "truncated or unreadable marker"),
        ("[ESPOCRM", "truncated or unreadable marker"),
        ("[ESPOCRM:MTIz:1][ESPOCRM-SLOT:1]", "more than one marker"),
        ("Zentrale [ESPOCRM:MTIz:1] alt [ESPOCRM:MTIz:1]", "more than one marker"),
    ],
)
def test_malformed_markers_are_reported_and_keep_the_whole_text(
    bemerkung: str, problem: str
) -> None:
    parsed = parse_bemerkung(bemerkung)
    assert parsed.kind is MarkerKind.MALFORMED
    assert parsed.problem == problem
    assert parsed.text == bemerkung and parsed.value is None and parsed.kommkz is None
    assert "123" not in problem  # MTIz is base64 of "123": no value in the report


@given(st.text())
def test_parsing_never_raises(bemerkung: str) -> None:
    parse_bemerkung(bemerkung)


def test_none_bemerkung_is_unmarked() -> None:
    assert parse_bemerkung(None).kind is MarkerKind.NONE


@pytest.mark.parametrize(
    ("value", "kommkz"),
    [
        ("max@example.org", 4),
        (" Max@Example.org ", 4),
        ("https://kanzlei.example", 5),
        ("www.kanzlei.example", 5),
        ("+49 30 1234-56", 1),
        ("23423", 1),
        ("nicht@", 1),
    ],
)
def test_kind_detection_from_the_value(value: str, kommkz: int) -> None:
    assert detect_kommkz(value) == kommkz


def test_kind_comes_from_report_then_marker_else_it_is_unknown() -> None:
    marked = {"kommKz": 0, "tlf": "030 1", "bemerkung": render_value_marker("030 1", 6)}
    assert resolve_kommkz(marked) == 6
    typed_slot = {"kommKz": 0, "tlf": "030 1", "bemerkung": render_slot_marker(3)}
    assert resolve_kommkz(typed_slot) == 3
    assert resolve_kommkz({"kommKz": 9, "tlf": "030 1", "bemerkung": ""}) == 9
    assert resolve_kommkz({"kommKz": 0, "tlf": "a@b.de", "bemerkung": ""}) == 4
    # Unknown kind (reported 0, no readable marker): routed by form, never as TelGesch.
    damaged = {"kommKz": 0, "tlf": "030 1", "bemerkung": "[ESPOCRM:x"}
    assert resolve_kommkz(damaged) == 10
    assert resolve_kind(damaged) == Kind(10, known=False)
    # Advoware's report (not 0) beats a marker's kind.
    assert resolve_kind({"kommKz": 2, "tlf": "030 1", "bemerkung": render_slot_marker(1)}) == Kind(
        2, known=True
    )


def test_espocrm_homes_follow_the_table() -> None:
    table = DEFAULT_TABLE
    assert [table.channel(k) for k in (4, 8)] == ["email", "email"]
    assert {k: table.phone_type(k) for k in (1, 2, 3, 6, 7, 9, 10)} == {
        1: "Office",
        2: "Fax",
        3: "Mobile",
        6: "Home",
        7: "Fax",
        9: "Mobile",
        10: "Other",
    }
    assert [table.channel(k) for k in (5, 11, 12)] == [None, None, None]
    new = {t: table.kommkz_for_new("phone", t) for t in ("Office", "Fax", "Mobile", "Home")}
    assert new == {"Office": 1, "Fax": 2, "Mobile": 3, "Home": 6}
    assert table.kommkz_for_new("phone", "Other") == 10
    assert table.kommkz_for_new("phone", "Pager") == 10  # unknown type -> Other
    assert table.kommkz_for_new("email") == 4


def test_unsynced_kinds_are_never_sync_relevant_unless_configured() -> None:
    website = {"kommKz": 5, "tlf": "https://kanzlei.example", "bemerkung": ""}
    unmarked_url = {"kommKz": 0, "tlf": "www.kanzlei.example", "bemerkung": ""}
    assert not is_sync_relevant(website)
    assert not is_sync_relevant(unmarked_url)
    table = table_from_config({"kinds": {"5": {"channel": "phone", "phone_type": "Other"}}})
    assert is_sync_relevant(website, table=table)
    assert table.phone_type(5) == "Other"


@pytest.mark.parametrize(
    "config",
    [
        {"kinds": {"5": {"channel": "fax"}}},
        {"kinds": {"5": {"channel": "phone", "phone_type": "Pager"}}},
        {"kommkz_for_phone_type": {"Office": 42}},
        {"email_kommkz": 1},
    ],
)
def test_bad_table_config_is_refused(config: dict) -> None:
    with pytest.raises(ValueError):
        table_from_config(config)


def test_sync_relevant_iff_tlf_is_not_empty() -> None:
    assert is_sync_relevant({"kommKz": 0, "tlf": "23423", "bemerkung": "[ESPOCRM-SLOT:1]"})
    assert not is_sync_relevant({"kommKz": 1, "tlf": "", "bemerkung": "[ESPOCRM-SLOT:1]"})
    assert not is_sync_relevant({"kommKz": 1, "tlf": "  ", "bemerkung": ""})
    assert not is_sync_relevant({"kommKz": 1, "tlf": None, "bemerkung": ""})
    assert is_sync_relevant({"kommKz": 1, "tlf": "1", "bemerkung": render_value_marker("2", 1)})


def test_find_empty_slot_needs_empty_tlf_and_a_slot_marker_of_the_kind() -> None:
    komm = [
        {"id": 1, "tlf": "", "bemerkung": ""},  # empty but no slot marker
        {"id": 2, "tlf": "", "bemerkung": render_value_marker("x", 1)},
        {"id": 3, "tlf": "0301", "bemerkung": render_slot_marker(1)},  # typed into
        {"id": 4, "tlf": "", "bemerkung": render_slot_marker(2)},  # other kind
        {"id": 5, "tlf": "", "bemerkung": "Notiz " + render_slot_marker(1) + " alt"},
    ]
    assert find_empty_slot(1, komm)["id"] == 5
    assert find_empty_slot(1, komm, exclude_ids=[5]) is None
    assert find_empty_slot(2, komm)["id"] == 4


def test_values_are_compared_normalised() -> None:
    assert normalise_value("phone", "+49 (30) 123-45/6") == normalise_value("phone", "+4930123456")
    assert normalise_value("email", " Max@Example.ORG") == "max@example.org"
