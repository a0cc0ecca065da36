"""The EspoCRM stand-in: ``CBeteiligte`` and ``Note`` over ``/api/v1`` (SPEC §4).

Behaviour worth knowing (all pinned by ``tests/sandbox``):

* ``X-Api-Key`` auth on every ``/api/v1`` path (401 otherwise).
* Ids are 17 hex characters, datetimes UTC ``YYYY-MM-DD HH:MM:SS``, dates ``YYYY-MM-DD``.
* Every PUT bumps ``versionNumber`` (EspoCRM's VersionNumber hook runs on every save);
  ``modifiedAt`` moves only when some attribute really changed.
* Optimistic concurrency as EspoCRM's ``OptimisticProcessor``: a stale ``X-Version-Number`` is
  409 with ``X-Status-Reason: modified`` *only if* a written (non-read-only) attribute differs
  from the stored value; a stale write of identical values succeeds.
* The firm's formula (``docs/espocrm/formula/CBeteiligte.json``) runs on every save through
  :mod:`sandbox.formula`: it is the one mark-dirty rule (and the ``pending_sync`` start).
* List answers carry ``emailAddress``/``phoneNumber`` but never ``emailAddressData``/
  ``phoneNumberData`` (even if ``select`` asks); only ``GET /CBeteiligte/{id}`` (and POST)
  return the arrays. PUT answers carry no arrays either.
* List ``total`` is ``-1`` (more pages) or ``-2`` (no more) unless counting is switched on
  (``configure({"count_total": true})``); the request header ``X-No-Total: true`` always asks
  for -1/-2.
* ``emailAddressData``/``phoneNumberData`` replace the whole set; ``emailAddress``/
  ``phoneNumber`` always hold the primary entry's value.
* Unknown attributes in a body are ignored (as EspoCRM does); wrong JSON types, invalid
  values, enum values outside the options, ints below ``min`` and strings over the entityDefs'
  ``maxLength`` (default 255) are 400 ``validationFailure``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sandbox import limits
from sandbox.core import ApiServer, HttpError, Request, Response
from sandbox.formula import BEFORE_SAVE, values_equal
from sandbox.where import (
    KIND_DATE,
    KIND_DATETIME,
    KIND_INT,
    KIND_LIST,
    KIND_MULTI,
    KIND_STRING,
    bad_where,
    compile_where,
    decode_nested,
)

API = "/api/v1"

_KIND_OF_TYPE = {
    "varchar": KIND_STRING,
    "text": KIND_STRING,
    "enum": KIND_STRING,
    "int": KIND_INT,
    "date": KIND_DATE,
    "datetime": KIND_DATETIME,
}


def _custom_kinds() -> dict[str, str]:
    """Kinds of the custom fields the shipped entityDefs define."""
    kinds: dict[str, str] = {}
    for name, kind in limits.ESPOCRM_FIELD_TYPES.items():
        if kind not in _KIND_OF_TYPE:
            raise ValueError(f"entityDefs field {name}: type {kind!r} not supported")
        kinds[name] = _KIND_OF_TYPE[kind]
    return kinds


#: Every attribute of ``CBeteiligte`` and how it is typed (custom ones from the entityDefs).
BETEILIGTE_KINDS: dict[str, str] = {
    "id": KIND_STRING,
    "name": KIND_STRING,
    "vorname": KIND_STRING,
    "anrede": KIND_STRING,
    "titel": KIND_STRING,
    "rechtsform": KIND_STRING,
    "geburtsdatum": KIND_DATE,
    "handelsregisterNummer": KIND_STRING,
    "registergericht": KIND_STRING,
    "emailAddress": KIND_MULTI,
    "phoneNumber": KIND_MULTI,
    "emailAddressData": KIND_LIST,
    "phoneNumberData": KIND_LIST,
    **_custom_kinds(),
    "createdAt": KIND_DATETIME,
    "modifiedAt": KIND_DATETIME,
    "versionNumber": KIND_INT,
}

NOTE_KINDS: dict[str, str] = {
    "id": KIND_STRING,
    "type": KIND_STRING,
    "parentType": KIND_STRING,
    "parentId": KIND_STRING,
    "post": KIND_STRING,
    "createdById": KIND_STRING,
    "createdAt": KIND_DATETIME,
    "modifiedAt": KIND_DATETIME,
}

#: The business fields (SPEC §4); the formula file decides what marks a record dirty.
BUSINESS_FIELDS = (
    "name",
    "vorname",
    "anrede",
    "titel",
    "rechtsform",
    "geburtsdatum",
    "handelsregisterNummer",
    "registergericht",
    "emailAddressData",
    "phoneNumberData",
)

SERVER_SET_FIELDS = ("id", "createdAt", "modifiedAt", "versionNumber")
#: Attributes only ``GET /CBeteiligte/{id}`` (and POST) return: EspoCRM's email and phone
#: loaders are read loaders, not list loaders.
DETAIL_ONLY_FIELDS = ("emailAddressData", "phoneNumberData")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
API_USER_ID = "sandbox-api-user"


def system_clock() -> datetime:
    """The real time (aware, UTC)."""
    return datetime.now(UTC)


def now_utc(clock: Callable[[], datetime] = system_clock) -> str:
    """The current time as EspoCRM writes it."""
    return clock().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def without_detail_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as a list (or PUT) answer shows it: no ``...Data`` arrays."""
    return {key: value for key, value in record.items() if key not in DETAIL_ONLY_FIELDS}


def validation_failure(field: str, kind: str = "valid") -> HttpError:
    """EspoCRM's 400 for an invalid field value (names the field, never the value)."""
    body = {
        "messageTranslation": {
            "label": "validationFailure",
            "scope": None,
            "data": {"field": field, "type": kind},
        }
    }
    return HttpError(400, "validationFailure", body)


class EspoCrmServer(ApiServer):
    """EspoCRM stand-in; state is guarded by ``self.lock``."""

    name = "espocrm"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str,
        seed: int = 0,
        listen: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(host, port, seed=seed, listen=listen)
        self.api_key = api_key
        self.clock = clock
        #: Real counts in list ``total`` (off: -1/-2 like a big table with counting disabled).
        self.count_total = False
        self._ids = random.Random(seed)
        self.beteiligte: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self._add_routes()

    def _add_routes(self) -> None:
        self.add_route("GET", f"{API}/CBeteiligte", self._list_beteiligte)
        self.add_route("POST", f"{API}/CBeteiligte", self._create_beteiligte)
        self.add_route("GET", f"{API}/CBeteiligte/{{id}}", self._get_beteiligte)
        self.add_route("PUT", f"{API}/CBeteiligte/{{id}}", self._update_beteiligte)
        self.add_route("PATCH", f"{API}/CBeteiligte/{{id}}", self._update_beteiligte)
        self.add_route("DELETE", f"{API}/CBeteiligte/{{id}}", self._delete_beteiligte)
        self.add_route("GET", f"{API}/CBeteiligte/{{id}}/stream", self._stream)
        self.add_route("GET", f"{API}/Note", self._list_notes)
        self.add_route("POST", f"{API}/Note", self._create_note)
        self.add_route("GET", f"{API}/Note/{{id}}", self._get_note)
        self.add_route("GET", f"{API}/App/user", self._app_user)

    # -- auth and errors -------------------------------------------------------------------

    def check_auth(self, request: Request) -> None:
        """Every product path needs the right ``X-Api-Key``."""
        if request.headers.get("X-Api-Key") != self.api_key:
            raise HttpError(401, "unauthorized")

    def error_body(self, error: HttpError) -> Any:
        """EspoCRM answers errors with a small JSON body or none at all."""
        return error.body

    # -- state hooks -----------------------------------------------------------------------

    def configure(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Also ``count_total`` (bool, default false): real counts in list ``total``."""
        settings = super().configure(body)
        if "count_total" in body:
            if not isinstance(body["count_total"], bool):
                raise HttpError(400, "badConfig", {"error": "count_total must be bool"})
            self.count_total = body["count_total"]
        settings["count_total"] = self.count_total
        return settings

    def now(self) -> str:
        """The server's current time as EspoCRM writes it (the injected clock, else
        :func:`now_utc`, looked up at call time so tests may patch it)."""
        return now_utc() if self.clock is None else now_utc(self.clock)

    def reset_state(self) -> None:
        """Forget all records and notes."""
        self.beteiligte = {}
        self.notes = {}

    def load_scenario(self, scenario: Mapping[str, Any]) -> dict[str, int]:
        """Replace the data by ``scenario["espocrm"]`` (missing server-set fields filled in)."""
        part = scenario.get("espocrm") or {}
        if not isinstance(part, Mapping):
            raise HttpError(400, "badScenario", {"error": "espocrm part must be an object"})
        records = _list_of_objects(part.get("CBeteiligte"), "CBeteiligte")
        notes = _list_of_objects(part.get("Note"), "Note")
        self.reset_state()
        for raw in records:
            record = self._new_record(raw, trusted=True)
            self.beteiligte[record["id"]] = record
        for raw in notes:
            note = self._new_note(raw, trusted=True)
            self.notes[note["id"]] = note
        return {"CBeteiligte": len(self.beteiligte), "Note": len(self.notes)}

    def dump_state(self) -> dict[str, Any]:
        """``{"CBeteiligte": [...], "Note": [...]}`` in creation order."""
        return {
            "CBeteiligte": [dict(record) for record in self.beteiligte.values()],
            "Note": [dict(note) for note in self.notes.values()],
        }

    def admin_edit(self, body: dict[str, Any]) -> Any:
        """A person's edit through the EspoCRM UI: create, change or delete a record."""
        if "create" in body:
            if not isinstance(body["create"], dict):
                raise HttpError(400, "badEdit", {"error": "create must be an object"})
            return self.create(body["create"])
        record_id = body.get("id")
        if not isinstance(record_id, str):
            raise HttpError(400, "badEdit", {"error": "id missing"})
        if body.get("delete") is True:
            self._require(record_id)
            del self.beteiligte[record_id]
            return {"deleted": record_id}
        fields = body.get("fields")
        if not isinstance(fields, dict):
            raise HttpError(400, "badEdit", {"error": "fields must be an object"})
        return self.update(record_id, fields, version_number=None)

    # -- record operations (also used by the admin API) ------------------------------------

    def create(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """POST semantics: validate, fill defaults, store, return the full record."""
        record = self._new_record(data, trusted=False)
        self.beteiligte[record["id"]] = record
        return dict(record)

    def update(
        self, record_id: str, data: Mapping[str, Any], *, version_number: int | None
    ) -> dict[str, Any]:
        """PUT semantics as EspoCRM's Record\\Service::update; return the full record.

        * ``OptimisticProcessor``: a stale ``version_number`` is refused (409 ``modified``,
          body with the stored values of the differing fields) only if a written attribute
          differs from its stored value; otherwise the write goes on.
        * ``modifiedAt`` moves only if some attribute changed (``Database::
          processCreatedAndModifiedFieldsSave``), ``versionNumber`` grows on every save
          (``VersionNumber`` hook), the firm's formula runs (``beforeSaveCustomScript``).
        """
        current = self._require(record_id)
        changes = _validated(data, creating=False, trusted=False)
        if version_number is not None and version_number != current["versionNumber"]:
            differing = [
                key for key, value in changes.items() if not values_equal(key, value, current[key])
            ]
            if differing:
                body = {
                    "values": {key: current[key] for key in differing},
                    "versionNumber": current["versionNumber"],
                }
                raise HttpError(409, "modified", body)
        updated = {**current, **changes}
        _sync_primary_fields(updated, changes, current)
        changed = any(not values_equal(key, updated.get(key), current.get(key)) for key in updated)
        BEFORE_SAVE.run(updated, current)
        updated["versionNumber"] = current["versionNumber"] + 1
        if changed:
            updated["modifiedAt"] = self.now()
        self.beteiligte[record_id] = updated
        return dict(updated)

    def load_record(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Add one record as a scenario load does (server-set fields may be given)."""
        record = self._new_record(data, trusted=True)
        self.beteiligte[record["id"]] = record
        return record

    def _new_record(self, data: Mapping[str, Any], *, trusted: bool) -> dict[str, Any]:
        values = _validated(data, creating=True, trusted=trusted)
        record: dict[str, Any] = dict.fromkeys(BETEILIGTE_KINDS)
        record.update(values)
        _sync_primary_fields(record, values, {})
        record["emailAddressData"] = record["emailAddressData"] or []
        record["phoneNumberData"] = record["phoneNumberData"] or []
        stamp = self.now()
        record["id"] = values.get("id") or self._new_id()
        if record["id"] in self.beteiligte:
            raise HttpError(409, "duplicate", {"error": "id exists"})
        record["createdAt"] = values.get("createdAt") or stamp
        record["modifiedAt"] = values.get("modifiedAt") or record["createdAt"]
        record["versionNumber"] = values.get("versionNumber") or 1
        BEFORE_SAVE.run(record, None)
        _check_values(record)
        return record

    def _new_id(self) -> str:
        while True:
            candidate = f"{self._ids.getrandbits(68):017x}"
            if candidate not in self.beteiligte and candidate not in self.notes:
                return candidate

    def _require(self, record_id: str) -> dict[str, Any]:
        record = self.beteiligte.get(record_id)
        if record is None:
            raise HttpError(404, "notFound")
        return record

    # -- CBeteiligte routes ----------------------------------------------------------------

    def _list_beteiligte(self, request: Request) -> Response:
        with self.lock:
            records = list(self.beteiligte.values())
            answer = self._list_answer(request, records, BETEILIGTE_KINDS, "createdAt")
            answer["list"] = [without_detail_fields(record) for record in answer["list"]]
            return Response(200, answer)

    def _list_answer(
        self,
        request: Request,
        records: list[dict[str, Any]],
        kinds: Mapping[str, str],
        default_order_by: str,
    ) -> dict[str, Any]:
        """Filter, sort, page and project ``records`` as ``{"list", "total"}``; ``total`` is
        -1 (more pages) / -2 (no more) unless counting is on and not refused by
        ``X-No-Total``."""
        answer, matching = _list_answer(request, records, kinds, default_order_by)
        offset, _ = _paging(request)
        answer["total"] = self._total(request, offset, len(answer["list"]), matching)
        return answer

    def _total(self, request: Request, offset: int, shown: int, matching: int) -> int:
        """The count, or -1 (more pages exist) / -2 (no more) without counting."""
        no_total = (request.headers.get("X-No-Total") or "").strip().lower() == "true"
        if self.count_total and not no_total:
            return matching
        return -1 if offset + shown < matching else -2

    def _get_beteiligte(self, request: Request) -> Response:
        with self.lock:
            return Response(200, dict(self._require(request.params["id"])))

    def _create_beteiligte(self, request: Request) -> Response:
        data = request.json_object()
        with self.lock:
            return Response(200, self.create(data))

    def _update_beteiligte(self, request: Request) -> Response:
        data = request.json_object()
        version = _version_header(request)
        with self.lock:
            updated = self.update(request.params["id"], data, version_number=version)
            return Response(200, without_detail_fields(updated))

    def _delete_beteiligte(self, request: Request) -> Response:
        with self.lock:
            self._require(request.params["id"])
            del self.beteiligte[request.params["id"]]
        return Response(200, True)

    def _stream(self, request: Request) -> Response:
        with self.lock:
            self._require(request.params["id"])
            notes = [n for n in self.notes.values() if n["parentId"] == request.params["id"]]
            notes.sort(key=lambda note: (note["createdAt"], note["id"]), reverse=True)
            offset, max_size = _paging(request)
            page = notes[offset : offset + max_size]
            total = self._total(request, offset, len(page), len(notes))
            return Response(200, {"list": page, "total": total})

    def _app_user(self, request: Request) -> Response:
        return Response(200, {"user": {"id": API_USER_ID, "userName": "sandbox-api"}})

    # -- Note routes -----------------------------------------------------------------------

    def _create_note(self, request: Request) -> Response:
        data = request.json_object()
        with self.lock:
            note = self._new_note(data, trusted=False)
            self.notes[note["id"]] = note
            return Response(200, dict(note))

    def _get_note(self, request: Request) -> Response:
        with self.lock:
            note = self.notes.get(request.params["id"])
            if note is None:
                raise HttpError(404, "notFound")
            return Response(200, dict(note))

    def _list_notes(self, request: Request) -> Response:
        with self.lock:
            notes = list(self.notes.values())
            return Response(200, self._list_answer(request, notes, NOTE_KINDS, "createdAt"))

    def _new_note(self, data: Mapping[str, Any], *, trusted: bool) -> dict[str, Any]:
        note: dict[str, Any] = dict.fromkeys(NOTE_KINDS)
        for field in ("type", "parentType", "parentId", "post"):
            value = data.get(field)
            if value is not None and not isinstance(value, str):
                raise validation_failure(field)
            note[field] = value
        if not note["type"]:
            raise validation_failure("type", "required")
        if note["type"] == "Post" and not note["post"]:
            raise validation_failure("post", "required")
        parent_missing = note["parentId"] not in self.beteiligte
        if note["parentType"] == "CBeteiligte" and parent_missing and not trusted:
            raise HttpError(404, "notFound")
        stamp = self.now()
        note["id"] = data.get("id") if trusted and data.get("id") else self._new_id()
        note["createdById"] = API_USER_ID
        note["createdAt"] = (data.get("createdAt") if trusted else None) or stamp
        note["modifiedAt"] = note["createdAt"]
        return note


# -- validation ---------------------------------------------------------------------------


def _list_of_objects(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise HttpError(400, "badScenario", {"error": f"{name} must be a list of objects"})
    return value


def _validated(data: Mapping[str, Any], *, creating: bool, trusted: bool) -> dict[str, Any]:
    """Check and normalise the known attributes of a body; unknown ones are ignored."""
    values: dict[str, Any] = {}
    for field, kind in BETEILIGTE_KINDS.items():
        if field not in data:
            continue
        if field in SERVER_SET_FIELDS and not trusted:
            continue  # read-only: EspoCRM silently ignores them
        values[field] = _validated_value(field, kind, data[field])
    if creating and not values.get("name"):
        raise validation_failure("name", "required")
    if not creating and "name" in values and not values["name"]:
        raise validation_failure("name", "required")
    return values


def _validated_value(field: str, kind: str, value: Any) -> Any:
    if field == "emailAddressData":
        return _email_data(value)
    if field == "phoneNumberData":
        return _phone_data(value)
    if value is None:
        if field in limits.ESPOCRM_ENUM_OPTIONS:
            raise validation_failure(field)
        return None
    if kind == KIND_INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise validation_failure(field)
        minimum = limits.ESPOCRM_INT_MIN.get(field)
        if minimum is not None and value < minimum:
            raise validation_failure(field, "min")
        return value
    if not isinstance(value, str):
        raise validation_failure(field)
    if kind == KIND_DATE:
        return _date_text(field, value)
    if kind == KIND_DATETIME:
        return _datetime_text(field, value)
    options = limits.ESPOCRM_ENUM_OPTIONS.get(field)
    if options is not None and value not in options:
        raise validation_failure(field)
    if field == "emailAddress" and value and not _EMAIL.match(value):
        raise validation_failure(field)
    max_length = limits.espocrm_max_length(field)
    if max_length is not None and len(value) > max_length:
        raise validation_failure(field, "maxLength")
    return value


def _date_text(field: str, value: str) -> str | None:
    if value == "":
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").strftime("%Y-%m-%d")
    except ValueError as exc:
        raise validation_failure(field) from exc


def _datetime_text(field: str, value: str) -> str | None:
    if value == "":
        return None
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(value, pattern).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
    raise validation_failure(field)


def _flag(entry: Mapping[str, Any], key: str, field: str) -> bool:
    value = entry.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise validation_failure(field)
    return value


def _email_data(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise validation_failure("emailAddressData")
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("emailAddress"), str):
            raise validation_failure("emailAddress")
        address = entry["emailAddress"].strip()
        if not _EMAIL.match(address) or len(address) > limits.ESPOCRM_EMAIL_MAX_LENGTH:
            raise validation_failure("emailAddress")
        if address.lower() in seen:
            continue
        seen.add(address.lower())
        entries.append(
            {
                "emailAddress": address,
                "lower": address.lower(),
                "primary": _flag(entry, "primary", "emailAddress"),
                "optOut": _flag(entry, "optOut", "emailAddress"),
                "invalid": _flag(entry, "invalid", "emailAddress"),
            }
        )
    return _one_primary(entries)


def _phone_data(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise validation_failure("phoneNumberData")
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("phoneNumber"), str):
            raise validation_failure("phoneNumber")
        number = entry["phoneNumber"].strip()
        kind = entry.get("type") or "Office"
        if not number or len(number) > limits.ESPOCRM_PHONE_MAX_LENGTH:
            raise validation_failure("phoneNumber")
        if kind not in limits.ESPOCRM_PHONE_TYPES:
            raise validation_failure("phoneNumber")
        if number in seen:
            continue
        seen.add(number)
        entries.append(
            {
                "phoneNumber": number,
                "type": kind,
                "primary": _flag(entry, "primary", "phoneNumber"),
                "optOut": _flag(entry, "optOut", "phoneNumber"),
                "invalid": _flag(entry, "invalid", "phoneNumber"),
            }
        )
    return _one_primary(entries)


def _one_primary(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exactly one primary entry (the first marked one, else the first one)."""
    marked = next((i for i, entry in enumerate(entries) if entry["primary"]), 0)
    for index, entry in enumerate(entries):
        entry["primary"] = index == marked
    return entries


def _sync_primary_fields(
    record: dict[str, Any], changes: Mapping[str, Any], before: Mapping[str, Any]
) -> None:
    """Keep ``emailAddress``/``phoneNumber`` and the ``...Data`` lists consistent."""
    for single, data_key, inner in (
        ("emailAddress", "emailAddressData", "emailAddress"),
        ("phoneNumber", "phoneNumberData", "phoneNumber"),
    ):
        if data_key not in changes and single in changes:
            record[data_key] = _with_primary(before.get(data_key) or [], inner, changes[single])
        data = record.get(data_key) or []
        record[single] = next((e[inner] for e in data if e["primary"]), None)


def _with_primary(data: list[dict[str, Any]], inner: str, value: str | None) -> list[Any]:
    rest = [dict(entry) for entry in data if not entry["primary"] and entry[inner] != value]
    if not value:
        return _one_primary(rest)
    entry = {inner: value, "primary": True, "optOut": False, "invalid": False}
    if inner == "emailAddress":
        entry["lower"] = value.lower()
    else:
        entry["type"] = "Office"
    return _one_primary([entry, *rest])


def _check_values(record: Mapping[str, Any]) -> None:
    """What the formula set must still be a valid value (an enum option)."""
    for field, options in limits.ESPOCRM_ENUM_OPTIONS.items():
        if record.get(field) is not None and record[field] not in options:
            raise validation_failure(field)


def _version_header(request: Request) -> int | None:
    header = request.headers.get("X-Version-Number")
    if header is None or header == "":
        return None
    try:
        return int(header)
    except ValueError as exc:
        raise HttpError(400, "badVersionNumber") from exc


# -- listing ------------------------------------------------------------------------------


def _paging(request: Request) -> tuple[int, int]:
    offset = _int_param(request, "offset", 0)
    max_size = _int_param(request, "maxSize", limits.ESPOCRM_DEFAULT_MAX_SIZE)
    if max_size > limits.ESPOCRM_MAX_SIZE_LIMIT:
        raise HttpError(403, "maxSizeExceeded", {"message": "maxSize too big"})
    return offset, max_size


def _int_param(request: Request, name: str, default: int) -> int:
    text = request.query_value(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise HttpError(400, "badParameter", {"message": f"{name} must be an integer"}) from exc
    if value < 0:
        raise HttpError(400, "badParameter", {"message": f"{name} must not be negative"})
    return value


def _list_answer(
    request: Request,
    records: list[dict[str, Any]],
    kinds: Mapping[str, str],
    default_order_by: str,
) -> tuple[dict[str, Any], int]:
    """Filter, sort, page and project ``records`` as ``{"list", "total"}`` (a real count),
    and the number of matching records."""
    offset, max_size = _paging(request)
    pairs = request.query_pairs()
    predicate = compile_where(decode_nested(pairs, "where"), kinds)
    matching = [record for record in records if predicate(record)]
    _sort(matching, request, kinds, default_order_by)
    page = matching[offset : offset + max_size]
    fields = _select(request, kinds)
    listed = [
        {key: record.get(key) for key in fields} if fields else dict(record) for record in page
    ]
    return {"list": listed, "total": len(matching)}, len(matching)


def _sort(
    records: list[dict[str, Any]],
    request: Request,
    kinds: Mapping[str, str],
    default_order_by: str,
) -> None:
    order_by = request.query_value("orderBy") or default_order_by
    order = request.query_value("order") or ("desc" if order_by == default_order_by else "asc")
    if order_by not in kinds or kinds[order_by] in (KIND_LIST, KIND_MULTI):
        raise HttpError(400, "badOrderBy", {"message": "unknown orderBy attribute"})
    if order.lower() not in ("asc", "desc"):
        raise HttpError(400, "badOrder", {"message": "order must be asc or desc"})
    descending = order.lower() == "desc"
    # Ties are broken by id so paging is stable; NULLs sort first ascending, as in MySQL.
    records.sort(key=lambda record: record["id"], reverse=descending)
    records.sort(
        key=lambda record: (
            (record.get(order_by) is not None, record.get(order_by) or 0)
            if kinds[order_by] == KIND_INT
            else (record.get(order_by) is not None, record.get(order_by) or "")
        ),
        reverse=descending,
    )


def _select(request: Request, kinds: Mapping[str, str]) -> list[str] | None:
    text = request.query_value("select")
    if not text:
        return None
    wanted = [name.strip() for name in text.split(",") if name.strip()]
    return ["id", *[name for name in wanted if name in kinds and name != "id"]]


__all__ = ["BETEILIGTE_KINDS", "BUSINESS_FIELDS", "EspoCrmServer", "bad_where", "now_utc"]
