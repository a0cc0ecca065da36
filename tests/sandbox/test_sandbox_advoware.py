"""Advoware stand-in over real HTTP: configurator, token, Bearer auth, parties, Kommunikationen."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from sandbox.server import Sandbox
from sandbox.testing import token_request_body
from tests.sandbox.conftest import Api

GEAENDERT_AM = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


def create_party(advo: Api, **fields: object) -> dict:
    """POST (the answer is only ``{"betNr": n}``), then the party as GET shows it."""
    response = advo.post("/Beteiligte", json={"name": "Muster GmbH", **fields})
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["betNr"]
    return get_party(advo, response.json()["betNr"])


def get_party(advo: Api, betnr: int) -> dict:
    response = advo.get(f"/Beteiligte/{betnr}")
    assert response.status_code == 200, response.text
    return response.json()


def add_komm(advo: Api, betnr: int, **fields: object) -> dict:
    """POST (the answer is only ``{"betNr": n}``), then the new entry as GET shows it."""
    before = {k["id"] for k in get_party(advo, betnr)["kommunikation"]}
    body = {"tlf": "+49 30 1", "kommKz": 1, "bemerkung": "", "online": False, **fields}
    response = advo.post(f"/Beteiligte/{betnr}/Kommunikationen", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"betNr": betnr}
    (komm,) = [k for k in get_party(advo, betnr)["kommunikation"] if k["id"] not in before]
    return komm


# -- configurator and token ------------------------------------------------------------------


def test_configurator_points_at_the_sandbox(sandbox: Sandbox) -> None:
    url = f"{sandbox.advoware_url}/AdvonetConfigurator/api/Url"
    answer = requests.get(url, params={"Kanzlei": sandbox.credentials.kanzlei}, timeout=5)
    assert answer.json() == {
        "relayUrl": sandbox.advoware_url,
        "connectorUrl": sandbox.advoware_url,
        "securityGateway": sandbox.advoware_url,
    }
    assert requests.get(url, params={"Kanzlei": "other"}, timeout=5).status_code == 404


def test_token_with_valid_signature_is_issued(sandbox: Sandbox) -> None:
    body = token_request_body(sandbox.credentials)
    answer = requests.post(f"{sandbox.advoware_url}/api/v1/Token", json=body, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["access_token"] and answer.json()["expires_in"] == 3300


@pytest.mark.parametrize(
    "change",
    [
        {"HMAC512Signature": "AAAA"},
        {"Password": "wrong"},
        {"User": "OTHER"},
        {"AppID": "other-app"},
        {"Nonce": "another-nonce"},  # signature no longer matches
    ],
)
def test_token_with_bad_credentials_or_signature_is_401(sandbox: Sandbox, change: dict) -> None:
    body = {**token_request_body(sandbox.credentials), **change}
    answer = requests.post(f"{sandbox.advoware_url}/api/v1/Token", json=body, timeout=5)
    assert answer.status_code == 401


@pytest.mark.parametrize("minutes", [-6, 6])
def test_token_with_stale_timestamp_is_401(sandbox: Sandbox, minutes: int) -> None:
    moment = datetime.now(UTC) + timedelta(minutes=minutes)
    body = token_request_body(sandbox.credentials, timestamp=moment)
    answer = requests.post(f"{sandbox.advoware_url}/api/v1/Token", json=body, timeout=5)
    assert answer.status_code == 401


def test_token_request_with_malformed_json_is_400(sandbox: Sandbox) -> None:
    answer = requests.post(f"{sandbox.advoware_url}/api/v1/Token", data=b"{oops", timeout=5)
    assert answer.status_code == 400


def test_missing_or_unknown_bearer_is_401(sandbox: Sandbox) -> None:
    url = f"{sandbox.advoware_url}/api/v1/advonet/Beteiligte/100000"
    assert requests.get(url, timeout=5).status_code == 401
    bad = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert bad.status_code == 401
    assert "Bearer" in bad.headers["WWW-Authenticate"]


def test_tokens_expire_after_their_lifetime() -> None:
    with Sandbox(token_lifetime=0.3) as sb:
        body = token_request_body(sb.credentials)
        token = requests.post(f"{sb.advoware_url}/api/v1/Token", json=body, timeout=5).json()
        assert token["expires_in"] == 0  # whole seconds, like the real API
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        url = f"{sb.advoware_url}/api/v1/advonet/Beteiligte/100000"
        assert requests.get(url, headers=headers, timeout=5).status_code == 404
        time.sleep(0.4)
        assert requests.get(url, headers=headers, timeout=5).status_code == 401


def test_expire_tokens_now_and_fetch_a_new_one(sandbox: Sandbox, advo: Api) -> None:
    assert advo.get("/Beteiligte/100000").status_code == 404
    sandbox.advoware_admin.expire_tokens()
    assert advo.get("/Beteiligte/100000").status_code == 401
    body = token_request_body(sandbox.credentials)
    fresh = requests.post(f"{sandbox.advoware_url}/api/v1/Token", json=body, timeout=5).json()
    advo.session.headers["Authorization"] = f"Bearer {fresh['access_token']}"
    assert advo.get("/Beteiligte/100000").status_code == 404


def test_token_lifetime_is_configurable_at_runtime(sandbox: Sandbox) -> None:
    assert sandbox.advoware_admin.configure(token_lifetime=5)["token_lifetime"] == 5
    body = token_request_body(sandbox.credentials)
    answer = requests.post(f"{sandbox.advoware_url}/api/v1/Token", json=body, timeout=5)
    assert answer.json()["expires_in"] == 5


# -- parties -----------------------------------------------------------------------------


def test_post_creates_party_with_new_betnr(advo: Api) -> None:
    party = create_party(advo, rechtsform="GmbH", geburtsdatum="1980-02-03")
    assert party["betNr"] >= 100000
    assert party["rowId"] and GEAENDERT_AM.match(party["geaendertAm"])
    assert party["geburtsdatum"] == "1980-02-03T00:00:00"
    assert party["kommunikation"] == []


def test_unknown_betnr_is_404(advo: Api) -> None:
    assert advo.get("/Beteiligte/999999").status_code == 404
    assert advo.put("/Beteiligte/999999", json={"name": "x"}).status_code == 404
    assert advo.post("/Beteiligte/999999/Kommunikationen", json={"kommKz": 1}).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"vorname": "ohne Name"},
        {"name": ""},
        {"name": "x" * 81},
        {"name": "x", "vorname": "y" * 61},
        {"name": "x", "anrede": "y" * 41},
        {"name": "x", "handelsRegisterNummer": "y" * 41},
        {"name": "x", "registergericht": "y" * 81},
        {"name": 42},
        {"name": "x", "geburtsdatum": "03.02.1980"},
    ],
)
def test_invalid_party_bodies_are_400(advo: Api, body: dict) -> None:
    assert advo.post("/Beteiligte", json=body).status_code == 400


def test_limits_are_inclusive(advo: Api) -> None:
    assert advo.post("/Beteiligte", json={"name": "x" * 80, "vorname": "y" * 60}).status_code == 200


def test_put_renews_row_id_and_geaendert_am(advo: Api) -> None:
    party = create_party(advo, geaendertAm="2000-01-01T00:00:00")
    advo.put(f"/Beteiligte/{party['betNr']}", json={"titel": "Dr."})
    updated = get_party(advo, party["betNr"])
    assert updated["rowId"] != party["rowId"]
    assert updated["titel"] == "Dr." and updated["name"] == "Muster GmbH"
    advo.put(f"/Beteiligte/{party['betNr']}", json={"titel": "Dr."})
    again = get_party(advo, party["betNr"])
    assert again["rowId"] != updated["rowId"]  # every PUT, like an SQL rowversion


def test_kommunikation_changes_do_not_touch_the_party_row_id(advo: Api) -> None:
    party = create_party(advo)
    komm = add_komm(advo, party["betNr"])
    after_post = advo.get(f"/Beteiligte/{party['betNr']}").json()
    assert after_post["rowId"] == party["rowId"]
    assert after_post["geaendertAm"] == party["geaendertAm"]
    path = f"/Beteiligte/{party['betNr']}/Kommunikationen/{komm['id']}"
    assert advo.put(path, json={"tlf": "+49 30 2"}).json() == {"betNr": party["betNr"]}
    after_put = get_party(advo, party["betNr"])
    (changed,) = after_put["kommunikation"]
    assert changed["rowId"] != komm["rowId"] and changed["tlf"] == "+49 30 2"
    assert after_put["rowId"] == party["rowId"]


def test_kommunikation_put_ignores_kommkz(sandbox: Sandbox, advo: Api) -> None:
    party = create_party(advo)
    komm = add_komm(advo, party["betNr"], kommKz=3)
    path = f"/Beteiligte/{party['betNr']}/Kommunikationen/{komm['id']}"
    answer = advo.put(path, json={"kommKz": 4, "bemerkung": "[ESPOCRM-SLOT:3]", "online": True})
    assert answer.status_code == 200
    stored = sandbox.advoware_admin.state()["Beteiligte"][0]["kommunikation"][0]
    assert stored["kommKz"] == 3 and stored["bemerkung"] == "[ESPOCRM-SLOT:3]"
    assert stored["online"] is True


def test_kommunikation_delete_is_403_and_keeps_the_entry(advo: Api) -> None:
    party = create_party(advo)
    komm = add_komm(advo, party["betNr"])
    answer = advo.delete(f"/Beteiligte/{party['betNr']}/Kommunikationen/{komm['id']}")
    assert answer.status_code == 403
    assert len(advo.get(f"/Beteiligte/{party['betNr']}").json()["kommunikation"]) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"tlf": "1"},
        {"tlf": "1", "kommKz": 0},
        {"tlf": "1", "kommKz": 13},
        {"tlf": "1", "kommKz": "1"},
        {"tlf": "1" * 101, "kommKz": 1},
        {"tlf": "1", "kommKz": 1, "bemerkung": "b" * 501},
        {"tlf": 5, "kommKz": 1},
        {"tlf": "1", "kommKz": 1, "online": "yes"},
    ],
)
def test_invalid_kommunikation_bodies_are_400(advo: Api, body: dict) -> None:
    party = create_party(advo)
    assert advo.post(f"/Beteiligte/{party['betNr']}/Kommunikationen", json=body).status_code == 400


def test_kommkz_zero_defect_is_on_by_default_and_switchable(sandbox: Sandbox, advo: Api) -> None:
    party = create_party(advo)
    add_komm(advo, party["betNr"], kommKz=4, tlf="a@example.com")
    assert advo.get(f"/Beteiligte/{party['betNr']}").json()["kommunikation"][0]["kommKz"] == 0
    stored = sandbox.advoware_admin.state()["Beteiligte"][0]["kommunikation"][0]
    assert stored["kommKz"] == 4
    sandbox.advoware_admin.configure(kommkz_zero_defect=False)
    assert advo.get(f"/Beteiligte/{party['betNr']}").json()["kommunikation"][0]["kommKz"] == 4


def test_search_by_exact_name_when_switched_on(sandbox: Sandbox, advo: Api) -> None:
    assert sandbox.advoware_admin.configure(search=True)["search"] is True
    create_party(advo, name="Alpha GmbH")
    create_party(advo, name="Alpha GmbH & Co. KG")
    found = advo.get("/Beteiligte", params={"name": "Alpha GmbH"}).json()
    assert [p["name"] for p in found] == ["Alpha GmbH"]
    assert "kommunikation" in found[0]


def test_admin_edits_act_like_a_person_in_advoware(sandbox: Sandbox, advo: Api) -> None:
    party = create_party(advo)
    admin = sandbox.advoware_admin
    edited = admin.edit(betNr=party["betNr"], fields={"name": "Neu GmbH"})
    assert edited["rowId"] != party["rowId"] and edited["name"] == "Neu GmbH"
    added = admin.edit(
        betNr=party["betNr"], kommunikation={"tlf": "23423", "kommKz": 1, "bemerkung": ""}
    )
    typed = admin.edit(betNr=party["betNr"], kommunikation={"id": added["id"], "tlf": "42"})
    assert typed["tlf"] == "42" and typed["rowId"] != added["rowId"]
    assert get_party(advo, party["betNr"])["rowId"] == edited["rowId"]
    admin.edit(betNr=party["betNr"], delete=True)
    assert advo.get(f"/Beteiligte/{party['betNr']}").status_code == 404
