"""The hooks' request pipeline against a scripted local HTTP server: what is retried, how
often, how long it waits, which typed error comes out, and that nothing is sent twice."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from airflow.sdk import Connection
from hooks.advoware import AdvowareHook
from hooks.espocrm import EspoCrmHook

from include.beteiligte_sync.errors import (
    AuthFailed,
    BadRequest,
    Conflict,
    NotFound,
    RateLimited,
    ServerError,
)
from tests.hooks.scripted_server import scripted_server

ESPO_KEY = "espo-key-do-not-leak-4711"
FAST = {"retry_wait_base": 0.01, "retry_wait_max": 0.05, "read_timeout": 0.5}


def espo_hook(url: str, **extra: Any) -> EspoCrmHook:
    conn = Connection(
        conn_id="espocrm_default",
        conn_type="espocrm",
        host=url,
        password=ESPO_KEY,
        extra=json.dumps({**FAST, **extra}),
    )
    return EspoCrmHook(connection=conn)


def advo_hook(url: str, **extra: Any) -> AdvowareHook:
    conn = Connection(
        conn_id="advoware_default",
        conn_type="advoware",
        host=url,
        login="TESTUSER",
        password="advo-password-do-not-leak",
        extra=json.dumps(
            {
                "app_id": "app",
                "api_key": "c2VjcmV0LWtleQ==",
                "kanzlei": "K",
                "database": "D",
                **FAST,
                **extra,
            }
        ),
    )
    return AdvowareHook(connection=conn)


def methods(script: Any) -> list[str]:
    return [f"{m} {p.split('?')[0]}" for m, p, _, _ in script.seen]


def test_get_is_retried_through_a_503_burst() -> None:
    record = {"id": "abc", "name": "X"}
    with scripted_server((503, {}, {}), (503, {}, {}), (200, {}, record)) as (url, script):
        hook = espo_hook(url)
        assert hook.get_beteiligte("abc") == record
    assert len(script.seen) == 3
    assert hook.stats.count("GET /api/v1/CBeteiligte/{id}", 503) == 2
    assert hook.stats.count("GET /api/v1/CBeteiligte/{id}", 200) == 1


def test_500_is_retried_for_get_but_not_for_post() -> None:
    with scripted_server((500, {}, {}), (200, {}, {"id": "a"})) as (url, script):
        assert espo_hook(url).get_beteiligte("a") == {"id": "a"}
    assert len(script.seen) == 2
    with (
        scripted_server((500, {}, {}), (200, {}, {"id": "a"})) as (url, script),
        pytest.raises(ServerError) as info,
    ):
        espo_hook(url).create_beteiligte({"name": "Neu"})
    assert info.value.status == 500
    assert len(script.seen) == 1


def test_post_without_a_way_to_check_is_not_repeated_after_a_reset() -> None:
    with (
        scripted_server("reset", (200, {}, {"id": "a"})) as (url, script),
        pytest.raises(ServerError) as info,
    ):
        espo_hook(url).create_beteiligte({"name": "Neu"})
    assert info.value.status is None
    assert "no response" in str(info.value)
    assert methods(script) == ["POST /api/v1/CBeteiligte"]


def test_429_waits_as_long_as_retry_after_says() -> None:
    with scripted_server((429, {"Retry-After": "0.4"}, {}), (200, {}, {"id": "a"})) as (url, _):
        hook = espo_hook(url)
        started = time.monotonic()
        hook.get_beteiligte("a")
        assert time.monotonic() - started >= 0.4


def test_retry_after_beyond_the_time_budget_gives_up_with_rate_limited() -> None:
    steps = [(429, {"Retry-After": "30"}, {})] * 3
    with scripted_server(*steps) as (url, script):
        started = time.monotonic()
        with pytest.raises(RateLimited) as info:
            espo_hook(url, retry_max_seconds=5).get_beteiligte("a")
        assert time.monotonic() - started < 3
    assert info.value.retry_after == 30
    assert len(script.seen) == 1


def test_attempts_are_bounded() -> None:
    with (
        scripted_server(*[(503, {}, {})] * 10) as (url, script),
        pytest.raises(ServerError) as info,
    ):
        espo_hook(url, retry_attempts=3).get_beteiligte("a")
    assert info.value.status == 503
    assert len(script.seen) == 3


def test_a_hanging_answer_times_out_and_is_retried() -> None:
    with scripted_server(("hang", 2.0), (200, {}, {"id": "a"})) as (url, script):
        hook = espo_hook(url, read_timeout=0.3)
        assert hook.get_beteiligte("a") == {"id": "a"}
    assert len(script.seen) == 2
    assert hook.stats.count("GET /api/v1/CBeteiligte/{id}", "no_response") == 1


def test_401_is_auth_failed_at_once_with_a_clear_message_and_no_key() -> None:
    with (
        scripted_server(*[(401, {}, {"error": f"bad key {ESPO_KEY}"})] * 5) as (url, script),
        pytest.raises(AuthFailed) as info,
    ):
        espo_hook(url).get_beteiligte("a")
    assert len(script.seen) == 1
    text = str(info.value)
    assert "espocrm_default" in text and "API key" in text
    assert ESPO_KEY not in text  # an echoing server cannot leak it through our error text
    assert script.seen[0][2]["X-Api-Key"] == ESPO_KEY


def test_error_answers_become_typed_errors_with_status_reason_and_body() -> None:
    with scripted_server(
        (404, {"X-Status-Reason": "notFound"}, {}),
        (409, {"X-Status-Reason": "modified"}, {}),
        (400, {"X-Status-Reason": "validationFailure"}, {"field": "emailAddressData"}),
    ) as (url, _):
        hook = espo_hook(url)
        with pytest.raises(NotFound) as not_found:
            hook.get_beteiligte("a")
        with pytest.raises(Conflict) as conflict:
            hook.update_beteiligte("a", {"name": "X"})
        with pytest.raises(BadRequest) as bad:
            hook.update_beteiligte("a", {"name": "X"})
    assert (not_found.value.status, not_found.value.reason) == (404, "notFound")
    assert not_found.value.request == "GET /api/v1/CBeteiligte/{id}"
    assert (conflict.value.status, conflict.value.reason) == (409, "modified")
    assert bad.value.reason == "validationFailure"
    assert "emailAddressData" in (bad.value.body or "")


def test_lost_note_post_is_found_in_the_stream_and_not_posted_twice() -> None:
    note = {"id": "n1", "type": "Post", "post": "Advoware values overwritten"}
    with scripted_server("reset", (200, {}, {"list": [note], "total": 1})) as (url, script):
        result = espo_hook(url).post_note("e1", "Advoware values overwritten")
    assert result == note
    assert methods(script) == ["POST /api/v1/Note", "GET /api/v1/CBeteiligte/e1/stream"]


def test_lost_note_post_is_repeated_when_the_stream_does_not_show_it() -> None:
    note = {"id": "n1", "type": "Post", "post": "text"}
    with scripted_server("reset", (200, {}, {"list": [], "total": 0}), (200, {}, note)) as (
        url,
        script,
    ):
        assert espo_hook(url).post_note("e1", "text") == note
    assert methods(script) == [
        "POST /api/v1/Note",
        "GET /api/v1/CBeteiligte/e1/stream",
        "POST /api/v1/Note",
    ]


def test_versioned_put_whose_answer_was_lost_is_recognised_as_our_own_write() -> None:
    current = {"id": "e1", "versionNumber": 6, "syncStatus": "syncing", "name": "X"}
    with scripted_server("reset", (200, {}, current)) as (url, script):
        result = espo_hook(url).update_beteiligte("e1", {"syncStatus": "syncing"}, version_number=5)
    assert result == current
    assert methods(script) == ["PUT /api/v1/CBeteiligte/e1", "GET /api/v1/CBeteiligte/e1"]
    assert script.seen[0][2]["X-Version-Number"] == "5"


def test_versioned_put_is_a_conflict_if_someone_else_wrote_meanwhile() -> None:
    current = {"id": "e1", "versionNumber": 6, "syncStatus": "dirty"}
    with scripted_server("reset", (200, {}, current)) as (url, _), pytest.raises(Conflict) as info:
        espo_hook(url).update_beteiligte("e1", {"syncStatus": "syncing"}, version_number=5)
    assert info.value.reason == "modified"


def test_advoware_token_is_cached_renewed_once_on_401_and_sent_as_bearer() -> None:
    token1 = {"access_token": "token-one-abcdef", "expires_in": 3300}
    token2 = {"access_token": "token-two-abcdef", "expires_in": 3300}
    party = {"betNr": 1, "rowId": "r", "kommunikation": []}
    with scripted_server(
        (200, {}, token1),
        (200, {}, party),
        (401, {}, {}),
        (200, {}, token2),
        (200, {}, party),
    ) as (url, script):
        hook = advo_hook(url)
        hook.get_beteiligte(1)
        assert hook.get_beteiligte(1) == party
    assert methods(script) == [
        "POST /api/v1/Token",
        "GET /api/v1/advonet/Beteiligte/1",
        "GET /api/v1/advonet/Beteiligte/1",
        "POST /api/v1/Token",
        "GET /api/v1/advonet/Beteiligte/1",
    ]
    assert script.seen[1][2]["Authorization"] == "Bearer token-one-abcdef"
    assert script.seen[4][2]["Authorization"] == "Bearer token-two-abcdef"
    body = json.loads(script.seen[0][3])
    assert body["User"] == "TESTUSER" and body["Product"] == 64 and body["Role"] == 2
    assert body["Nonce"] != json.loads(script.seen[3][3])["Nonce"]


def test_advoware_401_after_renewal_is_auth_failed() -> None:
    token = {"access_token": "token-abcdef", "expires_in": 3300}
    with (
        scripted_server((200, {}, token), (401, {}, {}), (200, {}, token), (401, {}, {})) as (
            url,
            script,
        ),
        pytest.raises(AuthFailed),
    ):
        advo_hook(url).get_beteiligte(1)
    assert len(script.seen) == 4


def test_advoware_token_refused_is_auth_failed_naming_what_to_check() -> None:
    with scripted_server(*[(401, {}, {})] * 3) as (url, script), pytest.raises(AuthFailed) as info:
        advo_hook(url).get_beteiligte(1)
    assert methods(script) == ["POST /api/v1/Token"]
    assert "api_key" in str(info.value) and "advo-password" not in str(info.value)


def test_lost_kommunikation_post_after_502_is_recovered_not_duplicated() -> None:
    token = {"access_token": "token-abcdef", "expires_in": 3300}
    old = {"id": 7, "tlf": "0301234", "bemerkung": "[ESPOCRM:eA==:1]", "kommKz": 0}
    new = {"id": 8, "tlf": "0301234", "bemerkung": "[ESPOCRM:eA==:1]", "kommKz": 0}
    before = {"betNr": 1, "rowId": "r", "kommunikation": [old]}
    after = {"betNr": 1, "rowId": "r", "kommunikation": [old, new]}
    with scripted_server((200, {}, token), (200, {}, before), (502, {}, {}), (200, {}, after)) as (
        url,
        script,
    ):
        data = {"tlf": "0301234", "bemerkung": "[ESPOCRM:eA==:1]", "kommKz": 1, "online": False}
        assert advo_hook(url).create_kommunikation(1, data) == new
    assert methods(script).count("POST /api/v1/advonet/Beteiligte/1/Kommunikationen") == 1


def _proxy_env(monkeypatch: pytest.MonkeyPatch, proxy: str, no_proxy: str) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.setenv("no_proxy", no_proxy)


def test_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment is read once per origin (not per request), yet still honoured: a firm
    behind a proxy sets HTTP(S)_PROXY as for any requests-based tool."""
    record = {"id": "abc", "name": "X"}
    with scripted_server((200, {}, record), (200, {}, record)) as (proxy_url, proxy):
        _proxy_env(monkeypatch, proxy_url, "")
        hook = espo_hook("http://espocrm.kanzlei.invalid")
        assert hook.get_beteiligte("abc") == record
        assert hook.get_beteiligte("abc") == record
    assert [path for _, path, _, _ in proxy.seen] == [
        "http://espocrm.kanzlei.invalid/api/v1/CBeteiligte/abc"
    ] * 2


def test_no_proxy_host_is_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    record = {"id": "abc", "name": "X"}
    with (
        scripted_server() as (proxy_url, proxy),
        scripted_server((200, {}, record)) as (url, direct),
    ):
        _proxy_env(monkeypatch, proxy_url, "127.0.0.1")
        assert espo_hook(url).get_beteiligte("abc") == record
    assert proxy.seen == [] and methods(direct) == ["GET /api/v1/CBeteiligte/abc"]
