"""The two systems the model-based proof runs against, behind one small interface.

:class:`FakeWorld` is the in-memory pair of :mod:`tests.fakes` with a fault-injecting proxy in
front of each client; :class:`SandboxWorld` is the real sandbox over HTTP, talked to through
the Airflow hooks (faults through the sandbox's admin API). The state machine in
``proof_machine.py`` only knows this interface: person edits, reading the true state of both
sides, arming faults, and the clients the engine uses.

A *crash* (the worker process dies between two writes) is modelled by :class:`Crash`, a
``BaseException`` the engine cannot catch: the run stops where it is, whatever it wrote stays,
its locks stay behind.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from hooks.advoware import (
    BETEILIGTE_PATH,
    KOMMUNIKATION_PATH,
    KOMMUNIKATIONEN_PATH,
    PARTY_PATH,
    AdvowareHook,
)
from hooks.espocrm import ENTITY_PATH, NOTE_PATH, RECORD_PATH, EspoCrmHook

from include.beteiligte_sync.clients import AdvowareClient, EspoCrmClient, Record
from include.beteiligte_sync.errors import AuthFailed, NotFound, RateLimited, ServerError
from sandbox.admin import SandboxAdmin
from sandbox.server import Sandbox
from tests.fakes import FakeClock, FakePair

ESPOCRM_METHODS = ("iter_beteiligte", "get_beteiligte", "update_beteiligte", "post_note")
ADVOWARE_METHODS = (
    "get_beteiligte",
    "find_beteiligte",
    "create_beteiligte",
    "update_beteiligte",
    "create_kommunikation",
    "update_kommunikation",
)
FAULT_KINDS = ("server_error", "timeout", "rate_limited", "token_expiry", "lost_response", "crash")
#: Advoware answers 404 for a party that exists (a proxy, a glitch): ``get_beteiligte`` only.
NOT_FOUND = "not_found"
#: The Advoware methods that write (a lost answer: performed, then no answer).
ADVOWARE_WRITES = (
    "create_beteiligte",
    "update_beteiligte",
    "create_kommunikation",
    "update_kommunikation",
)


class Crash(BaseException):
    """The worker died: escapes every ``except Exception`` in the engine."""


@dataclass(frozen=True)
class Fault:
    """One injected fault: ``method`` of ``side`` fails ``times`` times after ``skip`` calls."""

    side: str
    method: str
    kind: str
    skip: int = 0
    times: int = 1


class World(Protocol):
    """What the state machine needs from a pair of systems."""

    espocrm: EspoCrmClient
    advoware: AdvowareClient

    def now(self) -> datetime:
        """The engine's clock."""
        ...

    def jump(self, minutes: float) -> None:
        """Move the engine's clock (and, for the fakes, the servers' clocks)."""
        ...

    def espo_records(self) -> list[Record]:
        """All EspoCRM records as stored."""
        ...

    def advo_parties(self) -> dict[int, Record]:
        """All Advoware parties as stored (true ``kommKz``), by betNr."""
        ...

    def notes(self, entity_id: str) -> list[str]:
        """Texts of the stream notes of an entity."""
        ...

    def espo_create(self, fields: Mapping[str, Any]) -> Record:
        """A person creates a record in EspoCRM."""
        ...

    def espo_edit(self, entity_id: str, fields: Mapping[str, Any]) -> None:
        """A person edits a record in EspoCRM."""
        ...

    def advo_edit(self, betnr: int, fields: Mapping[str, Any]) -> None:
        """A person edits a party's own fields in Advoware."""
        ...

    def advo_komm(self, betnr: int, komm_id: int | None, fields: Mapping[str, Any]) -> None:
        """A person changes (``komm_id``) or adds (``None``) a Kommunikation in Advoware."""
        ...

    def advo_delete_komm(self, betnr: int, komm_id: int) -> None:
        """A person deletes a Kommunikation entry in Advoware's own program (the API cannot)."""
        ...

    def ignore_on_put(self, fields: frozenset[str]) -> None:
        """From now on Advoware silently ignores ``fields`` in a party PUT (seed #13)."""
        ...

    def arm(self, fault: Fault) -> None:
        """Inject a fault."""
        ...

    def clear_faults(self) -> None:
        """No more faults."""
        ...


# --- the fault proxy (both worlds use it for crashes; the fakes for everything) -------------


@dataclass
class _Armed:
    fault: Fault
    skip: int
    times: int


def _fault_error(kind: str, request: str) -> Exception:
    if kind == "server_error":
        return ServerError("server error", status=503, request=request)
    if kind in ("timeout", "lost_response"):
        return ServerError("no response (timeout)", status=None, request=request)
    if kind == "rate_limited":
        return RateLimited("rate limited", status=429, retry_after=1, request=request)
    if kind == NOT_FOUND:
        return NotFound("not found (glitch)", status=404, request=request)
    if kind == "token_expiry":
        # The hook renews an expired token once; a refused renewal reaches the engine as this.
        return AuthFailed("token expired and renewal refused", status=401, request=request)
    raise ValueError(kind)


class FaultyClient:
    """Wraps a client; armed faults fire on the named methods (before or after the call)."""

    def __init__(self, inner: Any, side: str) -> None:
        self._inner = inner
        self._side = side
        self._armed: list[_Armed] = []
        self.fired = 0
        #: fields ``update_beteiligte`` drops from its body (a field the server ignores on PUT)
        self.ignored_fields: frozenset[str] = frozenset()

    def arm(self, fault: Fault) -> None:
        """Add a fault for one of this client's methods."""
        self._armed.append(_Armed(fault, fault.skip, fault.times))

    def clear(self) -> None:
        """Forget every armed fault."""
        self._armed.clear()

    def _due(self, method: str) -> Fault | None:
        for armed in self._armed:
            if armed.fault.method != method or armed.times <= 0:
                continue
            if armed.skip > 0:
                armed.skip -= 1
                continue
            armed.times -= 1
            self.fired += 1
            return armed.fault
        return None

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target) or name.startswith("_"):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if name == "update_beteiligte" and self.ignored_fields and len(args) >= 2:
                body = {k: v for k, v in dict(args[1]).items() if k not in self.ignored_fields}
                args = (args[0], body, *args[2:])
            fault = self._due(name)
            request = f"{self._side}.{name}"
            if fault is None:
                return _materialise(target(*args, **kwargs))
            if fault.kind == "crash":
                raise Crash(request)
            if fault.kind == "lost_response":
                _materialise(target(*args, **kwargs))  # performed, answer lost
            raise _fault_error(fault.kind, request)

        return call


def _materialise(result: Any) -> Any:
    # A generator would run its body (and our fault check) late; lists keep the order honest.
    return list(result) if isinstance(result, Iterator) else result


# --- in memory --------------------------------------------------------------------------------


class FakeWorld:
    """The in-memory fakes with fault proxies."""

    def __init__(self) -> None:
        self.pair = FakePair(clock=FakeClock(datetime(2026, 2, 8, 10, 0, tzinfo=UTC)))
        self.espocrm_proxy = FaultyClient(self.pair.espocrm, "espocrm")
        self.advoware_proxy = FaultyClient(self.pair.advoware, "advoware")
        self.espocrm: EspoCrmClient = self.espocrm_proxy  # type: ignore[assignment]
        self.advoware: AdvowareClient = self.advoware_proxy  # type: ignore[assignment]

    def now(self) -> datetime:
        return self.pair.clock()

    def jump(self, minutes: float) -> None:
        self.pair.clock.advance(minutes=minutes)

    def espo_records(self) -> list[Record]:
        return [copy.deepcopy(r) for r in self.pair.espocrm.records.values()]

    def advo_parties(self) -> dict[int, Record]:
        return copy.deepcopy(self.pair.advoware.parties)

    def notes(self, entity_id: str) -> list[str]:
        return self.pair.espocrm.notes_for(entity_id)

    def espo_create(self, fields: Mapping[str, Any]) -> Record:
        return self.pair.espocrm.create_as_person(fields)

    def espo_edit(self, entity_id: str, fields: Mapping[str, Any]) -> None:
        self.pair.espocrm.edit_as_person(entity_id, fields)

    def advo_edit(self, betnr: int, fields: Mapping[str, Any]) -> None:
        self.pair.advoware.edit_as_person(betnr, fields)

    def advo_komm(self, betnr: int, komm_id: int | None, fields: Mapping[str, Any]) -> None:
        self.pair.advoware.edit_kommunikation_as_person(betnr, komm_id, fields)

    def advo_delete_komm(self, betnr: int, komm_id: int) -> None:
        server = self.pair.advoware.server
        edit = {"betNr": betnr, "delete_kommunikation": komm_id}
        self.pair.advoware._admin(lambda: server.admin_edit(edit), "delete Kommunikation")

    def ignore_on_put(self, fields: frozenset[str]) -> None:
        self.advoware_proxy.ignored_fields = fields

    def arm(self, fault: Fault) -> None:
        proxy = self.espocrm_proxy if fault.side == "espocrm" else self.advoware_proxy
        proxy.arm(fault)

    def clear_faults(self) -> None:
        self.espocrm_proxy.clear()
        self.advoware_proxy.clear()
        self.advoware_proxy.ignored_fields = frozenset()


class OffsetClock:
    """Real time plus a jump offset (the sandbox servers keep their own real clocks)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def fresh_ids() -> Callable[[], int]:
    """A counter for unique generated values."""
    counter = itertools.count(1)
    return lambda: next(counter)


# --- over the sandbox's HTTP ------------------------------------------------------------------

#: The engine's client methods as the sandbox's fault rules address them.
FAULT_TARGETS = {
    ("espocrm", "iter_beteiligte"): ("GET", ENTITY_PATH),
    ("espocrm", "get_beteiligte"): ("GET", RECORD_PATH),
    ("espocrm", "update_beteiligte"): ("PUT", RECORD_PATH),
    ("espocrm", "post_note"): ("POST", NOTE_PATH),
    ("advoware", "get_beteiligte"): ("GET", PARTY_PATH),
    ("advoware", "find_beteiligte"): ("GET", BETEILIGTE_PATH),
    ("advoware", "create_beteiligte"): ("POST", BETEILIGTE_PATH),
    ("advoware", "update_beteiligte"): ("PUT", PARTY_PATH),
    ("advoware", "create_kommunikation"): ("POST", KOMMUNIKATIONEN_PATH),
    ("advoware", "update_kommunikation"): ("PUT", KOMMUNIKATION_PATH),
}
#: The hooks' read timeout in the sandbox world, and how long a ``hang`` fault sleeps (longer).
READ_TIMEOUT = 1.0
HANG_SECONDS = 1.3
#: Connection extras of the sandbox world: two attempts per request, so a fault firing twice
#: reaches the engine; no waiting for ``Retry-After`` (the rules say 0).
SANDBOX_EXTRA = {"retry_attempts": 2, "read_timeout": READ_TIMEOUT}


def sandbox_rule(fault: Fault) -> dict[str, Any] | None:
    """The sandbox fault rule for ``fault``; ``None`` for a crash (the client proxy does that).

    ``skip`` becomes a firing rate of ``1 / (skip + 1)`` (the sandbox draws it from its seeded
    random source): the rules have no "after n calls". A timeout is a ``hang``: the server
    performs the request after the hook gave up waiting (for a POST the hook must then not
    repeat it: the server is still creating).
    """
    if fault.kind == "crash":
        return None
    if fault.kind == NOT_FOUND and (fault.side, fault.method) != ("advoware", "get_beteiligte"):
        raise ValueError("a 404 glitch is a party GET")
    method, path = FAULT_TARGETS[(fault.side, fault.method)]
    rule: dict[str, Any] = {"method": method, "path": path, "count": fault.times}
    rule["rate"] = 1.0 / (fault.skip + 1)
    if fault.kind == "server_error":
        rule.update(kind="error", status=500)
    elif fault.kind == "timeout":
        rule.update(kind="hang", seconds=HANG_SECONDS)
    elif fault.kind == "rate_limited":
        rule.update(kind="rate_limit", retry_after=0)
    elif fault.kind == "token_expiry":
        # Advoware: the token expires and the hook renews it; EspoCRM has no token, its key is
        # refused once (what a key rotation during a run looks like).
        kind = {"kind": "expire_tokens"} if fault.side == "advoware" else {"kind": "error"}
        rule.update(kind, status=401)
    elif fault.kind == "lost_response":
        rule.update(kind="drop_response")
    elif fault.kind == NOT_FOUND:
        rule.update(kind="error", status=404)
    else:
        raise ValueError(fault.kind)
    return rule


class SandboxWorld:
    """The sandbox servers over HTTP, through the Airflow hooks.

    The hook connections must point at ``sb`` (``use_sandbox(monkeypatch, sb, **SANDBOX_EXTRA)``
    from ``tests/integration/http_support.py``) and the servers' clocks must follow ``clock``
    (see ``test_proof_convergence_http.py``). The sandbox is emptied for every world, so one
    server pair serves all examples.
    """

    def __init__(self, sb: Sandbox, clock: OffsetClock) -> None:
        self.sb = sb
        self.clock = clock
        clock.offset = timedelta()
        for admin in self._admins():
            admin.reset()
        self.hooks = (EspoCrmHook(), AdvowareHook())
        self.espocrm_proxy = FaultyClient(self.hooks[0], "espocrm")
        self.advoware_proxy = FaultyClient(self.hooks[1], "advoware")
        self.espocrm: EspoCrmClient = self.espocrm_proxy  # type: ignore[assignment]
        self.advoware: AdvowareClient = self.advoware_proxy  # type: ignore[assignment]
        self.rules_set = 0

    def _admins(self) -> tuple[SandboxAdmin, SandboxAdmin]:
        return self.sb.espocrm_admin, self.sb.advoware_admin

    def close(self) -> None:
        """Close the hooks' HTTP sessions."""
        for hook in self.hooks:
            hook.close()

    def now(self) -> datetime:
        return self.clock()

    def jump(self, minutes: float) -> None:
        # Time passing includes the servers finishing what they still work on (a request the
        # hook gave up on): minutes of the model are not 0.3 real seconds.
        self.settle()
        self.clock.offset += timedelta(minutes=minutes)

    def settle(self, limit: float = 5.0) -> None:
        """Wait until neither server has a request in flight (a ``hang`` being served)."""
        deadline = time.monotonic() + limit
        while any(admin.counters()["in_flight"] for admin in self._admins()):
            if time.monotonic() > deadline:
                raise AssertionError("a sandbox request is still in flight")
            time.sleep(0.05)

    def espo_records(self) -> list[Record]:
        return list(self.sb.espocrm_admin.state()["CBeteiligte"])

    def advo_parties(self) -> dict[int, Record]:
        return {p["betNr"]: p for p in self.sb.advoware_admin.state()["Beteiligte"]}

    def notes(self, entity_id: str) -> list[str]:
        return [
            str(n["post"])
            for n in self.sb.espocrm_admin.state()["Note"]
            if n.get("parentId") == entity_id and n.get("type") == "Post"
        ]

    def espo_create(self, fields: Mapping[str, Any]) -> Record:
        return dict(self.sb.espocrm_admin.edit(create=dict(fields)))

    def espo_edit(self, entity_id: str, fields: Mapping[str, Any]) -> None:
        self.sb.espocrm_admin.edit(id=entity_id, fields=dict(fields))

    def advo_edit(self, betnr: int, fields: Mapping[str, Any]) -> None:
        self.sb.advoware_admin.edit(betNr=betnr, fields=dict(fields))

    def advo_komm(self, betnr: int, komm_id: int | None, fields: Mapping[str, Any]) -> None:
        entry = dict(fields) if komm_id is None else {"id": komm_id, **fields}
        self.sb.advoware_admin.edit(betNr=betnr, kommunikation=entry)

    def advo_delete_komm(self, betnr: int, komm_id: int) -> None:
        self.sb.advoware_admin.edit(betNr=betnr, delete_kommunikation=komm_id)

    def ignore_on_put(self, fields: frozenset[str]) -> None:
        self.advoware_proxy.ignored_fields = fields

    def arm(self, fault: Fault) -> None:
        rule = sandbox_rule(fault)
        if rule is None:
            proxy = self.espocrm_proxy if fault.side == "espocrm" else self.advoware_proxy
            proxy.arm(fault)
            return
        admin = self.sb.espocrm_admin if fault.side == "espocrm" else self.sb.advoware_admin
        # Setting rules replaces them (and restarts their counts): carry over what is left.
        rules = [r for r in (_left(r) for r in admin.faults()["rules"]) if r is not None]
        self.rules_set += 1
        admin.set_faults([*rules, rule], seed=self.rules_set)

    def clear_faults(self) -> None:
        for admin in self._admins():
            admin.clear_faults()
        self.espocrm_proxy.clear()
        self.advoware_proxy.clear()
        self.advoware_proxy.ignored_fields = frozenset()


def _left(dumped: Mapping[str, Any]) -> dict[str, Any] | None:
    """A dumped rule with the firings it has left, or ``None`` when it is used up."""
    rule = {k: v for k, v in dumped.items() if k != "fired"}
    if rule.get("count") is not None:
        rule["count"] -= dumped.get("fired", 0)
        if rule["count"] <= 0:
            return None
    return rule
