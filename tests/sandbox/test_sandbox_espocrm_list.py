"""EspoCRM list calls over real HTTP: where[] encoding and semantics, paging, order, select."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from sandbox.server import Sandbox
from tests.sandbox.conftest import Api


def http_build_query(prefix: str, value: Any) -> list[str]:
    """PHP ``http_build_query`` as EspoCRM's clients send it (lists as ``[]`` for scalars)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in http_build_query(f"{prefix}[{k}]", v)]
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [f"{quote(prefix + '[]', safe='')}={quote(str(v), safe='')}" for v in value]
        return [p for i, v in enumerate(value) for p in http_build_query(f"{prefix}[{i}]", v)]
    return [f"{quote(prefix, safe='')}={quote(str(value), safe='')}"]


def names(espo: Api, where: list[dict[str, Any]], **params: Any) -> list[str]:
    query = "&".join([*http_build_query("where", where), *(f"{k}={v}" for k, v in params.items())])
    response = espo.get(f"/CBeteiligte?{query}&orderBy=name&order=asc&maxSize=200")
    assert response.status_code == 200, response.text
    return [record["name"] for record in response.json()["list"]]


@pytest.fixture
def people(sandbox: Sandbox) -> None:
    records = [
        {"name": "A", "syncStatus": "dirty", "betnr": 9, "modifiedAt": "2026-02-08 09:00:00"},
        {"name": "B", "syncStatus": "clean", "betnr": 100000, "modifiedAt": "2026-02-08 11:00:00"},
        {"name": "C", "syncStatus": "failed", "modifiedAt": "2026-02-09 08:00:00"},
        {
            "name": "D",
            "syncStatus": "pending_sync",
            "syncErrorMessage": "",
            "modifiedAt": "2026-01-01 00:00",
        },
        {
            "name": "E",
            "syncStatus": "permanently_failed",
            "syncAutoResetAt": "2026-02-07 10:00:00",
            "modifiedAt": "2026-01-02 00:00:00",
        },
    ]
    sandbox.espocrm_admin.load({"espocrm": {"CBeteiligte": records}})


@pytest.mark.usefixtures("people")
class TestWhere:
    def test_equals_with_raw_espocrm_encoding(self, espo: Api) -> None:
        query = "where[0][type]=equals&where[0][attribute]=syncStatus&where[0][value]=dirty"
        assert [r["name"] for r in espo.get(f"/CBeteiligte?{query}").json()["list"]] == ["A"]

    def test_in_with_bracket_and_indexed_arrays(self, espo: Api) -> None:
        where = [{"type": "in", "attribute": "syncStatus", "value": ["dirty", "failed"]}]
        assert names(espo, where) == ["A", "C"]
        raw = (
            "where[0][type]=in&where[0][attribute]=syncStatus"
            "&where[0][value][0]=clean&where[0][value][1]=failed"
        )
        assert {r["name"] for r in espo.get(f"/CBeteiligte?{raw}").json()["list"]} == {"B", "C"}

    def test_not_equals_and_not_in_exclude_null_like_sql(self, espo: Api) -> None:
        assert names(espo, [{"type": "notEquals", "attribute": "betnr", "value": 9}]) == ["B"]
        where = [{"type": "notIn", "attribute": "syncStatus", "value": ["dirty", "clean"]}]
        assert names(espo, where) == ["C", "D", "E"]

    def test_is_null_matches_null_and_empty(self, espo: Api) -> None:
        where = [{"type": "isNull", "attribute": "syncErrorMessage"}]
        assert names(espo, where) == ["A", "B", "C", "D", "E"]
        assert names(espo, [{"type": "isNull", "attribute": "betnr"}]) == ["C", "D", "E"]
        assert names(espo, [{"type": "isNotNull", "attribute": "betnr"}]) == ["A", "B"]

    def test_integers_compare_numerically(self, espo: Api) -> None:
        assert names(espo, [{"type": "lessThan", "attribute": "betnr", "value": 10}]) == ["A"]
        where = [{"type": "greaterThan", "attribute": "betnr", "value": "10"}]
        assert names(espo, where) == ["B"]

    def test_datetimes_compare_chronologically(self, espo: Api) -> None:
        before = [{"type": "before", "attribute": "modifiedAt", "value": "2026-02-08 10:00:00"}]
        assert names(espo, before) == ["A", "D", "E"]
        after = [{"type": "after", "attribute": "modifiedAt", "value": "2026-02-08 9:30"}]
        assert names(espo, after) == ["B", "C"]
        reset_due = [
            {"type": "equals", "attribute": "syncStatus", "value": "permanently_failed"},
            {"type": "before", "attribute": "syncAutoResetAt", "value": "2026-02-08 00:00:00"},
        ]
        assert names(espo, reset_due) == ["E"]

    def test_nested_or_and(self, espo: Api) -> None:
        where = [
            {
                "type": "or",
                "value": [
                    {"type": "equals", "attribute": "syncStatus", "value": "dirty"},
                    {
                        "type": "and",
                        "value": [
                            {"type": "isNull", "attribute": "betnr"},
                            {"type": "in", "attribute": "syncStatus", "value": ["failed"]},
                        ],
                    },
                ],
            }
        ]
        assert names(espo, where) == ["A", "C"]

    @pytest.mark.parametrize(
        "query",
        [
            "where[0][type]=fuzzy&where[0][attribute]=name&where[0][value]=x",
            "where[0][type]=equals&where[0][attribute]=noSuchField&where[0][value]=x",
            "where[0][type]=equals&where[0][value]=x",
            "where[0=1",
            "where=plain",
            "where[0][type]=or&where[0][value]=x",
            "where[0][type]=in&where[0][attribute]=name&where[0][value]=notalist",
            "where[0][type]=lessThan&where[0][attribute]=betnr&where[0][value]=abc",
            "where[0][type]=before&where[0][attribute]=modifiedAt&where[0][value]=yesterday",
            "where[0][type]=equals&where[0][attribute]=name&where[0][value][x]=1",
            "where[0][type]=equals&where[0][type][x]=1",
        ],
    )
    def test_bad_where_is_400_with_reason(self, espo: Api, query: str) -> None:
        response = espo.get(f"/CBeteiligte?{query}")
        assert response.status_code == 400
        assert response.headers.get("X-Status-Reason")


@pytest.mark.usefixtures("people")
class TestPagingOrderSelect:
    def test_list_shape_and_default_max_size(self, sandbox: Sandbox, espo: Api) -> None:
        records = [{"name": f"N{i:02d}"} for i in range(25)]
        sandbox.espocrm_admin.load({"espocrm": {"CBeteiligte": records}})
        sandbox.espocrm_admin.configure(count_total=True)
        body = espo.get("/CBeteiligte").json()
        assert set(body) == {"list", "total"}
        assert body["total"] == 25 and len(body["list"]) == 20

    def test_max_size_above_200_is_403(self, espo: Api) -> None:
        assert espo.get("/CBeteiligte?maxSize=201").status_code == 403
        assert espo.get("/CBeteiligte?maxSize=200").status_code == 200
        assert espo.get("/CBeteiligte?maxSize=abc").status_code == 400

    def test_offset_and_order(self, espo: Api) -> None:
        page = espo.get("/CBeteiligte?orderBy=name&order=desc&offset=1&maxSize=2").json()
        assert [r["name"] for r in page["list"]] == ["D", "C"] and page["total"] == -1
        by_betnr = espo.get("/CBeteiligte?orderBy=betnr&order=asc").json()["list"]
        assert [r["betnr"] for r in by_betnr] == [None, None, None, 9, 100000]

    def test_unknown_order_by_or_order_is_400(self, espo: Api) -> None:
        assert espo.get("/CBeteiligte?orderBy=noSuchField").status_code == 400
        assert espo.get("/CBeteiligte?orderBy=name&order=sideways").status_code == 400

    def test_select_returns_only_those_fields_and_id(self, espo: Api) -> None:
        rows = espo.get("/CBeteiligte?select=name,syncStatus&orderBy=name&order=asc").json()
        assert set(rows["list"][0]) == {"id", "name", "syncStatus"}

    def test_paging_through_everything_is_stable(self, sandbox: Sandbox, espo: Api) -> None:
        stamp = "2026-01-01 00:00:00"
        records = [{"name": f"P{i}", "createdAt": stamp} for i in range(45)]
        sandbox.espocrm_admin.load({"espocrm": {"CBeteiligte": records}})
        seen = []
        for offset in range(0, 45, 10):
            seen += [
                r["id"] for r in espo.get(f"/CBeteiligte?offset={offset}&maxSize=10").json()["list"]
            ]
        assert len(seen) == len(set(seen)) == 45
