"""In-memory fakes of EspoCRM and Advoware, behaviourally equal to the sandbox servers.

They implement the protocols of :mod:`include.beteiligte_sync.clients` and mirror the API rules
the sandbox emulates (SPEC §4-§5, helpers/sandbox.md):

EspoCRM (:class:`FakeEspoCrm`)
    ``versionNumber`` bumped and ``modifiedAt`` set on every write; ``version_number`` mismatch ->
    ``Conflict(reason="modified")``; the *dirty rule*: a write that changes a business field and
    does not itself set ``syncStatus`` sets ``syncStatus="dirty"``; a value-identical write is not
    a change; a new record starts ``pending_sync``; ``...Data`` arrays replace the whole set and
    maintain ``emailAddress``/``phoneNumber``; invalid email -> ``BadRequest``; ``where`` filters.
Advoware (:class:`FakeAdvoware`)
    ``rowId`` regenerated and ``geaendertAm`` (Europe/Berlin local, no offset) updated on every
    PUT of the party's own fields (even a value-identical one, like the sandbox), *not* when
    only a Kommunikation changes; a Kommunikation's own ``rowId`` changes on each of its PUTs;
    ``kommKz`` read-only on PUT; DELETE -> Forbidden;
    the kommKz-is-0-on-GET defect (on by default, like the real API); field limits -> BadRequest;
    unknown ``betNr`` -> ``NotFound``.

Both count calls per method (``fake.calls["get_beteiligte"]``), let tests edit data "as a
person would" (``edit_as_person``) and inject failures (``fail_on``).
"""

from __future__ import annotations

import copy
import itertools
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from include.beteiligte_sync.errors import BadRequest, Conflict, Forbidden, NotFound
from sandbox.espocrm import BUSINESS_FIELDS
from sandbox.limits import ADVOWARE_KOMM_MAX_LENGTH, ADVOWARE_PARTY_MAX_LENGTH

Record = dict[str, Any]

# The fakes follow the sandbox's rules: share its tables instead of copying them.
ESPOCRM_BUSINESS_FIELDS = BUSINESS_FIELDS
ADVOWARE_LIMITS = ADVOWARE_PARTY_MAX_LENGTH
KOMMUNIKATION_LIMITS = ADVOWARE_KOMM_MAX_LENGTH

ESPOCRM_BOOKKEEPING_FIELDS = (
    "betnr",
    "syncStatus",
    "syncRetryCount",
    "syncNextRetry",
    "syncAutoResetAt",
    "syncErrorMessage",
    "advowareLastSync",
    "advowareRowId",
    "syncedHash",
    "kommunikationHash",
    "syncLockedAt",
)
ADVOWARE_PARTY_FIELDS = (*ADVOWARE_LIMITS, "geburtsdatum")
_ESPOCRM_ORDERABLE = frozenset(
    (*ESPOCRM_BUSINESS_FIELDS, *ESPOCRM_BOOKKEEPING_FIELDS, "id", "createdAt", "modifiedAt")
)
BERLIN = ZoneInfo("Europe/Berlin")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


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


@dataclass
class _Failure:
    exc: Exception
    times: int | None  # None = always
    after_perform: bool  # True = do the work, then raise (lost response)
    skip: int = 0  # let this many calls pass first


class _FakeBase:
    """Call counting and failure injection shared by both fakes."""

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


# --- EspoCRM ----------------------------------------------------------------------------------


def _espo_value_check(name: str, value: Any) -> None:
    """EspoCRM rejects values of the wrong JSON type (400)."""
    if name in ("emailAddressData", "phoneNumberData"):
        if value is not None and not isinstance(value, list):
            raise BadRequest("invalid type", status=400, reason="validationFailure")
        return
    if name in ("betnr", "syncRetryCount", "versionNumber"):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise BadRequest("invalid type", status=400, reason="validationFailure")
        return
    if value is not None and not isinstance(value, str | int | float | bool):
        raise BadRequest("invalid type", status=400, reason="validationFailure")


def _normalise_email_data(items: list[Any]) -> list[Record]:
    out = []
    for item in items:
        if not isinstance(item, dict) or not _EMAIL.match(str(item.get("emailAddress") or "")):
            raise BadRequest(
                "invalid email", status=400, reason="validationFailure", request="PUT /CBeteiligte"
            )
        address = str(item["emailAddress"])
        out.append(
            {
                "emailAddress": address,
                "lower": address.lower(),
                "primary": bool(item.get("primary", False)),
                "optOut": bool(item.get("optOut", False)),
                "invalid": bool(item.get("invalid", False)),
            }
        )
    _ensure_primary(out)
    return out


def _normalise_phone_data(items: list[Any]) -> list[Record]:
    out = []
    for item in items:
        if not isinstance(item, dict) or not str(item.get("phoneNumber") or "").strip():
            raise BadRequest("invalid phone", status=400, reason="validationFailure")
        kind = item.get("type") or "Office"
        if kind not in ("Office", "Mobile", "Home", "Fax", "Other"):
            raise BadRequest("invalid phone type", status=400, reason="validationFailure")
        out.append(
            {
                "phoneNumber": str(item["phoneNumber"]),
                "type": kind,
                "primary": bool(item.get("primary", False)),
                "optOut": bool(item.get("optOut", False)),
                "invalid": bool(item.get("invalid", False)),
            }
        )
    _ensure_primary(out)
    return out


def _ensure_primary(items: list[Record]) -> None:
    """Exactly one primary entry, as EspoCRM keeps it (the first one if none is marked)."""
    if items and not any(i["primary"] for i in items):
        items[0]["primary"] = True
    seen = False
    for item in items:
        if item["primary"] and seen:
            item["primary"] = False
        seen = seen or item["primary"]


def _primary(items: list[Record], key: str) -> str | None:
    for item in items:
        if item.get("primary"):
            return str(item[key])
    return None


def matches_where(record: Mapping[str, Any], item: Mapping[str, Any]) -> bool:
    """EspoCRM ``where`` semantics for the item types of SPEC §4 (raises BadRequest if unknown)."""
    kind = item.get("type")
    attr = item.get("attribute")
    value = item.get("value")
    if kind in ("or", "and"):
        if not isinstance(value, list):
            raise BadRequest("malformed where", status=400, reason="invalidWhere")
        results = [matches_where(record, sub) for sub in value]
        return any(results) if kind == "or" else all(results)
    if not isinstance(attr, str):
        raise BadRequest("malformed where", status=400, reason="invalidWhere")
    actual = record.get(attr)
    if kind == "equals":
        return actual == value
    if kind == "notEquals":
        return actual != value
    if kind in ("in", "notIn"):
        values = value if isinstance(value, list) else [value]
        return (actual in values) == (kind == "in")
    if kind == "isNull":
        return actual is None or actual == ""
    if kind == "isNotNull":
        return not (actual is None or actual == "")
    if kind in ("before", "lessThan", "after", "greaterThan"):
        if actual is None or actual == "" or value is None:
            return False
        # EspoCRM datetimes "YYYY-MM-DD HH:MM:SS" compare chronologically as text.
        if kind in ("before", "lessThan"):
            return bool(actual < value)
        return bool(actual > value)
    raise BadRequest("unknown where type", status=400, reason="invalidWhere")


class FakeEspoCrm(_FakeBase):
    """In-memory EspoCRM ``CBeteiligte`` store implementing ``EspoCrmClient``."""

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]] = (),
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(clock)
        self.records: dict[str, Record] = {}
        self.notes: list[Record] = []
        self._ids = itertools.count(1)
        for record in records:
            self.load(record)

    # -- test helpers (not part of the protocol, not counted) ----------------------------------

    def load(self, record: Mapping[str, Any]) -> Record:
        """Put a record into the store as it is, filling server-set fields if missing."""
        rec: Record = dict.fromkeys(ESPOCRM_BOOKKEEPING_FIELDS)
        rec.update(dict.fromkeys(ESPOCRM_BUSINESS_FIELDS))
        rec["emailAddressData"] = []
        rec["phoneNumberData"] = []
        rec.update(copy.deepcopy(dict(record)))
        rec.setdefault("id", self._new_id())
        now = espo_datetime(self.clock())
        rec["createdAt"] = rec.get("createdAt") or now
        rec["modifiedAt"] = rec.get("modifiedAt") or now
        rec["versionNumber"] = rec.get("versionNumber") or 1
        rec["syncStatus"] = rec.get("syncStatus") or "pending_sync"
        rec["emailAddressData"] = _normalise_email_data(rec["emailAddressData"] or [])
        rec["phoneNumberData"] = _normalise_phone_data(rec["phoneNumberData"] or [])
        rec["emailAddress"] = _primary(rec["emailAddressData"], "emailAddress")
        rec["phoneNumber"] = _primary(rec["phoneNumberData"] or [], "phoneNumber")
        self.records[rec["id"]] = rec
        return copy.deepcopy(rec)

    def create_as_person(self, fields: Mapping[str, Any]) -> Record:
        """Create a record the way a person in the UI would (starts ``pending_sync``)."""
        if not isinstance(fields.get("name"), str) or not fields["name"].strip():
            raise BadRequest("name required", status=400, reason="validationFailure")
        rec = self.load({k: v for k, v in fields.items() if k != "syncStatus"})
        return rec

    def edit_as_person(self, entity_id: str, fields: Mapping[str, Any]) -> Record:
        """Change a record as a person would (not counted): the dirty rule applies."""
        return self._write(entity_id, fields, version_number=None)

    def record(self, entity_id: str) -> Record:
        """Current stored record (copy), without counting a call."""
        return copy.deepcopy(self.records[entity_id])

    def notes_for(self, entity_id: str) -> list[str]:
        """Texts of the stream notes posted on ``entity_id``."""
        return [n["post"] for n in self.notes if n["parentId"] == entity_id]

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
        """Yield matching records; one counted call per page of 200."""
        self._enter("iter_beteiligte")
        found = [r for r in self.records.values() if all(matches_where(r, w) for w in where)]
        if order_by:
            if order_by not in _ESPOCRM_ORDERABLE:
                raise BadRequest("unknown orderBy", status=400, reason="invalidOrderBy")
            # EspoCRM sorts NULLs first ascending (MySQL behaviour).
            found.sort(
                key=lambda r: (r.get(order_by) is not None, r.get(order_by) or ""),
                reverse=order == "desc",
            )
        if limit is not None:
            found = found[:limit]
        # One request per page of at most 200 records.
        self.calls["iter_beteiligte"] += max(0, (len(found) + 199) // 200 - 1)
        for rec in found:
            out = copy.deepcopy(rec)
            if select:
                out = {k: v for k, v in out.items() if k in select or k == "id"}
            yield out

    def get_beteiligte(self, entity_id: str) -> Record:
        """Return one record (copy)."""
        self._enter("get_beteiligte")
        if entity_id not in self.records:
            raise NotFound("not found", status=404, request="GET /api/v1/CBeteiligte/{id}")
        return copy.deepcopy(self.records[entity_id])

    def update_beteiligte(
        self, entity_id: str, data: Mapping[str, Any], *, version_number: int | None = None
    ) -> Record:
        """Partial update with optional optimistic concurrency check."""
        after = self._enter("update_beteiligte")
        result = self._write(entity_id, data, version_number=version_number)
        if after:
            raise after.exc
        return result

    def post_note(self, entity_id: str, text: str) -> Record:
        """Post a stream note on the record."""
        after = self._enter("post_note")
        if entity_id not in self.records:
            raise NotFound("not found", status=404, request="POST /api/v1/Note")
        note = {
            "id": self._new_id(),
            "type": "Post",
            "parentType": "CBeteiligte",
            "parentId": entity_id,
            "post": text,
            "createdAt": espo_datetime(self.clock()),
        }
        self.notes.append(note)
        if after:
            raise after.exc
        return copy.deepcopy(note)

    # -- internals -----------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{next(self._ids):017x}"

    def _write(
        self, entity_id: str, data: Mapping[str, Any], *, version_number: int | None
    ) -> Record:
        if entity_id not in self.records:
            raise NotFound("not found", status=404, request="PUT /api/v1/CBeteiligte/{id}")
        rec = self.records[entity_id]
        if version_number is not None and version_number != rec["versionNumber"]:
            raise Conflict(
                "version mismatch", status=409, reason="modified", request="PUT /CBeteiligte/{id}"
            )
        new = self._normalised(data)
        changed_business = any(
            k in ESPOCRM_BUSINESS_FIELDS and rec.get(k) != v for k, v in new.items()
        )
        rec.update(new)
        if "emailAddressData" in new:
            rec["emailAddress"] = _primary(new["emailAddressData"], "emailAddress")
        if "phoneNumberData" in new:
            rec["phoneNumber"] = _primary(new["phoneNumberData"], "phoneNumber")
        if changed_business and "syncStatus" not in data:
            rec["syncStatus"] = "dirty"
        # Like the sandbox: every write bumps versionNumber and modifiedAt.
        rec["versionNumber"] += 1
        rec["modifiedAt"] = espo_datetime(self.clock())
        return copy.deepcopy(rec)

    @staticmethod
    def _normalised(data: Mapping[str, Any]) -> Record:
        out: Record = {}
        for key, value in data.items():
            if key in ("id", "createdAt", "modifiedAt", "versionNumber"):
                continue  # server-set, ignored like EspoCRM does
            _espo_value_check(key, value)
            if key == "emailAddressData":
                out[key] = _normalise_email_data(value or [])
            elif key == "phoneNumberData":
                out[key] = _normalise_phone_data(value or [])
            else:
                out[key] = copy.deepcopy(value)
        return out


# --- Advoware ---------------------------------------------------------------------------------


def _check_party(data: Mapping[str, Any], *, creating: bool) -> None:
    for key, limit in ADVOWARE_LIMITS.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise BadRequest(f"invalid {key}", status=400, request="PUT /Beteiligte/{betNr}")
    if creating and not (isinstance(data.get("name"), str) and data["name"].strip()):
        raise BadRequest("name required", status=400, request="POST /Beteiligte")
    birth = data.get("geburtsdatum")
    if birth is not None:
        try:
            datetime.strptime(str(birth), "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            raise BadRequest("invalid geburtsdatum", status=400) from None


def _check_kommunikation(data: Mapping[str, Any], *, creating: bool) -> None:
    for key, limit in KOMMUNIKATION_LIMITS.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise BadRequest(f"invalid {key}", status=400, request="Kommunikationen")
    if creating:
        kommkz = data.get("kommKz")
        if not isinstance(kommkz, int) or isinstance(kommkz, bool) or not 1 <= kommkz <= 12:
            raise BadRequest("invalid kommKz", status=400, request="POST Kommunikationen")
    if "online" in data and not isinstance(data["online"], bool):
        raise BadRequest("invalid online", status=400, request="Kommunikationen")


def _row_id() -> str:
    return uuid.uuid4().hex[:16].upper()


class FakeAdvoware(_FakeBase):
    """In-memory Advoware ``Beteiligte`` store implementing ``AdvowareClient``."""

    def __init__(
        self,
        parties: Sequence[Mapping[str, Any]] = (),
        *,
        clock: Callable[[], datetime] | None = None,
        kommkz_zero_defect: bool = True,
        read_only_fields: Sequence[str] = (),
    ) -> None:
        super().__init__(clock)
        self.parties: dict[int, Record] = {}
        self.kommkz_zero_defect = kommkz_zero_defect
        #: Fields the API silently ignores on PUT (seed #13: "Advoware-Feld read-only machen").
        self.read_only_fields = set(read_only_fields)
        self._betnrs = itertools.count(100000)
        self._komm_ids = itertools.count(149000)
        for party in parties:
            self.load(party)

    # -- test helpers --------------------------------------------------------------------------

    def load(self, party: Mapping[str, Any]) -> Record:
        """Store a party as given, filling server-set fields (ids, rowIds, geaendertAm)."""
        rec: Record = dict.fromkeys(ADVOWARE_PARTY_FIELDS)
        rec.update(copy.deepcopy({k: v for k, v in party.items() if k != "kommunikation"}))
        rec["betNr"] = rec.get("betNr") or self._next_betnr()
        rec["rowId"] = rec.get("rowId") or _row_id()
        rec["geaendertAm"] = rec.get("geaendertAm") or advoware_datetime(self.clock())
        rec["kommunikation"] = [
            self._komm_record(rec["betNr"], k) for k in party.get("kommunikation", [])
        ]
        self.parties[rec["betNr"]] = rec
        return copy.deepcopy(rec)

    def edit_as_person(self, betnr: int, fields: Mapping[str, Any]) -> Record:
        """Change a party's own fields as a person would (new rowId, geaendertAm)."""
        self._update_party(betnr, fields, honour_read_only=False)
        return copy.deepcopy(self.parties[betnr])

    def edit_kommunikation_as_person(
        self, betnr: int, komm_id: int | None, fields: Mapping[str, Any]
    ) -> Record:
        """Change (``komm_id``) or add (``None``) a Kommunikation as a person would."""
        if komm_id is None:
            return self._create_komm(betnr, fields)
        return self._update_komm(betnr, komm_id, fields)

    def party(self, betnr: int) -> Record:
        """Stored party (copy, true kommKz), without counting a call."""
        return copy.deepcopy(self.parties[betnr])

    def delete_as_person(self, betnr: int) -> None:
        """Remove a party (as deleted in the Advoware UI)."""
        del self.parties[betnr]

    # -- AdvowareClient ------------------------------------------------------------------------

    def get_beteiligte(self, betnr: int) -> Record:
        """One party with its ``kommunikation`` (kommKz 0 while the defect is on)."""
        self._enter("get_beteiligte")
        return self._visible(self._party(betnr))

    def find_beteiligte(self, name: str) -> list[Record]:
        """Parties whose name equals ``name`` exactly."""
        self._enter("find_beteiligte")
        return [self._visible(p) for p in self.parties.values() if p.get("name") == name]

    def create_beteiligte(self, data: Mapping[str, Any]) -> Record:
        """Create a party; the answer carries the new ``betNr``."""
        after = self._enter("create_beteiligte")
        _check_party(data, creating=True)
        rec = self.load({k: v for k, v in data.items() if k in ADVOWARE_PARTY_FIELDS})
        if after:
            raise after.exc
        return self._visible(rec)

    def update_beteiligte(self, betnr: int, data: Mapping[str, Any]) -> Record:
        """Update the party's own fields (partial)."""
        after = self._enter("update_beteiligte")
        self._update_party(betnr, data, honour_read_only=True)
        if after:
            raise after.exc
        return self._visible(self.parties[betnr])

    def create_kommunikation(self, betnr: int, data: Mapping[str, Any]) -> Record:
        """Create a Kommunikation; the party's rowId does not change."""
        after = self._enter("create_kommunikation")
        rec = self._create_komm(betnr, data)
        if after:
            raise after.exc
        return self._visible_komm(rec)

    def update_kommunikation(self, betnr: int, komm_id: int, data: Mapping[str, Any]) -> Record:
        """Change tlf/bemerkung/online; kommKz is ignored (read-only)."""
        after = self._enter("update_kommunikation")
        rec = self._update_komm(betnr, komm_id, data)
        if after:
            raise after.exc
        return self._visible_komm(rec)

    def delete_kommunikation(self, betnr: int, komm_id: int) -> None:
        """Always forbidden, like the real API."""
        self._enter("delete_kommunikation")
        raise Forbidden("forbidden", status=403, request="DELETE Kommunikationen/{kommId}")

    # -- internals -----------------------------------------------------------------------------

    def _next_betnr(self) -> int:
        betnr = next(self._betnrs)
        while betnr in self.parties:
            betnr = next(self._betnrs)
        return betnr

    def _party(self, betnr: int) -> Record:
        if betnr not in self.parties:
            raise NotFound(
                "not found", status=404, request="GET /api/v1/advonet/Beteiligte/{betNr}"
            )
        return self.parties[betnr]

    def _visible(self, party: Record) -> Record:
        out = copy.deepcopy(party)
        out["kommunikation"] = [self._visible_komm(k) for k in party["kommunikation"]]
        return out

    def _visible_komm(self, komm: Record) -> Record:
        out = copy.deepcopy(komm)
        if self.kommkz_zero_defect:
            out["kommKz"] = 0
        return out

    def _update_party(self, betnr: int, data: Mapping[str, Any], *, honour_read_only: bool) -> None:
        party = self._party(betnr)
        _check_party(data, creating=False)
        new = {
            k: v
            for k, v in data.items()
            if k in ADVOWARE_PARTY_FIELDS and not (honour_read_only and k in self.read_only_fields)
        }
        # Like the sandbox (an SQL rowversion): every PUT gives a new rowId, even if identical.
        party.update(copy.deepcopy(new))
        party["rowId"] = _row_id()
        party["geaendertAm"] = advoware_datetime(self.clock())

    def _komm_record(self, betnr: int, data: Mapping[str, Any]) -> Record:
        komm_id = data.get("id") or next(self._komm_ids)
        return {
            "id": komm_id,
            "betNr": betnr,
            "rowId": data.get("rowId") or _row_id(),
            "kommKz": data.get("kommKz", 1),
            "kommArt": data.get("kommArt", 0),
            "tlf": data.get("tlf", ""),
            "bemerkung": data.get("bemerkung", ""),
            "online": bool(data.get("online", False)),
        }

    def _create_komm(self, betnr: int, data: Mapping[str, Any]) -> Record:
        party = self._party(betnr)
        _check_kommunikation(data, creating=True)
        rec = self._komm_record(betnr, {k: v for k, v in data.items() if k not in ("id", "rowId")})
        party["kommunikation"].append(rec)
        return rec

    def _update_komm(self, betnr: int, komm_id: int, data: Mapping[str, Any]) -> Record:
        party = self._party(betnr)
        _check_kommunikation(data, creating=False)
        for komm in party["kommunikation"]:
            if komm["id"] == komm_id:
                new = {k: v for k, v in data.items() if k in ("tlf", "bemerkung", "online")}
                komm.update(new)
                komm["rowId"] = _row_id()  # every change, like the sandbox
                return komm
        raise NotFound("not found", status=404, request="PUT Kommunikationen/{kommId}")


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
