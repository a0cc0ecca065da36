"""Bad answers at the HTTP level: truncated JSON, status 418, an HTML page with status 200, an
empty body, a JSON list where an object belongs.

Two levels:

* the hooks, against the scripted server of ``tests/hooks/scripted_server.py``: each answer
  raises a typed error (``BadResponse`` or ``BadRequest``), never a ``TypeError``;
* the engine over real HTTP: the sandbox, with one entity's Advoware party GET answered badly
  (through :class:`tests.proof.proof_router.Router` and the scripted server, or a sandbox fault
  rule for the status code). The entity is ``failed`` with a readable ``syncErrorMessage``
  that names the request and the problem, its data on both sides untouched; the other entities
  of the same run (a new party, a linked one with a pending change) sync normally; once the API
  answers properly again the entity syncs ``clean``.

EspoCRM's own per-entity read (the validation's GET of the record) cannot record a message
when it fails (the record could not be read); it is asserted here that the run goes on, the
result carries the readable error, and the lock it leaves heals after its TTL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hooks.advoware import PARTY_PATH
from hooks.espocrm import RECORD_PATH

from include.beteiligte_sync.errors import ApiError, BadRequest, BadResponse
from include.beteiligte_sync.status import LOCK_TTL
from include.beteiligte_sync.sync import sync_all
from sandbox.server import Sandbox
from sandbox.testing import sandbox  # noqa: F401  (fixture)
from tests.hooks.scripted_server import scripted_server
from tests.hooks.test_hooks_retry_policy import advo_hook, espo_hook
from tests.integration.http_support import Http, use_sandbox
from tests.proof.proof_router import Router, router

PARTY = {"betNr": 100001, "name": "Muster", "rowId": "AAA=", "kommunikation": []}
RECORD = {"id": "a1b2c3d4e5f6a7b8c", "name": "Muster", "syncStatus": "clean"}
TOKEN_STEP = (200, {}, {"access_token": "tok", "expires_in": 3300})


@dataclass(frozen=True)
class BadAnswer:
    """One bad answer: the scripted step, the error the hook raises, words of the message."""

    name: str
    step: Any
    error: type[ApiError]
    words: str


def _truncated(value: Any) -> bytes:
    text = json.dumps(value).encode()
    return text[: len(text) // 2]


HTML = b"<!DOCTYPE html><html><body><h1>Wartungsarbeiten</h1></body></html>"
ANSWERS = [
    BadAnswer("truncated JSON", (200, {}, _truncated(PARTY)), BadResponse, "not JSON"),
    BadAnswer("status 418", (418, {}, b"I'm a teapot"), BadRequest, "status 418"),
    BadAnswer("HTML page with 200", (200, {"X-Html": "yes"}, HTML), BadResponse, "not JSON"),
    BadAnswer("empty body", (200, {}, b""), BadResponse, "an empty body"),
    BadAnswer("JSON list", (200, {}, [PARTY]), BadResponse, "a JSON list"),
]
IDS = [a.name for a in ANSWERS]


# --- the hooks ------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ANSWERS, ids=IDS)
def test_advoware_get_beteiligte_raises_a_typed_error(answer: BadAnswer) -> None:
    with (
        scripted_server(TOKEN_STEP, answer.step) as (url, script),
        pytest.raises(answer.error) as caught,
    ):
        advo_hook(url).get_beteiligte(100001)
    assert caught.value.request == f"GET {PARTY_PATH}"
    assert len(script.seen) == 2, "a bad answer is not repeated"
    if answer.error is BadResponse:
        assert answer.words in str(caught.value)
        assert "Muster" not in str(caught.value), "the answer's content is not quoted"


@pytest.mark.parametrize("answer", ANSWERS, ids=IDS)
def test_espocrm_get_beteiligte_raises_a_typed_error(answer: BadAnswer) -> None:
    step = answer.step
    if step[2] == [PARTY]:
        step = (200, {}, [RECORD])
    with scripted_server(step) as (url, _), pytest.raises(answer.error) as caught:
        espo_hook(url).get_beteiligte(RECORD["id"])
    assert caught.value.request == f"GET {RECORD_PATH}"


@pytest.mark.parametrize(
    ("call", "step", "words"),
    [
        ("update", (200, {}, [RECORD]), "a JSON list"),
        ("update_versioned", (200, {}, b""), "an empty body"),
        ("note", (200, {}, "ok"), "a JSON string"),
        ("list", (200, {}, [RECORD]), "a JSON list"),
        ("list", (200, {}, {"list": "none", "total": 3}), "no list of records"),
        ("list", (200, {}, b""), "an empty body"),
    ],
)
def test_espocrm_answers_of_the_wrong_shape_raise_bad_response(
    call: str, step: Any, words: str
) -> None:
    with scripted_server(step) as (url, _):
        hook = espo_hook(url)
        with pytest.raises(BadResponse, match=words):
            if call == "update":
                hook.update_beteiligte(RECORD["id"], {"name": "X"})
            elif call == "update_versioned":
                hook.update_beteiligte(RECORD["id"], {"name": "X"}, version_number=3)
            elif call == "note":
                hook.post_note(RECORD["id"], "text")
            else:
                list(hook.iter_beteiligte())


def test_advoware_party_search_of_the_wrong_shape_raises_bad_response() -> None:
    with (
        scripted_server(TOKEN_STEP, (200, {}, ["not a party"])) as (url, _),
        pytest.raises(BadResponse, match="a JSON string"),
    ):
        advo_hook(url).find_beteiligte("Muster")


# --- the engine over the sandbox ------------------------------------------------------------


@dataclass
class Routed:
    """The sandbox with the Advoware hook going through a router."""

    http: Http
    advoware: Router
    espocrm: Router


@pytest.fixture
def routed(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Routed]:  # noqa: F811
    """Like the integration tests' ``http`` fixture, both hooks connected through routers."""
    use_sandbox(monkeypatch, sandbox)
    with router(sandbox.advoware_url) as advoware, router(sandbox.espocrm_url) as espocrm:
        _connect_through(monkeypatch, "AIRFLOW_CONN_ADVOWARE_DEFAULT", advoware.url)
        _connect_through(monkeypatch, "AIRFLOW_CONN_ESPOCRM_DEFAULT", espocrm.url)
        yield Routed(Http(sandbox), advoware, espocrm)


def _connect_through(monkeypatch: pytest.MonkeyPatch, variable: str, url: str) -> None:
    conn = json.loads(os.environ[variable])
    conn["host"] = url
    if "security_gateway" in conn.get("extra", {}):
        conn["extra"]["security_gateway"] = url
    monkeypatch.setenv(variable, json.dumps(conn))


@dataclass
class Three:
    """The entities of one run: the one answered badly, a new one, a linked one with a change."""

    bad: str
    bad_betnr: int
    new: str
    linked: str


def _three(http: Http) -> Three:
    bad, bad_betnr = http.linked(name="Bad", vorname="Bernd", titel="Dr.")
    linked, _ = http.linked(name="Gut", vorname="Linda")
    http.edit_espocrm(bad, titel="Prof.")
    http.edit_espocrm(linked, vorname="Lina")
    new = http.create_as_person(name="Neu GmbH", rechtsform="GmbH")
    return Three(bad, bad_betnr, new, linked)


def _run(http: Http, three: Three) -> dict[str, Any]:
    results = sync_all(
        http.espocrm,
        http.advoware,
        clock=http.clock,
        settings=http.settings,
        entity_ids=[three.bad, three.new, three.linked],
    )
    return {r.entity_id: r for r in results}


def _others_synced(http: Http, three: Three) -> None:
    new, linked = http.record(three.new), http.record(three.linked)
    assert new["syncStatus"] == "clean", new.get("syncErrorMessage")
    assert http.party(int(new["betnr"]))["name"] == "Neu GmbH"
    assert linked["syncStatus"] == "clean", linked.get("syncErrorMessage")
    assert http.party(int(linked["betnr"]))["vorname"] == "Lina"


@contextmanager
def _party_get_answered(routed: Routed, betnr: int, answer: BadAnswer) -> Iterator[None]:
    """While inside, the party GET of ``betnr`` gets ``answer`` (every time)."""
    path = PARTY_PATH.format(betNr=betnr)
    admin = routed.http.sb.advoware_admin
    if answer.name == "status 418":  # the sandbox's own fault rules can play this one
        admin.set_faults([{"method": "GET", "path": path, "kind": "error", "status": 418}])
        yield
        admin.clear_faults()
        return
    with scripted_server(*[answer.step] * 20) as (url, _):
        routed.advoware.route("GET", path, url)
        yield
        routed.advoware.clear()


@pytest.mark.parametrize("answer", ANSWERS, ids=IDS)
def test_engine_records_a_readable_message_and_the_run_goes_on(
    routed: Routed, answer: BadAnswer
) -> None:
    http = routed.http
    three = _three(http)
    party_before = http.party(three.bad_betnr)
    with _party_get_answered(routed, three.bad_betnr, answer):
        results = _run(http, three)

    _others_synced(http, three)
    bad = http.record(three.bad)
    message = bad.get("syncErrorMessage") or ""
    assert bad["syncStatus"] == "failed", (bad["syncStatus"], message)
    assert results[three.bad].outcome == "failed"
    assert f"GET {PARTY_PATH}" in message, message
    assert answer.words in message, message
    assert "internal error" not in message and "TypeError" not in message
    assert "Bernd" not in message and "Muster" not in message
    assert bad["titel"] == "Prof.", "the person's pending edit is kept"
    assert http.party(three.bad_betnr) == party_before, "Advoware untouched"

    # the API answers properly again: after the backoff the entity syncs
    http.clock.advance(hours=2)
    _run(http, three)
    healed = http.record(three.bad)
    assert healed["syncStatus"] == "clean", healed.get("syncErrorMessage")
    assert http.party(three.bad_betnr)["titel"] == "Prof."


@pytest.mark.parametrize("answer", ANSWERS, ids=IDS)
def test_bad_espocrm_answer_in_validation_leaves_a_lock_that_heals(
    routed: Routed, answer: BadAnswer
) -> None:
    http = routed.http
    three = _three(http)
    step = (200, {}, [RECORD]) if answer.name == "JSON list" else answer.step
    # The whole record read before planning is answered properly; validation's read is not.
    whole = (200, {}, http.espocrm.get_beteiligte(three.bad))
    with scripted_server(whole, *[step] * 20) as (url, _):
        routed.espocrm.route("GET", RECORD_PATH.format(id=three.bad), url)
        results = _run(http, three)
        routed.espocrm.clear()

    _others_synced(http, three)
    error = results[three.bad].error or ""
    assert results[three.bad].outcome == "failed"
    assert f"GET {RECORD_PATH}" in error and answer.words in error, error
    assert "internal error" not in error
    assert http.party(three.bad_betnr)["titel"] == "Prof.", "the write itself went through"
    assert http.record(three.bad)["syncStatus"] == "syncing", "the lock stays until its TTL"

    http.clock.advance(minutes=LOCK_TTL / timedelta(minutes=1) + 1)
    _run(http, three)
    healed = http.record(three.bad)
    assert healed["syncStatus"] == "clean", healed.get("syncErrorMessage")
