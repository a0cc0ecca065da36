"""The hooks over real HTTP against the sandbox stand-ins (the issue's "done when" list)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import hooks.advoware as advoware_module
import pytest
from hooks.advoware import AdvowareHook
from hooks.espocrm import EspoCrmHook

from include.beteiligte_sync.clients import AdvowareClient, EspoCrmClient
from include.beteiligte_sync.errors import ApiError, AuthFailed, Conflict, NotFound, ServerError
from sandbox.server import Sandbox
from sandbox.testing import sandbox  # noqa: F401  (fixture)

FAST = {"retry_wait_base": 0.01, "retry_wait_max": 0.05, "connect_timeout": 2, "read_timeout": 1}
PARTY = {"betNr": 104860, "name": "Muster GmbH", "rechtsform": "GmbH", "kommunikation": []}


def use_sandbox(
    monkeypatch: pytest.MonkeyPatch, sb: Sandbox, espocrm: Any = None, advoware: Any = None
) -> None:
    """Point ``espocrm_default``/``advoware_default`` at the sandbox (fast retries, tweaks)."""
    for name, value in sb.airflow_conn_env().items():
        conn = json.loads(value)
        tweaks = espocrm if "ESPOCRM" in name else advoware
        conn["extra"] = {**conn.get("extra", {}), **FAST}
        for key, val in (tweaks or {}).items():
            if key in ("host", "login", "password"):
                conn[key] = val
            else:
                conn["extra"][key] = val
        monkeypatch.setenv(name, json.dumps(conn))


@pytest.fixture
def sb(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:  # noqa: F811
    use_sandbox(monkeypatch, sandbox)
    sandbox.advoware_admin.load({"advoware": {"Beteiligte": [PARTY]}})
    return sandbox


def records(n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"name": f"Partei {i}", **fields} for i in range(n)]


def test_hooks_implement_the_engine_protocols(sb: Sandbox) -> None:
    assert isinstance(EspoCrmHook(), EspoCrmClient)
    assert isinstance(AdvowareHook(), AdvowareClient)


def test_wrong_api_key_is_auth_failed_without_retry_storm(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sandbox(monkeypatch, sb, espocrm={"password": "wrong-key-12345"})
    hook = EspoCrmHook()
    with pytest.raises(AuthFailed) as info:
        list(hook.iter_beteiligte())
    assert info.value.status == 401
    assert "check the connection's password field" in str(info.value)
    assert sb.espocrm_admin.counters()["calls"] == {"GET /api/v1/CBeteiligte": {"401": 1}}


def test_token_expiry_mid_run_renews_once_and_the_call_succeeds(sb: Sandbox) -> None:
    hook = AdvowareHook()
    assert hook.get_beteiligte(104860)["name"] == "Muster GmbH"
    sb.advoware_admin.expire_tokens()
    assert hook.get_beteiligte(104860)["betNr"] == 104860
    assert hook.get_beteiligte(104860)["betNr"] == 104860  # the renewed token is cached
    calls = sb.advoware_admin.counters()["calls"]
    assert calls["POST /api/v1/Token"] == {"200": 2}
    assert calls["GET /api/v1/advonet/Beteiligte/{betNr}"] == {"200": 3, "401": 1}


def test_short_token_lifetime_is_renewed_before_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    with Sandbox(token_lifetime=1) as short:
        use_sandbox(monkeypatch, short)
        short.advoware_admin.load({"advoware": {"Beteiligte": [PARTY]}})
        hook = AdvowareHook()
        hook.get_beteiligte(104860)
        time.sleep(1.1)
        hook.get_beteiligte(104860)
        calls = short.advoware_admin.counters()["calls"]
    assert calls["POST /api/v1/Token"] == {"200": 2}
    assert calls["GET /api/v1/advonet/Beteiligte/{betNr}"] == {"200": 2}  # no 401 needed


def test_bad_hmac_key_is_auth_failed(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    use_sandbox(monkeypatch, sb, advoware={"api_key": "d3Jvbmcta2V5LXdyb25nLWtleQ=="})
    with pytest.raises(AuthFailed) as info:
        AdvowareHook().get_beteiligte(104860)
    assert "api_key" in str(info.value)
    assert sb.advoware_admin.counters()["calls"] == {"POST /api/v1/Token": {"401": 1}}


def test_rate_limit_with_retry_after_and_503_burst_succeed_after_retries(sb: Sandbox) -> None:
    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": records(3)}})
    sb.espocrm_admin.set_faults(
        [
            {
                "method": "GET",
                "path": "/api/v1/CBeteiligte",
                "kind": "rate_limit",
                "count": 1,
                "retry_after": 1,
            },
            {
                "method": "GET",
                "path": "/api/v1/CBeteiligte/{id}",
                "kind": "error",
                "status": 503,
                "count": 3,
            },
        ]
    )
    hook = EspoCrmHook()
    listed = list(hook.iter_beteiligte())
    assert len(listed) == 3
    assert hook.get_beteiligte(listed[0]["id"])["id"] == listed[0]["id"]
    calls = sb.espocrm_admin.counters()["calls"]
    assert calls["GET /api/v1/CBeteiligte"] == {"429": 1, "200": 1}
    assert calls["GET /api/v1/CBeteiligte/{id}"] == {"503": 3, "200": 1}
    assert hook.stats.count("GET /api/v1/CBeteiligte/{id}", 503) == 3


def test_hanging_response_times_out_and_is_retried(sb: Sandbox) -> None:
    sb.advoware_admin.set_faults(
        [
            {
                "method": "GET",
                "path": "/api/v1/advonet/Beteiligte/{betNr}",
                "kind": "hang",
                "seconds": 3,
                "count": 1,
            }
        ]
    )
    hook = AdvowareHook()
    assert hook.get_beteiligte(104860)["betNr"] == 104860
    assert hook.stats.count("GET /api/v1/advonet/Beteiligte/{betNr}", "no_response") == 1
    assert hook.stats.count("GET /api/v1/advonet/Beteiligte/{betNr}", 200) == 1


def test_lost_kommunikation_post_response_leaves_exactly_one_entry(sb: Sandbox) -> None:
    sb.advoware_admin.set_faults(
        [
            {
                "method": "POST",
                "path": "/api/v1/advonet/Beteiligte/{betNr}/Kommunikationen",
                "kind": "drop_response",
                "count": 1,
            }
        ]
    )
    hook = AdvowareHook()
    data = {"tlf": "+49 30 1234567", "bemerkung": "[ESPOCRM:eA==:1]", "kommKz": 1, "online": False}
    created = hook.create_kommunikation(104860, data)
    entries = sb.advoware_admin.state()["Beteiligte"][0]["kommunikation"]
    assert [e["tlf"] for e in entries] == ["+49 30 1234567"]
    assert created["id"] == entries[0]["id"]
    calls = sb.advoware_admin.counters()["calls"]
    assert sum(calls["POST /api/v1/advonet/Beteiligte/{betNr}/Kommunikationen"].values()) == 1


def test_lost_kommunikation_post_that_did_not_land_is_repeated(sb: Sandbox) -> None:
    sb.advoware_admin.set_faults(
        [
            {
                "method": "POST",
                "path": "/api/v1/advonet/Beteiligte/{betNr}/Kommunikationen",
                "kind": "reset",
                "count": 1,
            }
        ]
    )
    hook = AdvowareHook()
    created = hook.create_kommunikation(104860, {"tlf": "0301", "bemerkung": "", "kommKz": 1})
    entries = sb.advoware_admin.state()["Beteiligte"][0]["kommunikation"]
    assert [e["id"] for e in entries] == [created["id"]]


def test_lost_beteiligte_post_response_creates_one_party(sb: Sandbox) -> None:
    sb.advoware_admin.set_faults(
        [
            {
                "method": "POST",
                "path": "/api/v1/advonet/Beteiligte",
                "kind": "drop_response",
                "count": 1,
            }
        ]
    )
    hook = AdvowareHook()
    try:
        party: dict[str, Any] | None = hook.create_beteiligte(
            {"name": "Muster GmbH", "rechtsform": "AG"}
        )
    except ServerError:  # no party search: a lost answer cannot be checked, so it is raised
        assert hook.find_beteiligte("Muster GmbH") is None
        party = None
    names = [(p["name"], p["rechtsform"]) for p in sb.advoware_admin.state()["Beteiligte"]]
    assert names == [("Muster GmbH", "GmbH"), ("Muster GmbH", "AG")]  # never created twice
    assert party is None or party["betNr"] != 104860


def test_lost_note_post_response_posts_one_note(sb: Sandbox) -> None:
    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": records(1)}})
    hook = EspoCrmHook()
    entity_id = next(hook.iter_beteiligte())["id"]
    sb.espocrm_admin.set_faults(
        [{"method": "POST", "path": "/api/v1/Note", "kind": "drop_response", "count": 1}]
    )
    note = hook.post_note(entity_id, "Konflikt: Advoware-Werte überschrieben")
    notes = sb.espocrm_admin.state()["Note"]
    assert [n["id"] for n in notes] == [note["id"]]
    assert notes[0]["parentId"] == entity_id and notes[0]["type"] == "Post"


def test_thousand_records_through_pagination_with_nested_or_filter(sb: Sandbox) -> None:
    data = (
        records(600, syncStatus="dirty")
        + records(400, syncStatus="failed")
        + records(150, syncStatus="failed", betnr=1)
        + records(150, syncStatus="clean")
    )
    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": data}})
    where = [
        {
            "type": "or",
            "value": [
                {"type": "equals", "attribute": "syncStatus", "value": "dirty"},
                {
                    "type": "and",
                    "value": [
                        {"type": "in", "attribute": "syncStatus", "value": ["failed"]},
                        {"type": "isNull", "attribute": "betnr"},
                    ],
                },
            ],
        }
    ]
    hook = EspoCrmHook()
    stream = hook.iter_beteiligte(where, select=["name", "syncStatus"], order_by="name")
    first = next(stream)
    assert hook.stats.total_calls == 1  # streams: one page at a time
    rest = list(stream)
    found = [first, *rest]
    assert len(found) == 1000 == len({r["id"] for r in found})
    assert {r["syncStatus"] for r in found} == {"dirty", "failed"}
    assert set(first) <= {"id", "name", "syncStatus"}
    # five full pages and the short (empty) one that ends the list: total is never trusted
    assert sb.espocrm_admin.counters()["calls"]["GET /api/v1/CBeteiligte"] == {"200": 6}
    assert len(list(hook.iter_beteiligte(where, limit=250))) == 250
    assert hook.count_beteiligte(where) == 1000


def test_datetime_filter_is_sent_in_utc(sb: Sandbox) -> None:
    sb.espocrm_admin.load(
        {
            "espocrm": {
                "CBeteiligte": [
                    {"name": "früh", "syncNextRetry": "2026-02-08 09:00:00"},
                    {"name": "spät", "syncNextRetry": "2026-02-08 11:00:00"},
                ]
            }
        }
    )
    berlin_10 = datetime(2026, 2, 8, 11, 0, tzinfo=UTC) + timedelta(hours=-1)  # 10:00 UTC
    where = [{"type": "before", "attribute": "syncNextRetry", "value": berlin_10}]
    assert [r["name"] for r in EspoCrmHook().iter_beteiligte(where)] == ["früh"]


def test_version_mismatch_is_conflict_and_match_updates(sb: Sandbox) -> None:
    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": records(1)}})
    hook = EspoCrmHook()
    record = next(hook.iter_beteiligte())
    version = record["versionNumber"]
    updated = hook.update_beteiligte(
        record["id"], {"syncStatus": "syncing"}, version_number=version
    )
    assert updated["syncStatus"] == "syncing" and updated["versionNumber"] > version
    with pytest.raises(Conflict) as info:
        hook.update_beteiligte(record["id"], {"syncStatus": "clean"}, version_number=version)
    assert (info.value.status, info.value.reason) == (409, "modified")


def test_lost_versioned_put_response_is_our_own_write_not_a_conflict(sb: Sandbox) -> None:
    sb.espocrm_admin.load({"espocrm": {"CBeteiligte": records(1)}})
    hook = EspoCrmHook()
    record = next(hook.iter_beteiligte())
    sb.espocrm_admin.set_faults(
        [{"method": "PUT", "path": "/api/v1/CBeteiligte/{id}", "kind": "drop_response", "count": 1}]
    )
    updated = hook.update_beteiligte(
        record["id"], {"syncStatus": "syncing"}, version_number=record["versionNumber"]
    )
    assert updated["syncStatus"] == "syncing"
    assert sum(sb.espocrm_admin.counters()["calls"]["PUT /api/v1/CBeteiligte/{id}"].values()) == 1


def test_unknown_betnr_is_not_found(sb: Sandbox) -> None:
    with pytest.raises(NotFound) as info:
        AdvowareHook().get_beteiligte(999999)
    assert info.value.status == 404
    assert info.value.request == "GET /api/v1/advonet/Beteiligte/{betNr}"


def test_advoware_create_update_and_kommunikation_round_trip(sb: Sandbox) -> None:
    hook = AdvowareHook()
    created = hook.create_beteiligte({"name": "Mustermann", "vorname": "Max"})
    assert set(created) == {"betNr"}  # a write answer is read for its betNr only
    party = hook.get_beteiligte(created["betNr"])
    assert hook.update_beteiligte(party["betNr"], {"vorname": "Maximilian"}) == created
    changed = hook.get_beteiligte(party["betNr"])
    assert changed["vorname"] == "Maximilian" and changed["rowId"] != party["rowId"]
    komm = hook.create_kommunikation(party["betNr"], {"tlf": "a@b.de", "kommKz": 4})
    assert komm["tlf"] == "a@b.de" and komm["id"] is not None
    hook.update_kommunikation(party["betNr"], komm["id"], {"tlf": "c@d.de"})
    entries = hook.get_beteiligte(party["betNr"])["kommunikation"]
    assert [(e["id"], e["tlf"]) for e in entries] == [(komm["id"], "c@d.de")]
    found = hook.find_beteiligte("Mustermann")  # None: this Advoware has no party search
    assert found is None or [p["betNr"] for p in found] == [party["betNr"]]


def test_base_url_discovery_through_the_configurator(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sandbox(
        monkeypatch,
        sb,
        advoware={
            "host": "http://127.0.0.1:9",
            "configurator_url": sb.advoware_url,
            "security_gateway": None,
        },
    )
    hook = AdvowareHook()
    assert hook.get_beteiligte(104860)["betNr"] == 104860
    assert hook.base_url == sb.advoware_url
    calls = sb.advoware_admin.counters()["calls"]
    assert calls["GET /AdvonetConfigurator/api/Url"] == {"200": 1}


@pytest.fixture
def issued_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every HMAC signature computed and every token received during the test."""
    seen: list[str] = []
    real_signature = advoware_module.hmac_signature
    real_fetch = AdvowareHook._fetch_token

    def spy_signature(*args: Any) -> str:
        seen.append(real_signature(*args))
        return seen[-1]

    def spy_fetch(self: AdvowareHook) -> tuple[str, float]:
        token, expires_in = real_fetch(self)
        seen.append(token)
        return token, expires_in

    monkeypatch.setattr(advoware_module, "hmac_signature", spy_signature)
    monkeypatch.setattr(AdvowareHook, "_fetch_token", spy_fetch)
    yield seen


def test_no_secret_in_any_captured_log_output_or_error(
    sb: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    issued_secrets: list[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    creds = sb.credentials
    errors: list[ApiError] = []
    espo, advo = EspoCrmHook(), AdvowareHook()
    sb.advoware_admin.set_faults(
        [{"method": "GET", "path": "*", "kind": "error", "status": 503, "count": 1}]
    )
    advo.get_beteiligte(104860)
    sb.advoware_admin.expire_tokens()
    advo.create_kommunikation(104860, {"tlf": "0301", "kommKz": 1})
    list(espo.iter_beteiligte())
    with pytest.raises(NotFound) as missing:
        advo.get_beteiligte(1)
    errors.append(missing.value)
    use_sandbox(
        monkeypatch,
        sb,
        espocrm={"password": "wrong-key-12345"},
        advoware={"password": "wrong-password-123"},
    )
    for call in (
        lambda: list(EspoCrmHook().iter_beteiligte()),
        lambda: AdvowareHook().get_beteiligte(104860),
    ):
        with pytest.raises(AuthFailed) as failed:
            call()
        errors.append(failed.value)
    out = capsys.readouterr()
    haystack = "\n".join([caplog.text, out.out, out.err, *map(str, errors), *map(repr, errors)])
    assert "GET /api/v1/advonet/Beteiligte/{betNr}" in caplog.text  # we did capture the logs
    secrets = [
        creds.espocrm_api_key,
        creds.password,
        creds.api_key,
        "wrong-key-12345",
        "wrong-password-123",
        *issued_secrets,
    ]
    assert len(issued_secrets) >= 5  # 2 tokens and 3 signatures (the last request was refused)
    for secret in secrets:
        assert secret not in haystack


def test_secrets_are_registered_with_airflows_secret_masker(
    sb: Sandbox, issued_secrets: list[str]
) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    AdvowareHook().get_beteiligte(104860)
    _ = EspoCrmHook().connection
    creds = sb.credentials
    assert len(issued_secrets) == 2  # one signature, one token
    for secret in [creds.espocrm_api_key, creds.password, creds.api_key, *issued_secrets]:
        assert redact(f"before {secret} after") == "before *** after"
