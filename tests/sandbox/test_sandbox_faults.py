"""Fault injection, latency and call counters over real HTTP."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from sandbox.admin import SandboxAdminError
from sandbox.core import CallCounters
from sandbox.server import Sandbox
from tests.sandbox.conftest import Api

ONE = "/api/v1/CBeteiligte/{id}"


def statuses(espo: Api, path: str, times: int) -> list[int]:
    return [espo.get(path).status_code for _ in range(times)]


def test_error_fault_answers_status_without_performing(sandbox: Sandbox, espo: Api) -> None:
    sandbox.espocrm_admin.set_faults(
        [
            {
                "method": "POST",
                "path": "/api/v1/CBeteiligte",
                "kind": "error",
                "status": 502,
                "count": 1,
            }
        ]
    )
    assert espo.post("/CBeteiligte", json={"name": "x"}).status_code == 502
    assert sandbox.espocrm_admin.state()["CBeteiligte"] == []
    assert espo.post("/CBeteiligte", json={"name": "x"}).status_code == 200  # count exhausted


def test_rate_is_seeded_and_deterministic(sandbox: Sandbox, espo: Api) -> None:
    rule = {"path": "/api/v1/CBeteiligte", "kind": "error", "status": 503, "rate": 0.5}
    sandbox.espocrm_admin.set_faults([rule], seed=7)
    first = statuses(espo, "/CBeteiligte", 30)
    sandbox.espocrm_admin.set_faults([rule], seed=7)
    second = statuses(espo, "/CBeteiligte", 30)
    assert first == second
    assert set(first) == {200, 503}
    sandbox.espocrm_admin.set_faults([rule], seed=8)
    assert statuses(espo, "/CBeteiligte", 30) != first


def test_rate_limit_sends_retry_after(sandbox: Sandbox, espo: Api) -> None:
    sandbox.espocrm_admin.set_faults([{"kind": "rate_limit", "retry_after": 3, "count": 1}])
    answer = espo.get("/CBeteiligte")
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "3"
    assert espo.get("/CBeteiligte").status_code == 200


def test_latency_fault_delays_matching_calls(sandbox: Sandbox, espo: Api) -> None:
    sandbox.espocrm_admin.set_faults([{"path": "/api/v1/Note", "kind": "latency", "seconds": 0.3}])
    started = time.monotonic()
    assert espo.get("/Note").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    espo.get("/CBeteiligte")
    assert time.monotonic() - started < 0.25


def test_hang_makes_the_client_time_out(sandbox: Sandbox, espo: Api) -> None:
    sandbox.espocrm_admin.set_faults([{"kind": "hang", "seconds": 5, "count": 1}])
    with pytest.raises(requests.exceptions.ReadTimeout):
        espo.get("/CBeteiligte", timeout=0.3)
    assert espo.get("/CBeteiligte").status_code == 200


def test_reset_aborts_without_performing(sandbox: Sandbox, espo: Api) -> None:
    sandbox.espocrm_admin.set_faults([{"method": "POST", "path": "/api/v1/*", "kind": "reset"}])
    with pytest.raises(requests.exceptions.ConnectionError):
        espo.post("/CBeteiligte", json={"name": "x"})
    assert sandbox.espocrm_admin.state()["CBeteiligte"] == []
    assert espo.get("/CBeteiligte").status_code == 200  # method filter: GET unaffected


def test_drop_response_performs_then_resets(sandbox: Sandbox, advo: Api) -> None:
    sandbox.advoware_admin.configure(search=True)
    rule = {"method": "POST", "path": "/api/v1/advonet/Beteiligte", "kind": "drop_response"}
    sandbox.advoware_admin.set_faults([rule])
    with pytest.raises(requests.exceptions.ConnectionError):
        advo.post("/Beteiligte", json={"name": "Verloren GmbH"})
    assert [p["name"] for p in advo.get("/Beteiligte?name=Verloren GmbH").json()] == [
        "Verloren GmbH"
    ]
    counts = sandbox.advoware_admin.counters()["calls"]["POST /api/v1/advonet/Beteiligte"]
    assert counts == {"reset": 1}


def test_expire_tokens_fault_makes_the_call_401(sandbox: Sandbox, advo: Api) -> None:
    sandbox.advoware_admin.set_faults([{"kind": "expire_tokens", "count": 1}])
    assert advo.get("/Beteiligte/100000").status_code == 401
    assert advo.get("/Beteiligte/100000").status_code == 401  # the token stays expired


def test_template_path_matches_concrete_ids(sandbox: Sandbox, espo: Api) -> None:
    record = espo.post("/CBeteiligte", json={"name": "x"}).json()
    sandbox.espocrm_admin.set_faults(
        [{"method": "GET", "path": ONE, "kind": "error", "status": 500}]
    )
    assert espo.get(f"/CBeteiligte/{record['id']}").status_code == 500
    assert espo.get("/CBeteiligte").status_code == 200
    sandbox.espocrm_admin.clear_faults()
    assert espo.get(f"/CBeteiligte/{record['id']}").status_code == 200


def test_faults_report_how_often_they_fired(sandbox: Sandbox, espo: Api) -> None:
    sandbox.espocrm_admin.set_faults([{"kind": "error", "status": 503, "count": 2}])
    statuses(espo, "/CBeteiligte", 3)
    assert sandbox.espocrm_admin.faults()["rules"][0]["fired"] == 2


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "explode"},
        {"kind": "error", "rate": 2},
        {"kind": "error", "status": 42},
        {"kind": "latency", "seconds": "long"},
        "not an object",
    ],
)
def test_bad_fault_rules_are_400(sandbox: Sandbox, rule: object) -> None:
    with pytest.raises(SandboxAdminError) as caught:
        sandbox.espocrm_admin.set_faults([rule])  # type: ignore[list-item]
    assert caught.value.status == 400


def test_counters_per_method_template_and_status(sandbox: Sandbox, espo: Api) -> None:
    record = espo.post("/CBeteiligte", json={"name": "x"}).json()
    espo.get(f"/CBeteiligte/{record['id']}")
    espo.get(f"/CBeteiligte/{record['id']}")
    espo.get("/CBeteiligte/00000000000000000")
    sandbox.espocrm_admin.state()  # admin calls are not counted
    counters = sandbox.espocrm_admin.counters()
    assert counters["calls"] == {
        "POST /api/v1/CBeteiligte": {"200": 1},
        f"GET {ONE}": {"200": 2, "404": 1},
    }
    assert sandbox.espocrm_admin.calls(f"GET {ONE}") == 3
    sandbox.espocrm_admin.reset_counters()
    assert sandbox.espocrm_admin.counters()["calls"] == {}


def test_a_call_is_counted_before_its_answer_arrives(
    sandbox: Sandbox, espo: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that resets the counters right after its last answer must not find that call in
    the next stretch (CI once counted a set-up's final PUT towards the test's own calls). The
    counting is slowed down here so that counting after the answer would lose the race."""
    record = espo.post("/CBeteiligte", json={"name": "x"}).json()
    leave = CallCounters.leave

    def slow_leave(self: CallCounters, key: str, outcome: str) -> None:
        time.sleep(0.05)
        leave(self, key, outcome)

    monkeypatch.setattr(CallCounters, "leave", slow_leave)
    for _ in range(5):
        espo.put(f"/CBeteiligte/{record['id']}", json={"name": "y"})
        sandbox.espocrm_admin.reset_counters()
        time.sleep(0.1)  # longer than the slowed counting: a late count would show now
        assert sandbox.espocrm_admin.counters()["calls"] == {}


def test_advoware_templates_name_betnr_and_komm_id(sandbox: Sandbox, advo: Api) -> None:
    party = advo.post("/Beteiligte", json={"name": "x"}).json()
    advo.post(f"/Beteiligte/{party['betNr']}/Kommunikationen", json={"tlf": "1", "kommKz": 1})
    (komm,) = advo.get(f"/Beteiligte/{party['betNr']}").json()["kommunikation"]
    advo.put(f"/Beteiligte/{party['betNr']}/Kommunikationen/{komm['id']}", json={"tlf": "2"})
    calls = sandbox.advoware_admin.counters()["calls"]
    assert calls["PUT /api/v1/advonet/Beteiligte/{betNr}/Kommunikationen/{kommId}"] == {"200": 1}
    assert calls["GET /api/v1/advonet/Beteiligte/{betNr}"] == {"200": 1}
    assert calls["POST /api/v1/Token"] == {"200": 1}


def test_max_concurrent_counts_parallel_requests(sandbox: Sandbox) -> None:
    sandbox.espocrm_admin.configure(latency_ms=300)
    url = f"{sandbox.espocrm_url}/api/v1/CBeteiligte"
    headers = {"X-Api-Key": sandbox.credentials.espocrm_api_key}
    threads = [
        threading.Thread(
            target=requests.get, args=(url,), kwargs={"headers": headers, "timeout": 5}
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counters = sandbox.espocrm_admin.counters()
    assert counters["max_concurrent"] == 4 and counters["in_flight"] == 0


def test_global_latency_applies_to_product_calls_only() -> None:
    with Sandbox(latency_ms=250) as sb:
        started = time.monotonic()
        sb.espocrm_admin.state()
        assert time.monotonic() - started < 0.2
        started = time.monotonic()
        requests.get(f"{sb.espocrm_url}/api/v1/CBeteiligte", timeout=5)
        assert time.monotonic() - started >= 0.25


def test_reset_clears_state_counters_and_faults(sandbox: Sandbox, espo: Api) -> None:
    espo.post("/CBeteiligte", json={"name": "x"})
    sandbox.espocrm_admin.set_faults([{"kind": "error", "path": "/api/v1/Note"}])
    sandbox.espocrm_admin.reset()
    assert sandbox.espocrm_admin.state()["CBeteiligte"] == []
    assert sandbox.espocrm_admin.counters()["calls"] == {}
    assert sandbox.espocrm_admin.faults()["rules"] == []
