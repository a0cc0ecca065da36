"""Bad input never crashes the sandbox: it gets the 4xx the real API would give."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.server import Sandbox
from sandbox.testing import advoware_session, espocrm_session


@pytest.fixture(scope="module")
def shared() -> Iterator[Sandbox]:
    """One sandbox for the fuzz tests (hypothesis runs many examples per test)."""
    with Sandbox() as sb:
        sb.espocrm_admin.edit(create={"name": "Fuzz"})
        sb.advoware_admin.edit(create={"name": "Fuzz GmbH"})
        yield sb


def test_malformed_json_is_400_on_every_write(sandbox: Sandbox) -> None:
    espo = espocrm_session(sandbox)
    advo = advoware_session(sandbox)
    record = espo.post(f"{sandbox.espocrm_url}/api/v1/CBeteiligte", json={"name": "x"}).json()
    party = advo.post(f"{sandbox.advoware_url}/api/v1/advonet/Beteiligte", json={"name": "x"})
    betnr = party.json()["betNr"]
    targets = [
        (espo, "POST", f"{sandbox.espocrm_url}/api/v1/CBeteiligte"),
        (espo, "PUT", f"{sandbox.espocrm_url}/api/v1/CBeteiligte/{record['id']}"),
        (espo, "POST", f"{sandbox.espocrm_url}/api/v1/Note"),
        (advo, "POST", f"{sandbox.advoware_url}/api/v1/advonet/Beteiligte"),
        (advo, "PUT", f"{sandbox.advoware_url}/api/v1/advonet/Beteiligte/{betnr}"),
        (advo, "POST", f"{sandbox.advoware_url}/api/v1/advonet/Beteiligte/{betnr}/Kommunikationen"),
    ]
    for session, method, url in targets:
        for body in (b"{", b"", b"\xff\xfe", b"[1, 2]", b"null"):
            answer = session.request(method, url, data=body, timeout=5)
            assert answer.status_code == 400, (method, url, body)


def test_unknown_path_is_404_and_wrong_method_is_405(sandbox: Sandbox) -> None:
    espo = espocrm_session(sandbox)
    assert espo.get(f"{sandbox.espocrm_url}/api/v1/Nothing", timeout=5).status_code == 404
    assert espo.patch(f"{sandbox.espocrm_url}/api/v1/Note", timeout=5).status_code == 405
    assert requests.get(f"{sandbox.espocrm_url}/_admin/nothing", timeout=5).status_code == 404


def test_non_numeric_betnr_is_400(sandbox: Sandbox) -> None:
    advo = advoware_session(sandbox)
    answer = advo.get(f"{sandbox.advoware_url}/api/v1/advonet/Beteiligte/abc", timeout=5)
    assert answer.status_code == 400


def test_garbage_on_the_socket_does_not_stop_the_server(sandbox: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", sandbox.espocrm.port), timeout=5) as sock:
        sock.sendall(b"\x00\x01 NOT HTTP AT ALL\r\n\r\n")
        assert b"400" in sock.recv(1000)  # stdlib answers garbage as HTTP/0.9: body only
    with socket.create_connection(("127.0.0.1", sandbox.espocrm.port), timeout=5) as sock:
        sock.sendall(b"POST /api/v1/CBeteiligte HTTP/1.1\r\nContent-Length: x\r\n\r\n")
        assert b" 400 " in sock.recv(100)
    assert requests.get(f"{sandbox.espocrm_url}/_admin/state", timeout=5).status_code == 200


def test_bad_admin_input_is_400(sandbox: Sandbox) -> None:
    base = sandbox.espocrm_url
    assert requests.post(f"{base}/_admin/scenario", data=b"{", timeout=5).status_code == 400
    bad = {"espocrm": {"CBeteiligte": [{"vorname": "no name"}]}}
    assert requests.post(f"{base}/_admin/scenario", json=bad, timeout=5).status_code == 400
    assert requests.post(f"{base}/_admin/edit", json={"id": 1}, timeout=5).status_code == 400
    assert (
        requests.post(f"{base}/_admin/config", json={"latency_ms": -1}, timeout=5).status_code
        == 400
    )
    advo = sandbox.advoware_url
    bad_party = {"advoware": {"Beteiligte": [{"name": "x", "kommunikation": [{"kommKz": 99}]}]}}
    assert requests.post(f"{advo}/_admin/scenario", json=bad_party, timeout=5).status_code == 400


QUERY_KEYS = st.sampled_from(
    [
        "where",
        "where[0]",
        "where[0][type]",
        "where[0][attribute]",
        "where[0][value]",
        "where[0][value][]",
        "where[0][value][0][type]",
        "where[][type]",
        "where[0",
        "maxSize",
        "offset",
        "orderBy",
        "order",
        "select",
        "where[0][value][0][attribute]",
    ]
)
QUERY_VALUES = st.one_of(
    st.sampled_from(
        [
            "equals",
            "in",
            "or",
            "and",
            "isNull",
            "before",
            "name",
            "betnr",
            "modifiedAt",
            "syncStatus",
            "-1",
            "201",
            "asc",
            "2026-01-01 00:00:00",
        ]
    ),
    st.text(max_size=12),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pairs=st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=6))
def test_list_queries_never_crash(shared: Sandbox, pairs: list[tuple[str, str]]) -> None:
    answer = requests.get(
        f"{shared.espocrm_url}/api/v1/CBeteiligte",
        params=pairs,
        headers={"X-Api-Key": shared.credentials.espocrm_api_key},
        timeout=5,
    )
    assert answer.status_code in (200, 400, 403)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
ESPO_FIELDS = st.sampled_from(
    [
        "name",
        "vorname",
        "geburtsdatum",
        "emailAddressData",
        "phoneNumberData",
        "emailAddress",
        "betnr",
        "syncStatus",
        "syncNextRetry",
        "syncRetryCount",
    ]
)
ADVO_FIELDS = st.sampled_from(
    ["name", "vorname", "geburtsdatum", "rechtsform", "tlf", "kommKz", "bemerkung", "online"]
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.dictionaries(ESPO_FIELDS, JSON_VALUES, max_size=4))
def test_espocrm_writes_never_crash(shared: Sandbox, body: dict) -> None:
    headers = {"X-Api-Key": shared.credentials.espocrm_api_key}
    answer = requests.post(
        f"{shared.espocrm_url}/api/v1/CBeteiligte",
        data=json.dumps(body),
        headers=headers,
        timeout=5,
    )
    assert answer.status_code in (200, 400)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.dictionaries(ADVO_FIELDS, JSON_VALUES, max_size=4))
def test_advoware_writes_never_crash(shared: Sandbox, body: dict) -> None:
    session = advoware_session(shared)
    base = f"{shared.advoware_url}/api/v1/advonet/Beteiligte"
    assert session.post(base, data=json.dumps(body), timeout=5).status_code in (200, 400)
    betnr = shared.advoware_admin.state()["Beteiligte"][0]["betNr"]
    komm = session.post(f"{base}/{betnr}/Kommunikationen", data=json.dumps(body), timeout=5)
    assert komm.status_code in (200, 400)
    session.close()
