"""The hooks against rules of the real servers that the sandbox did not enforce: request-line
length (414), paging without a count, UTF-8 only, an Advoware without party search, and write
answers that carry only the ``betNr``. Every answer comes from the scripted server."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hooks.base import REQUEST_LINE_BUDGET, request_line_length
from hooks.espocrm import split_where_to_fit

from include.beteiligte_sync.errors import BadRequest, BadResponse, ServerError
from tests.hooks.scripted_server import REQUEST_LINE_LIMIT, Script, scripted_server
from tests.hooks.test_hooks_retry_policy import advo_hook, espo_hook, methods

TOKEN = (200, {}, {"access_token": "tok", "expires_in": 3300})
IN_VALUE = "where[0][value][]"


def query(path: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(path).query, keep_blank_values=True)


def request_lines(script: Script) -> list[int]:
    return [len(f"{method} {path} HTTP/1.1".encode()) for method, path, _, _ in script.seen]


def espocrm_list_server(method: str, path: str, body: bytes) -> tuple[int, dict[str, str], Any]:
    """Answer a CBeteiligte list request like EspoCRM: the ids of the ``in`` filter as records,
    paged by ``offset``/``maxSize``, with ``total: -1`` (no count)."""
    params = query(path)
    ids = [value for key, value in params if key == IN_VALUE]
    args = dict(params)
    offset, size = int(args["offset"]), int(args["maxSize"])
    page = [{"id": i, "name": f"Partei {i}"} for i in ids[offset : offset + size]]
    return 200, {}, {"list": page, "total": -1}


# -- 414: the request line ----------------------------------------------------------------------


def test_in_filter_of_1000_ids_is_cut_so_every_request_line_fits() -> None:
    ids = [f"{n:017d}" for n in range(1000)]  # EspoCRM ids are 17 characters
    with scripted_server(*[espocrm_list_server] * 40) as (url, script):
        found = list(
            espo_hook(url).iter_beteiligte([{"type": "in", "attribute": "id", "value": ids}])
        )
    assert sorted(r["id"] for r in found) == ids
    lines = request_lines(script)
    assert len(lines) > 1 and max(lines) <= REQUEST_LINE_LIMIT
    assert max(lines) <= REQUEST_LINE_BUDGET
    # one full request line would have been about 48 KB
    full = [("where[0][type]", "in"), ("where[0][attribute]", "id")]
    full += [(IN_VALUE, i) for i in ids]
    assert request_line_length("GET", url + "/api/v1/CBeteiligte", full) > 40_000


def test_limit_counts_over_all_chunks_and_other_filters_go_with_every_chunk() -> None:
    ids = [f"{n:017d}" for n in range(1000)]
    where = [
        {"type": "equals", "attribute": "syncStatus", "value": "dirty"},
        {"type": "in", "attribute": "id", "value": ids},
    ]

    def answer(method: str, path: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        params = query(path)
        assert ("where[0][value]", "dirty") in params
        chunk = [v for k, v in params if k == "where[1][value][]"]
        args = dict(params)
        offset, size = int(args["offset"]), int(args["maxSize"])
        return 200, {}, {"list": [{"id": i} for i in chunk[offset : offset + size]], "total": -2}

    with scripted_server(*[answer] * 40) as (url, script):
        found = list(espo_hook(url).iter_beteiligte(where, order_by="name", limit=250))
    assert [r["id"] for r in found] == ids[:250]
    assert max(request_lines(script)) <= REQUEST_LINE_BUDGET


def test_list_request_that_cannot_be_split_is_refused_before_sending() -> None:
    ids = [f"{n:017d}" for n in range(1000)]
    unsplittable = [
        [{"type": "notIn", "attribute": "id", "value": ids}],  # notIn is not a union of chunks
        [{"type": "equals", "attribute": "name", "value": "x" * 9000}],
        [{"type": "in", "attribute": "name", "value": ["x" * 9000, "y"]}],
    ]
    with scripted_server() as (url, script):
        hook = espo_hook(url)
        for where in unsplittable:
            with pytest.raises(BadRequest) as info:
                list(hook.iter_beteiligte(where))
            assert "414" in str(info.value) and info.value.request == "GET /api/v1/CBeteiligte"
    assert script.seen == []


def test_any_request_over_the_line_budget_is_refused_before_sending() -> None:
    with scripted_server(TOKEN) as (url, script), pytest.raises(BadRequest):
        advo_hook(url).find_beteiligte("x" * 9000)
    assert script.seen == []


def test_long_path_without_query_is_refused_before_sending_too() -> None:
    with scripted_server() as (url, script), pytest.raises(BadRequest):
        espo_hook(url).get_beteiligte("x" * 9000)
    assert script.seen == []


def test_request_line_length_counts_the_encoded_absolute_url() -> None:
    params = [("where[0][value][]", "a b"), ("name", "Mäier")]
    line = "GET http://h:1/p?where%5B0%5D%5Bvalue%5D%5B%5D=a+b&name=M%C3%A4ier HTTP/1.1"
    assert request_line_length("GET", "http://h:1/p", params) == len(line)


def test_split_where_to_fit_cuts_the_longest_in_list_and_keeps_the_rest() -> None:
    where = [
        {"type": "in", "attribute": "syncStatus", "value": ["dirty", "failed"]},
        {"type": "in", "attribute": "id", "value": ["a", "b", "c", "b", "d", "e"]},
    ]

    def fits(items: list[Any]) -> bool:
        return len(items[1]["value"]) <= 2

    chunks = split_where_to_fit(where, fits)
    assert [c[1]["value"] for c in chunks] == [["a", "b"], ["c", "d"], ["e"]]  # deduplicated
    assert all(c[0] == where[0] and c[1]["attribute"] == "id" for c in chunks)
    assert split_where_to_fit(where, lambda items: True) == [where]


# -- paging without a count ------------------------------------------------------------------


def paged_hook(url: str) -> Any:
    hook = espo_hook(url)
    hook.page_size = 2
    return hook


def page(*ids: str, total: int) -> tuple[int, dict[str, str], Any]:
    return 200, {}, {"list": [{"id": i} for i in ids], "total": total}


@pytest.mark.parametrize(
    ("totals", "why"),
    [((-1, -1, -2), "no count"), ((2, 2, 2), "a total too small"), ((-2, -2, -2), "no more")],
)
def test_paging_goes_on_until_a_short_page_whatever_total_says(
    totals: tuple[int, int, int], why: str
) -> None:
    steps = [page("a", "b", total=totals[0]), page("c", "d", total=totals[1])]
    steps.append(page("e", total=totals[2]))
    with scripted_server(*steps) as (url, script):
        found = list(paged_hook(url).iter_beteiligte())
    assert [r["id"] for r in found] == ["a", "b", "c", "d", "e"], why
    offsets = [dict(query(path))["offset"] for _, path, _, _ in script.seen]
    assert offsets == ["0", "2", "4"]
    assert {dict(query(path))["maxSize"] for _, path, _, _ in script.seen} == {"2"}


def test_paging_stops_at_a_short_page_even_if_total_promises_more() -> None:
    with scripted_server(page("a", total=500), page("x", total=500)) as (url, script):
        found = list(paged_hook(url).iter_beteiligte())
    assert [r["id"] for r in found] == ["a"] and len(script.seen) == 1


def test_page_longer_than_asked_for_is_a_bad_response() -> None:
    with scripted_server(page("a", "b", "c", total=-1)) as (url, _), pytest.raises(BadResponse):
        list(paged_hook(url).iter_beteiligte())


def test_count_without_a_total_counts_the_ids() -> None:
    steps = [page("a", total=-1), page("a", "b", total=-1), page("c", total=-2)]
    with scripted_server(*steps) as (url, script):
        assert paged_hook(url).count_beteiligte() == 3
    assert dict(query(script.seen[1][1]))["select"] == "id"


# -- UTF-8 only --------------------------------------------------------------------------------

LATIN1 = json.dumps({"id": "a", "name": "Mäier"}, ensure_ascii=False).encode("latin-1")


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=ISO-8859-1", "text/plain"]
)
def test_latin1_body_is_a_bad_response_never_replacement_characters(content_type: str) -> None:
    step = (200, {"Content-Type": content_type}, LATIN1)
    with scripted_server(step) as (url, script), pytest.raises(BadResponse) as info:
        espo_hook(url).get_beteiligte("a")
    assert "UTF-8" in str(info.value) and len(script.seen) == 1


def test_utf8_body_is_read_as_utf8_whatever_charset_the_server_claims() -> None:
    body = json.dumps({"id": "a", "name": "Mäier"}, ensure_ascii=False).encode()
    step = (200, {"Content-Type": "application/json; charset=ISO-8859-1"}, body)
    with scripted_server(step) as (url, _):
        assert espo_hook(url).get_beteiligte("a")["name"] == "Mäier"


def test_advoware_latin1_party_is_a_bad_response() -> None:
    with scripted_server(TOKEN, (200, {}, LATIN1)) as (url, _), pytest.raises(BadResponse):
        advo_hook(url).get_beteiligte(1)


# -- Advoware: party search is optional --------------------------------------------------------


@pytest.mark.parametrize("status", [404, 405])
def test_missing_party_search_returns_none_and_is_not_asked_again(status: int) -> None:
    with scripted_server(TOKEN, (status, {}, {"Message": "no route"})) as (url, script):
        hook = advo_hook(url)
        assert hook.find_beteiligte("Muster") is None
        assert hook.find_beteiligte("Other") is None
    assert methods(script) == ["POST /api/v1/Token", "GET /api/v1/advonet/Beteiligte"]


def test_existing_party_search_returns_the_list() -> None:
    party = {"betNr": 7, "name": "Muster", "rowId": "AA==", "kommunikation": []}
    with scripted_server(TOKEN, (200, {}, [party]), (200, {}, [])) as (url, script):
        hook = advo_hook(url)
        assert hook.find_beteiligte("Muster") == [party]
        assert hook.find_beteiligte("Nobody") == []
    assert [dict(query(p)) for _, p, _, _ in script.seen[1:]] == [
        {"name": "Muster"},
        {"name": "Nobody"},
    ]


def test_other_search_errors_are_raised_and_not_taken_as_absence() -> None:
    with scripted_server(TOKEN, (400, {}, {}), (200, {}, [])) as (url, _):
        hook = advo_hook(url)
        with pytest.raises(BadRequest):
            hook.find_beteiligte("Muster")
        assert hook.find_beteiligte("Muster") == []


def test_lost_create_without_party_search_is_raised_not_repeated() -> None:
    with scripted_server(TOKEN, (404, {}, {}), "reset") as (url, script):
        with pytest.raises(ServerError) as info:
            advo_hook(url).create_beteiligte({"name": "Muster"})
        assert info.value.status is None  # no answer
    assert methods(script).count("POST /api/v1/advonet/Beteiligte") == 1


# -- Advoware: write answers carry only the betNr ----------------------------------------------


def test_created_party_is_the_answer_with_only_its_betnr() -> None:
    with scripted_server(TOKEN, (404, {}, {}), (200, {}, {"betNr": 123})) as (url, script):
        created = advo_hook(url).create_beteiligte({"name": "Muster", "vorname": "Max"})
    assert created == {"betNr": 123}
    assert methods(script)[-1] == "POST /api/v1/advonet/Beteiligte"  # no read-back


def test_party_and_kommunikation_updates_return_only_the_betnr() -> None:
    with scripted_server(TOKEN, (200, {}, {"betNr": 123}), (200, {}, {"betNr": 123})) as (
        url,
        script,
    ):
        hook = advo_hook(url)
        assert hook.update_beteiligte(123, {"vorname": "Moritz"}) == {"betNr": 123}
        assert hook.update_kommunikation(123, 9, {"tlf": "030 2"}) == {"betNr": 123}
    assert [m for m, _, _, _ in script.seen] == ["POST", "PUT", "PUT"]


def test_new_kommunikation_is_found_by_reading_the_party_after_a_betnr_only_answer() -> None:
    old = {"id": 1, "betNr": 123, "tlf": "030 1", "bemerkung": "", "kommKz": 0}
    new = {"id": 2, "betNr": 123, "tlf": "030 1", "bemerkung": "", "kommKz": 0}
    before = {"betNr": 123, "rowId": "AA==", "kommunikation": [old]}
    after = {"betNr": 123, "rowId": "AA==", "kommunikation": [old, new]}
    steps = [TOKEN, (200, {}, before), (200, {}, {"betNr": 123}), (200, {}, after)]
    with scripted_server(*steps) as (url, script):
        hook = advo_hook(url)
        assert hook.create_kommunikation(123, {"tlf": "030 1", "bemerkung": "", "kommKz": 1}) == new
    assert methods(script)[1:] == [
        "GET /api/v1/advonet/Beteiligte/123",
        "POST /api/v1/advonet/Beteiligte/123/Kommunikationen",
        "GET /api/v1/advonet/Beteiligte/123",
    ]


def test_kommunikation_after_a_new_party_needs_no_read_before_it() -> None:
    entry = {"id": 5, "betNr": 123, "tlf": "a@b.de", "bemerkung": "", "kommKz": 0}
    steps = [
        TOKEN,
        (404, {}, {}),  # no party search
        (200, {}, {"betNr": 123}),
        (200, {}, {"betNr": 123}),
        (200, {}, {"betNr": 123, "kommunikation": [entry]}),
    ]
    with scripted_server(*steps) as (url, script):
        hook = advo_hook(url)
        hook.create_beteiligte({"name": "Muster"})
        assert hook.create_kommunikation(123, {"tlf": "a@b.de", "kommKz": 4})["id"] == 5
    assert [m for m, _, _, _ in script.seen] == ["POST", "GET", "POST", "POST", "GET"]


@pytest.mark.parametrize("answer", [{}, {"betNr": None}, {"betNr": True}, [], "123"])
def test_write_answer_without_a_betnr_is_a_bad_response(answer: Any) -> None:
    with scripted_server(TOKEN, (200, {}, answer)) as (url, _), pytest.raises(BadResponse):
        advo_hook(url).update_beteiligte(123, {"vorname": "Moritz"})
