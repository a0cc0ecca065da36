"""Regressions over HTTP found while building the sandbox version of the convergence model.

A POST whose answer timed out was repeated after a recovery check; but the server was still
working on the first request, so the check saw nothing and both requests created an entry: a
duplicate Kommunikation (or party). Now the hooks never repeat a POST after a read timeout or a
504; the entity fails this run and the next run finds what was created.
"""

from __future__ import annotations

import time

import pytest
from hooks.advoware import KOMMUNIKATIONEN_PATH

from include.beteiligte_sync.errors import ServerError
from include.beteiligte_sync.kommkz import PHONE, normalise_value
from sandbox.server import Sandbox
from sandbox.testing import sandbox  # noqa: F401  (fixture)
from tests.hooks.scripted_server import scripted_server
from tests.hooks.test_hooks_retry_policy import advo_hook
from tests.integration.http_support import Http, use_sandbox

READ_TIMEOUT = 0.4
HANG = {"method": "POST", "path": KOMMUNIKATIONEN_PATH, "kind": "hang", "seconds": 0.8}


def _tlf_count(http: Http, betnr: int, phone: str) -> int:
    wanted = normalise_value(PHONE, phone)
    entries = http.party(betnr)["kommunikation"]
    return sum(1 for k in entries if normalise_value(PHONE, k.get("tlf") or "") == wanted)


def test_kommunikation_post_answered_too_late_is_created_once(
    sandbox: Sandbox,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_sandbox(monkeypatch, sandbox, read_timeout=READ_TIMEOUT)
    http = Http(sandbox)
    entity_id, betnr = http.linked()
    http.edit_espocrm(entity_id, phoneNumberData=[{"phoneNumber": "+49 30 5550", "type": "Office"}])
    sandbox.advoware_admin.set_faults([{**HANG, "count": 1}])

    first = http.run(entity_id)

    time.sleep(HANG["seconds"])  # the server finishes the first request meanwhile
    assert _tlf_count(http, betnr, "+49 30 5550") == 1, "repeated while still being created"
    assert first.status == "failed", first
    assert KOMMUNIKATIONEN_PATH in (http.record(entity_id)["syncErrorMessage"] or "")
    http.clock.advance(hours=2)  # past the backoff
    second = http.run(entity_id)
    assert second.status == "clean", second
    assert _tlf_count(http, betnr, "+49 30 5550") == 1, "the next run found the entry"


def test_post_answered_with_504_is_not_repeated() -> None:
    token = {"access_token": "tok", "expires_in": 3300}
    party = {"betNr": 7, "rowId": "A", "kommunikation": []}
    with (
        scripted_server((200, {}, token), (200, {}, party), (504, {}, {})) as (url, script),
        pytest.raises(ServerError) as info,
    ):
        advo_hook(url).create_kommunikation(7, {"tlf": "030 1", "kommKz": 1})
    assert info.value.status == 504
    assert [m for m, *_ in script.seen] == ["POST", "GET", "POST"]
