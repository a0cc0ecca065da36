"""Bad input: a corpus of malformed data from both APIs, each run through a whole sync run.

Every case runs one scheduled run over three entities: the bad one, a new party and a linked
party with a pending change. Asserted for every case:

* the run does not crash, and the other two entities sync normally (``clean``, change applied);
* nothing on either side is destroyed: every value held before (Advoware ``tlf`` and user text
  in ``bemerkung``, EspoCRM values) is still held afterwards;
* ``error`` cases: the bad entity is ``failed`` with a readable ``syncErrorMessage`` that names
  the problem (a field, ``Kommunikation``, the API request) and holds no full personal value;
  its data on both sides is untouched;
* ``tolerated`` cases (a damaged marker, text that is merely unusual: non-BMP, HTML, control
  characters in user text): the data is synced as it is, the damaged marker kept as user text.

Answers only an API can produce (a party without betNr, not an object, kommunikation of the
wrong type) come through a client proxy here. Truncated JSON, unexpected status codes, HTML
pages, empty bodies and JSON lists on the wire are in ``test_proof_bad_http.py`` (hooks and
engine over HTTP).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from include.beteiligte_sync.markers import render_slot_marker, render_value_marker
from include.beteiligte_sync.sync import sync_all
from tests.fakes import FakePair

Mutate = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Case:
    """One corpus entry.

    :param name: what is malformed.
    :param expect: ``error`` (failed with a readable message) or ``tolerated`` (synced).
    :param mentions: a word the message must contain (error cases).
    :param espocrm: mutation of the bad entity's EspoCRM record as stored.
    :param advoware: mutation of the bad party as the API answers it (GET).
    :param stored: mutation of the bad party as Advoware stores it (what a person typed).
    :param new_entity: the bad entity is new in EspoCRM (no betnr) instead of linked.
    :param secret: a personal value that must not appear in the message.
    """

    name: str
    expect: str
    mentions: str = ""
    espocrm: Mutate | None = None
    advoware: Mutate | None = None
    stored: Mutate | None = None
    new_entity: bool = False
    secret: str = ""


def _set(key: str, value: Any) -> Mutate:
    def mutate(record: dict[str, Any]) -> None:
        record[key] = value

    return mutate


def _drop(key: str) -> Mutate:
    def mutate(record: dict[str, Any]) -> None:
        record.pop(key, None)

    return mutate


def _komm(**entry: Any) -> Mutate:
    """Add one Kommunikation to the party (as stored: a person typed it so)."""

    def mutate(party: dict[str, Any]) -> None:
        base = {"id": 777001, "betNr": party.get("betNr"), "rowId": "R777", "kommKz": 0}
        party["kommunikation"] = [*party.get("kommunikation", []), {**base, **entry}]

    return mutate


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


LONG = "X" * 300
BAD_UTF8_MARKER = "[ESPOCRM:" + _b64(b"\xff\xfe") + ":1]"
CASES = [
    # --- markers (Advoware bemerkung) -----------------------------------------------------
    Case(
        "marker with invalid base64",
        "tolerated",
        stored=_komm(tlf="0301", bemerkung="[ESPOCRM:!!!:1] Büro"),
    ),
    Case("truncated marker", "tolerated", stored=_komm(tlf="0302", bemerkung="[ESPOCRM:MDMwMQ==")),
    Case(
        "marker with unknown kommKz",
        "tolerated",
        stored=_komm(tlf="0303", bemerkung=render_value_marker("0303", 99)),
    ),
    Case(
        "marker with kommKz 0",
        "tolerated",
        stored=_komm(tlf="0304", bemerkung=render_value_marker("0304", 0)),
    ),
    Case(
        "two markers",
        "tolerated",
        stored=_komm(tlf="0305", bemerkung=render_value_marker("0305", 1) + render_slot_marker(1)),
    ),
    Case(
        "slot marker of an unknown kind",
        "tolerated",
        stored=_komm(tlf="", bemerkung="[ESPOCRM-SLOT:42]"),
    ),
    Case(
        "marker base64 of invalid UTF-8",
        "tolerated",
        stored=_komm(tlf="0306", bemerkung=BAD_UTF8_MARKER),
    ),
    Case(
        "marker with empty value", "tolerated", stored=_komm(tlf="0307", bemerkung="[ESPOCRM::1]")
    ),
    # --- Kommunikation values and kinds ------------------------------------------------------
    Case(
        "unknown kommKz, no marker", "tolerated", stored=_komm(tlf="0308", kommKz=77, bemerkung="")
    ),
    Case("tlf not text", "error", "tlf", stored=_komm(tlf=4930123, bemerkung="")),
    Case(
        "invalid email in Advoware",
        "error",
        "email",
        stored=_komm(tlf="kein-mail@", kommKz=4, bemerkung=render_slot_marker(4)),
        secret="kein-mail@",
    ),
    Case(
        "over-long phone in EspoCRM",
        "error",
        "characters",
        espocrm=_set(
            "phoneNumberData", [{"phoneNumber": "1" * 150, "type": "Office", "primary": True}]
        ),
        secret="1" * 150,
    ),
    Case(
        "EspoCRM email list not a list",
        "error",
        "emailAddressData",
        espocrm=_set("emailAddressData", "a@b.de"),
    ),
    Case(
        "EspoCRM phone value not text",
        "error",
        "phoneNumberData",
        espocrm=_set("phoneNumberData", [{"phoneNumber": 301234, "type": "Office"}]),
    ),
    Case(
        "kommunikation not a list",
        "error",
        "kommunikation",
        advoware=_set("kommunikation", {"id": 1}),
    ),
    Case(
        "Kommunikation entry not an object",
        "error",
        "kommunikation",
        advoware=_set("kommunikation", ["0301 1234"]),
    ),
    Case(
        "control characters in user text",
        "tolerated",
        stored=_komm(tlf="0309", bemerkung="Notiz\x00\x1b[31m"),
    ),
    # --- Stammdaten ---------------------------------------------------------------------------
    Case(
        "name missing on a new entity", "error", "name", espocrm=_set("name", None), new_entity=True
    ),
    Case("name too long for Advoware", "error", "name", espocrm=_set("name", "N" * 120)),
    Case("vorname too long for Advoware", "error", "vorname", espocrm=_set("vorname", "V" * 70)),
    Case("name not text in EspoCRM", "error", "name", espocrm=_set("name", 12345)),
    Case(
        "invalid date in EspoCRM",
        "error",
        "geburtsdatum",
        espocrm=_set("geburtsdatum", "31.12.1980"),
    ),
    Case(
        "invalid date in Advoware",
        "error",
        "geburtsdatum",
        advoware=_set("geburtsdatum", "2020-13-45T00:00:00"),
    ),
    Case("name not text in Advoware", "error", "name", advoware=_set("name", ["Muster"])),
    Case("over-long name from Advoware", "error", "name", advoware=_set("name", LONG)),
    Case("non-BMP text", "tolerated", espocrm=_set("vorname", "Jürgen 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 😀")),
    Case("HTML in a name", "tolerated", espocrm=_set("titel", "<b>Dr.</b><script>x</script>")),
    Case(
        "control characters in a name", "error", "control", espocrm=_set("vorname", "Max\x00\x07")
    ),
    # --- records of the wrong shape -----------------------------------------------------------
    Case("betnr not a number", "error", "betnr", espocrm=_set("betnr", "abc")),
    Case("party answer without betNr", "error", "betNr", advoware=_drop("betNr")),
    Case("party answer not an object", "error", "Advoware", advoware=lambda p: p.clear()),
    Case("syncRetryCount of the wrong type", "tolerated", espocrm=_set("syncRetryCount", "viele")),
    Case("unknown syncStatus", "tolerated", espocrm=_set("syncStatus", "dirty; DROP TABLE")),
]


class MalformedAdvoware:
    """Answers GET of one party through ``mutate`` (what a broken API would send)."""

    def __init__(self, inner: Any, betnr: int, mutate: Mutate) -> None:
        self._inner, self._betnr, self._mutate = inner, betnr, mutate

    def get_beteiligte(self, betnr: int) -> dict[str, Any]:
        party = self._inner.get_beteiligte(betnr)
        if betnr == self._betnr:
            self._mutate(party)
        return party

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class MalformedEspoCrm:
    """Answers GET of one whole record through ``mutate``: EspoCRM stores its email and phone
    lists normalised, so malformed ones can only come as a broken answer."""

    def __init__(self, inner: Any, entity_id: str, mutate: Mutate) -> None:
        self._inner, self._entity_id, self._mutate = inner, entity_id, mutate

    def get_beteiligte(self, entity_id: str) -> dict[str, Any]:
        record = self._inner.get_beteiligte(entity_id)
        if entity_id == self._entity_id:
            self._mutate(record)
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


ARRAYS = ("emailAddressData", "phoneNumberData")


def _touches_arrays(mutate: Mutate) -> bool:
    probe: dict[str, Any] = {}
    mutate(probe)
    return any(key in probe for key in ARRAYS)


@dataclass
class Setup:
    pair: FakePair
    bad: str
    new: str
    linked: str


def _setup(case: Case) -> Setup:
    pair = FakePair()
    linked = pair.espocrm.create_as_person({"name": "Gut", "vorname": "Linda"})["id"]
    bad = pair.espocrm.create_as_person(
        {
            "name": "Bad",
            "vorname": "Bernd",
            "emailAddressData": [{"emailAddress": "bernd@example.org"}],
            "phoneNumberData": [{"phoneNumber": "+49 30 111", "type": "Office"}],
        }
    )["id"]
    if case.new_entity:
        sync_all(pair.espocrm, pair.advoware, clock=pair.clock, entity_ids=[linked])
    else:
        sync_all(pair.espocrm, pair.advoware, clock=pair.clock)
    pair.clock.advance(minutes=20)
    new = pair.espocrm.create_as_person({"name": "Neu GmbH", "rechtsform": "GmbH"})["id"]
    pair.espocrm.edit_as_person(linked, {"vorname": "Lina"})
    if case.espocrm and _touches_arrays(case.espocrm):
        pair.espocrm.records[bad]["syncStatus"] = "dirty"  # a person's save: read it whole
    elif case.espocrm:
        case.espocrm(pair.espocrm.records[bad])
    if case.stored:
        case.stored(pair.advoware.parties[pair.espocrm.records[bad]["betnr"]])
    return Setup(pair, bad, new, linked)


def _held_values(pair: FakePair) -> Iterator[str]:
    """Every value either side holds (tlf, bemerkung user text, EspoCRM values)."""
    for party in pair.advoware.parties.values():
        for komm in party["kommunikation"]:
            if isinstance(komm.get("tlf"), str) and komm["tlf"]:
                yield komm["tlf"]
    for record in pair.espocrm.records.values():
        for key in ("name", "vorname", "titel"):
            if isinstance(record.get(key), str):
                yield record[key]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _all_text(pair: FakePair) -> str:
    """Every text either side holds, joined (values are searched in it)."""
    return "\n".join(_strings([pair.advoware.parties, pair.espocrm.records]))


BUSINESS = ("name", "vorname", "titel", "geburtsdatum", "emailAddressData", "phoneNumberData")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_one_entity_readably_and_destroys_nothing(case: Case) -> None:
    s = _setup(case)
    pair = s.pair
    betnr = pair.espocrm.records[s.bad].get("betnr")
    advoware: Any = pair.advoware
    if case.advoware:
        advoware = MalformedAdvoware(pair.advoware, int(betnr), case.advoware)
    espocrm: Any = pair.espocrm
    if case.espocrm and _touches_arrays(case.espocrm):
        espocrm = MalformedEspoCrm(pair.espocrm, s.bad, case.espocrm)
    before_values = list(_held_values(pair))
    before_party = (
        copy.deepcopy(pair.advoware.parties.get(betnr)) if isinstance(betnr, int) else None
    )
    before_record = {k: copy.deepcopy(pair.espocrm.records[s.bad].get(k)) for k in BUSINESS}

    results = sync_all(espocrm, advoware, clock=pair.clock, entity_ids=[s.bad, s.new, s.linked])

    by_id = {r.entity_id: r for r in results}
    assert set(by_id) == {s.bad, s.new, s.linked}
    # the others sync normally
    assert pair.espocrm.records[s.new]["syncStatus"] == "clean", by_id[s.new]
    assert pair.espocrm.records[s.linked]["syncStatus"] == "clean", by_id[s.linked]
    linked_betnr = pair.espocrm.records[s.linked]["betnr"]
    assert pair.advoware.parties[linked_betnr]["vorname"] == "Lina"
    # nothing destroyed
    text = _all_text(pair)
    assert all(value in text for value in before_values)
    record = pair.espocrm.records[s.bad]
    if case.expect == "error":
        message = record.get("syncErrorMessage") or ""
        assert record["syncStatus"] == "failed", (record["syncStatus"], message)
        assert case.mentions.lower() in message.lower(), message
        assert "internal error" not in message and "Traceback" not in message
        assert len(message) <= 2000
        if case.secret:
            assert case.secret not in message
        assert {k: record.get(k) for k in BUSINESS} == before_record
        if before_party is not None:
            assert pair.advoware.parties[betnr] == before_party
    else:
        assert record["syncStatus"] == "clean", (record["syncStatus"], record["syncErrorMessage"])


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert {c.expect for c in CASES} == {"error", "tolerated"}
