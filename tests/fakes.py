"""In-memory fakes of EspoCRM and Advoware that run the sandbox's own server logic in-process.

The fakes use the sandbox's tables and rules, never their own: every client call builds a
sandbox :class:`~sandbox.core.Request` and hands it to the very server class that
``python -m sandbox`` serves (:class:`~sandbox.espocrm.EspoCrmServer`,
:class:`~sandbox.advoware.AdvowareServer`, created with ``listen=False``, so no socket), via
:meth:`~sandbox.core.ApiServer.call`. An error answer becomes the engine's typed error exactly
as ``plugins/hooks/base.py`` maps it (400 and other 4xx ``BadRequest``, 401 ``AuthFailed``,
403 ``Forbidden``, 404 ``NotFound``, 409 ``Conflict`` with ``reason`` = ``X-Status-Reason``,
429 ``RateLimited``, 5xx ``ServerError``). So the fakes follow the same rules as the sandbox:
field limits from the shipped entityDefs, the formula file as the mark-dirty rule, the
OptimisticProcessor 409 rule, the 414 request-line limit, list and write answer shapes.

The client contract the fakes implement (the hooks do the same over HTTP):

EspoCRM (:class:`FakeEspoCrm`)
    ``iter_beteiligte`` yields *list-shaped* records (``emailAddress``/``phoneNumber`` but no
    ``emailAddressData``/``phoneNumberData``), one counted call per page of at most 200, paging
    until a short page (``total`` is -1/-2); a top-level ``in`` filter too long for one request
    line is cut into several requests, as the hook does. ``get_beteiligte`` returns the whole
    record with the arrays; ``update_beteiligte`` returns the PUT answer (no arrays).
Advoware (:class:`FakeAdvoware`)
    ``create_beteiligte``, ``update_beteiligte``, ``create_kommunikation`` and
    ``update_kommunikation`` return only ``{"betNr": n}``: read the party back with
    ``get_beteiligte``. ``find_beteiligte(name)`` returns ``None`` (capability absent) unless the
    fake was built with ``search=True``. ``kommKz`` read-only on PUT, DELETE -> ``Forbidden``,
    the kommKz-is-0 defect (``kommkz_zero_defect``, on by default, like the real API).

Both count calls per method (``fake.calls["get_beteiligte"]``), let tests edit data "as a
person would" (``edit_as_person``, the sandbox's admin edits) and inject failures
(``fail_on``). Timestamps follow the injected clock (``FakeClock``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from include.beteiligte_sync.errors import (
    ApiError,
    AuthFailed,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
)
from sandbox.advoware import ADVONET, AdvowareServer
from sandbox.core import MAX_REQUEST_LINE, ApiServer, HttpError, make_request, request_line
from sandbox.espocrm import BUSINESS_FIELDS, EspoCrmServer
from sandbox.limits import ADVOWARE_KOMM_MAX_LENGTH, ADVOWARE_PARTY_MAX_LENGTH
from sandbox.server import SandboxCredentials
from sandbox.where import encode_where

Record = dict[str, Any]

# The sandbox's tables, re-exported for tests that name them.
ESPOCRM_BUSINESS_FIELDS = BUSINESS_FIELDS
ADVOWARE_LIMITS = ADVOWARE_PARTY_MAX_LENGTH
KOMMUNIKATION_LIMITS = ADVOWARE_KOMM_MAX_LENGTH

BERLIN = ZoneInfo("Europe/Berlin")
ESPOCRM_API = "/api/v1"
#: EspoCRM answers ``maxSize`` above 200 with 403: pages are never larger.
PAGE_SIZE = 200


class FakeClock:
    """A settable clock returning aware UTC datetimes; ``advance`` moves it forward."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 2, 8, 10, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move the clock by ``timedelta(**delta)`` and return the new time."""
        self.now = self.now + timedelta(**delta)
        return self.now


def espo_datetime(moment: datetime) -> str:
    """EspoCRM datetime text: UTC ``YYYY-MM-DD HH:MM:SS``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def advoware_datetime(moment: datetime) -> str:
    """Advoware ``geaendertAm``: Europe/Berlin local time without offset."""
    return moment.astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M:%S")


def typed_error(status: int, reason: str | None, body: Any, request: str) -> ApiError:
    """The engine's typed error for an error answer, mapped like ``plugins/hooks/base.py``."""
    text = None if body is None else json.dumps(body)
    kw: dict[str, Any] = {"status": status, "reason": reason, "body": text, "request": request}
    if status == 401:
        return AuthFailed(f"{request}: authentication failed", **kw)
    if status == 404:
        return NotFound(f"{request}: not found", **kw)
    if status == 409:
        return Conflict(f"{request}: conflict ({reason or 'no reason given'})", **kw)
    if status == 403:
        return Forbidden(f"{request}: forbidden", **kw)
    if status == 429:
        return RateLimited(f"{request}: rate limited", **kw)
    if status >= 500:
        return ServerError(f"{request}: server error", **kw)
    return BadRequest(f"{request}: request rejected", **kw)


def _copy(value: Any) -> Any:
    """A deep copy through JSON, as a client would see the value."""
    return json.loads(json.dumps(value))


@dataclass
class _Failure:
    exc: Exception
    times: int | None  # None = always
    after_perform: bool  # True = do the work, then raise (lost response)
    skip: int = 0  # let this many calls pass first


class _FakeBase:
    """Call counting, failure injection and the in-process calls shared by both fakes."""

    server: ApiServer

    def __init__(self, clock: Callable[[], datetime] | None) -> None:
        self.clock: Callable[[], datetime] = clock or FakeClock()
        self.calls: Counter[str] = Counter()
        self._failures: dict[str, list[_Failure]] = {}

    def fail_on(
        self,
        method: str,
        exc: Exception,
        *,
        times: int | None = 1,
        after_perform: bool = False,
        skip: int = 0,
    ) -> None:
        """Make ``method`` raise ``exc`` (``times`` times, None = always) after ``skip`` calls.

        ``after_perform=True`` performs the call first and then raises: the lost-response case.
        """
        self._failures.setdefault(method, []).append(_Failure(exc, times, after_perform, skip))

    @property
    def total_calls(self) -> int:
        """Number of API calls made so far (all methods)."""
        return sum(self.calls.values())

    def reset_calls(self) -> None:
        """Forget the call counts."""
        self.calls.clear()

    def _enter(self, method: str) -> _Failure | None:
        """Count the call; raise a before-failure now or return an after-failure for later."""
        self.calls[method] += 1
        for failure in self._failures.get(method, []):
            if failure.skip > 0:
                failure.skip -= 1
                continue
            if failure.times is not None and failure.times <= 0:
                continue
            if failure.times is not None:
                failure.times -= 1
            if failure.after_perform:
                return failure
            raise failure.exc
        return None

    def _call(
        self,
        method: str,
        path: str,
        template: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One API call through the sandbox server's routing and handlers (no socket)."""
        payload = b"" if body is None else json.dumps(body).encode("utf-8")
        request = make_request(
            method,
            quote(path),
            query=urlencode(list(query)),
            headers=headers,
            body=payload,
        )
        response = self.server.call(request, authenticate=False)
        if response.status >= 400:
            reason = response.headers.get("X-Status-Reason")
            raise typed_error(response.status, reason, response.body, f"{method} {template}")
        return _copy(response.body)

    def _admin(self, action: Callable[[], Any], request: str) -> Any:
        """A person's edit through the sandbox's admin logic (not counted, no faults)."""
        try:
            with self.server.lock:
                return _copy(action())
        except HttpError as error:
            raise typed_error(error.status, error.reason, error.body, request) from None


# --- EspoCRM ----------------------------------------------------------------------------------


def _fits(path: str, query: Sequence[tuple[str, str]]) -> bool:
    """Whether a GET of ``path`` with ``query`` stays within the request-line limit."""
    line = request_line("GET", quote(path), urlencode(list(query)))
    return len(line.encode("utf-8")) <= MAX_REQUEST_LINE


def _split_in_filters(
    where: list[Mapping[str, Any]], fits: Callable[[list[Mapping[str, Any]]], bool]
) -> list[list[Mapping[str, Any]]]:
    """``where`` cut into where lists that each fit, by splitting the longest top-level ``in``
    item's values (an ``in`` is an OR over its values, so the union is the same result)."""
    if fits(where):
        return [where]
    candidates = [
        i
        for i, item in enumerate(where)
        if item.get("type") == "in" and isinstance(item.get("value"), list | tuple)
    ]
    if not candidates:
        return [where]  # nothing to cut: the server answers 414
    index = max(candidates, key=lambda i: len(where[i]["value"]))
    values = list(dict.fromkeys(where[index]["value"]))
    if len(values) <= 1:
        return [where]
    half = len(values) // 2
    parts: list[list[Mapping[str, Any]]] = []
    for chunk in (values[:half], values[half:]):
        replaced = [*where[:index], {**where[index], "value": chunk}, *where[index + 1 :]]
        parts.extend(_split_in_filters(replaced, fits))
    return parts


class FakeEspoCrm(_FakeBase):
    """In-memory EspoCRM ``CBeteiligte`` store implementing ``EspoCrmClient``: the sandbox's
    :class:`EspoCrmServer` run in-process."""

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]] = (),
        *,
        clock: Callable[[], datetime] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(clock)
        self.server: EspoCrmServer = EspoCrmServer(
            api_key=SandboxCredentials().espocrm_api_key,
            seed=seed,
            listen=False,
            clock=lambda: self.clock(),
        )
        for record in records:
            self.load(record)

    @property
    def records(self) -> dict[str, Record]:
        """The stored records by id (the server's live table)."""
        return self.server.beteiligte

    # -- test helpers (not part of the protocol, not counted) ----------------------------------

    def load(self, record: Mapping[str, Any]) -> Record:
        """Put a record into the store as given (validated like a scenario load), filling
        server-set fields if missing; the formula runs as for any new record."""

        data = _copy(dict(record))
        return self._admin(lambda: self.server.load_record(data), "load CBeteiligte")

    def create_as_person(self, fields: Mapping[str, Any]) -> Record:
        """Create a record the way a person in the UI would (the formula starts it
        ``pending_sync``)."""
        data = {k: v for k, v in fields.items() if k != "syncStatus"}
        return self._admin(lambda: self.server.admin_edit({"create": data}), "create CBeteiligte")

    def edit_as_person(self, entity_id: str, fields: Mapping[str, Any]) -> Record:
        """Change a record as a person would (not counted): the formula applies."""
        edit = {"id": entity_id, "fields": _copy(dict(fields))}
        return self._admin(lambda: self.server.admin_edit(edit), "edit CBeteiligte")

    def record(self, entity_id: str) -> Record:
        """Current stored record (copy, with the arrays), without counting a call."""
        return _copy(self.server.beteiligte[entity_id])

    def notes_for(self, entity_id: str) -> list[str]:
        """Texts of the stream notes posted on ``entity_id``."""
        return [n["post"] for n in self.server.notes.values() if n["parentId"] == entity_id]

    # -- EspoCrmClient -------------------------------------------------------------------------

    def iter_beteiligte(
        self,
        where: Sequence[Mapping[str, Any]] = (),
        *,
        select: Sequence[str] | None = None,
        order_by: str | None = None,
        order: str = "asc",
        limit: int | None = None,
    ) -> Iterator[Record]:
        """Yield matching list-shaped records page by page (one counted call per request)."""
        after = self._enter("iter_beteiligte")
        first = True
        base: list[tuple[str, str]] = []
        if select:
            base.append(("select", ",".join(select)))
        if order_by:
            base += [("orderBy", order_by), ("order", order)]
        path = f"{ESPOCRM_API}/CBeteiligte"
        fits = lambda items: _fits(  # noqa: E731
            path, [*base, *encode_where(items), ("maxSize", "200"), ("offset", "999999")]
        )
        seen: set[str] = set()
        yielded = 0
        for part in _split_in_filters(list(where), fits):
            offset = 0
            while limit is None or yielded < limit:
                size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - yielded)
                query = [
                    *base,
                    *encode_where(part),
                    ("maxSize", str(size)),
                    ("offset", str(offset)),
                ]
                if not first:
                    self.calls["iter_beteiligte"] += 1
                first = False
                page = self._call("GET", path, "/api/v1/CBeteiligte", query=query)
                records = page["list"]
                offset += len(records)
                for record in records:
                    if record["id"] in seen:
                        continue
                    seen.add(record["id"])
                    yielded += 1
                    yield record
                    if limit is not None and yielded >= limit:
                        break
                if len(records) < size:
                    break
        if after:
            raise after.exc

    def get_beteiligte(self, entity_id: str) -> Record:
        """Return one whole record (with ``emailAddressData``/``phoneNumberData``)."""
        self._enter("get_beteiligte")
        path = f"{ESPOCRM_API}/CBeteiligte/{entity_id}"
        return self._call("GET", path, "/api/v1/CBeteiligte/{id}")

    def update_beteiligte(
        self, entity_id: str, data: Mapping[str, Any], *, version_number: int | None = None
    ) -> Record:
        """Partial update (PUT) with optional ``X-Version-Number``; returns the PUT answer."""
        after = self._enter("update_beteiligte")
        headers = {} if version_number is None else {"X-Version-Number": str(version_number)}
        path = f"{ESPOCRM_API}/CBeteiligte/{entity_id}"
        result = self._call(
            "PUT", path, "/api/v1/CBeteiligte/{id}", body=dict(data), headers=headers
        )
        if after:
            raise after.exc
        return result

    def post_note(self, entity_id: str, text: str) -> Record:
        """Post a stream note on the record."""
        after = self._enter("post_note")
        body = {"type": "Post", "parentType": "CBeteiligte", "parentId": entity_id, "post": text}
        note = self._call("POST", f"{ESPOCRM_API}/Note", "/api/v1/Note", body=body)
        if after:
            raise after.exc
        return note


# --- Advoware ---------------------------------------------------------------------------------


class FakeAdvoware(_FakeBase):
    """In-memory Advoware ``Beteiligte`` store implementing ``AdvowareClient``: the sandbox's
    :class:`AdvowareServer` run in-process."""

    def __init__(
        self,
        parties: Sequence[Mapping[str, Any]] = (),
        *,
        clock: Callable[[], datetime] | None = None,
        kommkz_zero_defect: bool = True,
        read_only_fields: Sequence[str] = (),
        search: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(clock)
        self.server: AdvowareServer = AdvowareServer(
            credentials=SandboxCredentials(),
            seed=seed,
            listen=False,
            clock=lambda: self.clock(),
        )
        self.server.kommkz_zero_defect = kommkz_zero_defect
        self.server.set_search(search)
        #: Fields the API silently ignores on PUT (seed #13: "Advoware-Feld read-only machen").
        self.read_only_fields = set(read_only_fields)
        for party in parties:
            self.load(party)

    @property
    def kommkz_zero_defect(self) -> bool:
        """Whether GET reports every ``kommKz`` as 0 (the real API's defect)."""
        return self.server.kommkz_zero_defect

    @kommkz_zero_defect.setter
    def kommkz_zero_defect(self, value: bool) -> None:
        self.server.kommkz_zero_defect = value

    @property
    def search(self) -> bool:
        """Whether the optional ``GET /Beteiligte?name=`` search exists."""
        return self.server.search

    @search.setter
    def search(self, value: bool) -> None:
        self.server.set_search(value)

    @property
    def parties(self) -> dict[int, Record]:
        """The stored parties by ``betNr`` (the server's live table, true ``kommKz``)."""
        return self.server.parties

    # -- test helpers --------------------------------------------------------------------------

    def load(self, party: Mapping[str, Any]) -> Record:
        """Store a party as given (validated like a scenario load), filling server-set fields
        (ids, rowIds, geaendertAm)."""
        data = _copy(dict(party))
        return self._admin(lambda: self.server.load_party(data), "load party")

    def edit_as_person(self, betnr: int, fields: Mapping[str, Any]) -> Record:
        """Change a party's own fields as a person would (new rowId, geaendertAm)."""
        edit = {"betNr": betnr, "fields": _copy(dict(fields))}
        return self._admin(lambda: self.server.admin_edit(edit), "edit party")

    def edit_kommunikation_as_person(
        self, betnr: int, komm_id: int | None, fields: Mapping[str, Any]
    ) -> Record:
        """Change (``komm_id``) or add (``None``) a Kommunikation as a person would (a person
        may change ``kommKz``)."""
        komm = _copy(dict(fields))
        if komm_id is None:
            komm.pop("id", None)
        else:
            komm["id"] = komm_id
        edit = {"betNr": betnr, "kommunikation": komm}
        return self._admin(lambda: self.server.admin_edit(edit), "edit Kommunikation")

    def party(self, betnr: int) -> Record:
        """Stored party (copy, true kommKz), without counting a call."""
        return _copy(self.server.parties[betnr])

    def delete_as_person(self, betnr: int) -> None:
        """Remove a party (as deleted in the Advoware UI)."""
        self._admin(lambda: self.server.admin_edit({"betNr": betnr, "delete": True}), "delete")

    # -- AdvowareClient ------------------------------------------------------------------------

    def get_beteiligte(self, betnr: int) -> Record:
        """One party with its ``kommunikation`` (kommKz 0 while the defect is on)."""
        self._enter("get_beteiligte")
        path = f"{ADVONET}/Beteiligte/{betnr}"
        return self._call("GET", path, "/api/v1/advonet/Beteiligte/{betNr}")

    def find_beteiligte(self, name: str) -> list[Record] | None:
        """Parties whose name equals ``name``; ``None`` when the API offers no search (the
        server answers 404/405): the capability is absent."""
        self._enter("find_beteiligte")
        try:
            found = self._call(
                "GET",
                f"{ADVONET}/Beteiligte",
                "/api/v1/advonet/Beteiligte",
                query=[("name", name)],
            )
        except BadRequest as error:
            if error.status == 405:
                return None
            raise
        except NotFound:
            return None
        return found

    def create_beteiligte(self, data: Mapping[str, Any]) -> Record:
        """Create a party; the answer is only ``{"betNr": n}``."""
        after = self._enter("create_beteiligte")
        answer = self._call(
            "POST", f"{ADVONET}/Beteiligte", "/api/v1/advonet/Beteiligte", body=dict(data)
        )
        if after:
            raise after.exc
        return answer

    def update_beteiligte(self, betnr: int, data: Mapping[str, Any]) -> Record:
        """Update the party's own fields (partial); the answer is only ``{"betNr": n}``."""
        after = self._enter("update_beteiligte")
        body = {k: v for k, v in data.items() if k not in self.read_only_fields}
        answer = self._call(
            "PUT",
            f"{ADVONET}/Beteiligte/{betnr}",
            "/api/v1/advonet/Beteiligte/{betNr}",
            body=body,
        )
        if after:
            raise after.exc
        return answer

    def create_kommunikation(self, betnr: int, data: Mapping[str, Any]) -> Record:
        """Create a Kommunikation (the party's rowId does not change); answer ``{"betNr": n}``."""
        after = self._enter("create_kommunikation")
        answer = self._call(
            "POST",
            f"{ADVONET}/Beteiligte/{betnr}/Kommunikationen",
            "/api/v1/advonet/Beteiligte/{betNr}/Kommunikationen",
            body=dict(data),
        )
        if after:
            raise after.exc
        return answer

    def update_kommunikation(self, betnr: int, komm_id: int, data: Mapping[str, Any]) -> Record:
        """Change tlf/bemerkung/online (kommKz is ignored, read-only); answer ``{"betNr": n}``."""
        after = self._enter("update_kommunikation")
        answer = self._call(
            "PUT",
            f"{ADVONET}/Beteiligte/{betnr}/Kommunikationen/{komm_id}",
            "/api/v1/advonet/Beteiligte/{betNr}/Kommunikationen/{kommId}",
            body=dict(data),
        )
        if after:
            raise after.exc
        return answer

    def delete_kommunikation(self, betnr: int, komm_id: int) -> None:
        """Always forbidden, like the real API."""
        self._enter("delete_kommunikation")
        self._call(
            "DELETE",
            f"{ADVONET}/Beteiligte/{betnr}/Kommunikationen/{komm_id}",
            "/api/v1/advonet/Beteiligte/{betNr}/Kommunikationen/{kommId}",
        )


@dataclass
class FakePair:
    """Both fakes sharing one clock, for engine tests."""

    clock: FakeClock = field(default_factory=FakeClock)
    espocrm: FakeEspoCrm = field(init=False)
    advoware: FakeAdvoware = field(init=False)

    def __post_init__(self) -> None:
        self.espocrm = FakeEspoCrm(clock=self.clock)
        self.advoware = FakeAdvoware(clock=self.clock)

    def total_calls(self) -> int:
        """API calls on both sides."""
        return self.espocrm.total_calls + self.advoware.total_calls

    def reset_calls(self) -> None:
        """Forget the call counts on both sides."""
        self.espocrm.reset_calls()
        self.advoware.reset_calls()
