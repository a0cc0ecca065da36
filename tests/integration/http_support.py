"""The engine over real HTTP: the hooks pointed at the sandbox, an injected clock, counters.

Used by the integration tests (``from tests.integration.http_support import Http``). Reads
of observable state go through the sandbox admin API, which the
product-path call counters do not count, so a test can look without disturbing what it measures.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hooks.advoware import AdvowareHook
from hooks.espocrm import EspoCrmHook

from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.sync import EntityResult, sync_entity, validate_entity
from sandbox.server import Sandbox
from tests.fakes import FakeClock

#: Connection extras for tests: tiny retry waits, short timeouts.
FAST = {"retry_wait_base": 0.01, "retry_wait_max": 0.05, "connect_timeout": 2, "read_timeout": 2}
TOKEN = "POST /api/v1/Token"
ESPO_RECORD = "/api/v1/CBeteiligte/{id}"
ADVO_PARTY = "/api/v1/advonet/Beteiligte/{betNr}"
ADVO_PARTIES = "/api/v1/advonet/Beteiligte"
WRITE_METHODS = ("POST", "PUT", "DELETE", "PATCH")


def use_sandbox(monkeypatch: pytest.MonkeyPatch, sb: Sandbox, **extra: Any) -> None:
    """Point ``espocrm_default``/``advoware_default`` at ``sb`` with :data:`FAST` retries
    (plus ``extra`` for both connections)."""
    for name, value in sb.airflow_conn_env().items():
        conn = json.loads(value)
        conn["extra"] = {**conn.get("extra", {}), **FAST, **extra}
        monkeypatch.setenv(name, json.dumps(conn))


@dataclass(frozen=True)
class Calls:
    """Product-path calls of one stretch of a test, per ``"METHOD /template"`` (any status).

    The Advoware token call is kept apart: a hook fetches one token and reuses it for many
    entities, so it is not part of an entity's cost.
    """

    espocrm: Counter[str]
    advoware: Counter[str]

    @property
    def token(self) -> int:
        """Token requests."""
        return self.advoware[TOKEN]

    def writes(self, side: str) -> int:
        """Write requests (POST/PUT/DELETE) on ``side`` ("espocrm" or "advoware"), no token."""
        calls = self.espocrm if side == "espocrm" else self.advoware
        return sum(n for k, n in calls.items() if k.split()[0] in WRITE_METHODS and k != TOKEN)

    @property
    def business(self) -> int:
        """Every call except the token request."""
        return sum(self.espocrm.values()) + sum(self.advoware.values()) - self.token


def _flatten(counters: Mapping[str, Any]) -> Counter[str]:
    return Counter({key: sum(by_status.values()) for key, by_status in counters["calls"].items()})


@dataclass
class Http:
    """One test's world: the sandbox, one hook per API, the engine's clock and settings."""

    sb: Sandbox
    clock: FakeClock = field(
        default_factory=lambda: FakeClock(datetime.now(UTC).replace(microsecond=0))
    )
    settings: SyncSettings = field(default_factory=SyncSettings)
    espocrm: EspoCrmHook = field(default_factory=EspoCrmHook)
    advoware: AdvowareHook = field(default_factory=AdvowareHook)

    # -- observing (admin API: not counted) ----------------------------------------------------

    def record(self, entity_id: str) -> dict[str, Any]:
        """The EspoCRM record as stored."""
        for record in self.sb.espocrm_admin.state()["CBeteiligte"]:
            if record["id"] == entity_id:
                return dict(record)
        raise KeyError(entity_id)

    def parties(self) -> list[dict[str, Any]]:
        """All Advoware parties as stored (true kommKz, no GET defect)."""
        return list(self.sb.advoware_admin.state()["Beteiligte"])

    def party(self, betnr: int) -> dict[str, Any]:
        """One Advoware party as stored."""
        for party in self.parties():
            if party["betNr"] == betnr:
                return party
        raise KeyError(betnr)

    def notes(self, entity_id: str) -> list[str]:
        """Texts of the stream posts on the record, oldest first."""
        return [
            n["post"]
            for n in self.sb.espocrm_admin.state()["Note"]
            if n.get("parentId") == entity_id and n.get("type") == "Post"
        ]

    def calls(self) -> Calls:
        """Calls since the last :meth:`reset_counters`."""
        return Calls(
            _flatten(self.sb.espocrm_admin.counters()),
            _flatten(self.sb.advoware_admin.counters()),
        )

    def reset_counters(self) -> None:
        """Start counting from zero on both servers."""
        self.sb.espocrm_admin.reset_counters()
        self.sb.advoware_admin.reset_counters()

    # -- acting --------------------------------------------------------------------------------

    def list_record(self, entity_id: str) -> dict[str, Any]:
        """The record as the candidate list delivers it (no call counted): EspoCRM list
        answers carry no ``emailAddressData``/``phoneNumberData`` (SPEC §4)."""
        record = self.record(entity_id)
        for name in ("emailAddressData", "phoneNumberData"):
            record.pop(name, None)
        return record

    def run(self, entity_id: str, **kw: Any) -> EntityResult:
        """One sync of ``entity_id`` with inline validation; the record is taken as the
        candidate list would deliver it (so it costs no call)."""
        kw.setdefault("validate_inline", True)
        return sync_entity(
            self.list_record(entity_id),
            self.espocrm,
            self.advoware,
            clock=self.clock,
            settings=self.settings,
            **kw,
        )

    def validate(self, entity_id: str, **kw: Any) -> EntityResult:
        """The validation step on its own (as the DAG's validate task runs it)."""
        return validate_entity(
            entity_id, self.espocrm, self.advoware, clock=self.clock, settings=self.settings, **kw
        )

    def create_as_person(self, **fields: Any) -> str:
        """A person creates a record in EspoCRM (``pending_sync``); returns its id."""
        return str(self.sb.espocrm_admin.edit(create=fields)["id"])

    def edit_espocrm(self, entity_id: str, **fields: Any) -> dict[str, Any]:
        """A person edits the EspoCRM record (the dirty rule applies)."""
        return dict(self.sb.espocrm_admin.edit(id=entity_id, fields=fields))

    def edit_advoware(self, betnr: int, **fields: Any) -> dict[str, Any]:
        """A person edits the Advoware party's own fields (new rowId, geaendertAm)."""
        return dict(self.sb.advoware_admin.edit(betNr=betnr, fields=fields))

    def edit_kommunikation(self, betnr: int, **kommunikation: Any) -> dict[str, Any]:
        """A person changes (``id`` given) or adds a Kommunikation in Advoware."""
        return dict(self.sb.advoware_admin.edit(betNr=betnr, kommunikation=kommunikation))

    def linked(self, **fields: Any) -> tuple[str, int]:
        """A party created in EspoCRM and synced once (clean, baselines stored); then the
        clock moves on ten minutes and the counters start from zero."""
        values = {"name": "Mustermann", "vorname": "Max", "anrede": "Herr"} | fields
        entity_id = self.create_as_person(**values)
        result = self.run(entity_id)
        assert result.status == "clean", result
        self.clock.advance(minutes=10)
        self.reset_counters()
        return entity_id, int(self.record(entity_id)["betnr"])
