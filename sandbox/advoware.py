"""The Advoware stand-in: configurator, token endpoint and ``/api/v1/advonet`` (SPEC §5).

Behaviour worth knowing (all pinned by ``tests/sandbox``):

* ``POST /api/v1/Token`` checks AppID, Kanzlei, Database, User, Password, the
  HMAC-SHA512 signature and that ``RequestTimeStamp`` lies within ±5 minutes; tokens expire
  after ``token_lifetime`` seconds (or at once via ``/_admin/expire-tokens``).
* Everything under ``/api/v1/advonet`` needs ``Authorization: Bearer <token>`` (401 else).
* ``rowId`` is a new opaque string after every PUT of the party's own fields (like an SQL
  ``rowversion``: also for a value-identical PUT), never when only a Kommunikation changes;
  each Kommunikation has its own ``rowId`` that changes with each of its changes.
* ``geaendertAm`` is local time Europe/Berlin without offset, ``YYYY-MM-DDTHH:MM:SS``;
  ``geburtsdatum`` is ``YYYY-MM-DDT00:00:00`` or null.
* Kommunikation PUT ignores ``kommKz``; DELETE is 403. With ``kommkz_zero_defect`` on (the
  default, like the real API) every party representation reports ``kommKz`` 0, while the stored
  kind stays right (see ``/_admin/state``).
* Write answers carry nothing but the party's number: POST and PUT of a party and POST and
  PUT of a Kommunikation answer ``{"betNr": n}``; clients read the party back with GET.
* No search endpoint is confirmed: ``GET /api/v1/advonet/Beteiligte?name=`` is 405 (the path
  exists for POST) unless ``configure({"search": true})`` switches the optional capability on.
* Field limits: :mod:`sandbox.limits`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sandbox import limits
from sandbox.core import ApiServer, HttpError, Request, Response

ADVONET = "/api/v1/advonet"
BERLIN = ZoneInfo("Europe/Berlin")
PARTY_FIELDS = (*limits.ADVOWARE_PARTY_MAX_LENGTH, "geburtsdatum")
FIRST_BETNR = 100000
FIRST_KOMM_ID = 150000


def system_clock() -> datetime:
    """The real time (aware, UTC)."""
    return datetime.now(UTC)


def now_berlin(clock: Callable[[], datetime] = system_clock) -> str:
    """The current local time in Berlin as Advoware writes ``geaendertAm``."""
    return clock().astimezone(BERLIN).strftime("%Y-%m-%dT%H:%M:%S")


def bad_request(message: str) -> HttpError:
    """Advoware's 400 (ASP.NET style body; the message names fields, never values)."""
    return HttpError(400, "badRequest", {"Message": message})


class AdvowareServer(ApiServer):
    """Advoware stand-in; state is guarded by ``self.lock``."""

    name = "advoware"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        credentials: Any,
        token_lifetime: float = limits.ADVOWARE_DEFAULT_TOKEN_LIFETIME_SECONDS,
        seed: int = 0,
        listen: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(host, port, seed=seed, listen=listen)
        self.credentials = credentials
        self.token_lifetime = float(token_lifetime)
        self.clock = clock
        self.kommkz_zero_defect = True
        #: The unconfirmed search ``GET /Beteiligte?name=`` (off: 405 like a missing route).
        self.search = False
        self._rows = random.Random(seed + 1)
        self.tokens: dict[str, float] = {}
        self.parties: dict[int, dict[str, Any]] = {}
        self._next_betnr = FIRST_BETNR
        self._next_komm_id = FIRST_KOMM_ID
        self._komm_ids: set[int] = set()
        self._add_routes()

    def _add_routes(self) -> None:
        self.add_route("GET", "/AdvonetConfigurator/api/Url", self._configurator)
        self.add_route("POST", "/api/v1/Token", self._token)
        self.add_route("POST", f"{ADVONET}/Beteiligte", self._create_party)
        self.add_route("GET", f"{ADVONET}/Beteiligte/{{betNr}}", self._get_party)
        self.add_route("PUT", f"{ADVONET}/Beteiligte/{{betNr}}", self._update_party)
        komm = f"{ADVONET}/Beteiligte/{{betNr}}/Kommunikationen"
        self.add_route("GET", komm, self._list_komm)
        self.add_route("POST", komm, self._create_komm)
        self.add_route("PUT", f"{komm}/{{kommId}}", self._update_komm)
        self.add_route("DELETE", f"{komm}/{{kommId}}", self._delete_komm)
        self.add_admin_route("POST", "/_admin/expire-tokens", self._admin_expire)

    # -- auth ------------------------------------------------------------------------------

    def check_auth(self, request: Request) -> None:
        """A valid, unexpired Bearer token for everything under ``/api/v1/advonet``."""
        if not request.path.startswith(ADVONET):
            return
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        with self.lock:
            expiry = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expiry is None or expiry <= time.monotonic():
            raise HttpError(
                401,
                "unauthorized",
                {"Message": "Authorization has been denied for this request."},
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    def expire_tokens(self) -> None:
        """Every issued token expires now."""
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    def error_body(self, error: HttpError) -> Any:
        """ASP.NET style ``{"Message": ...}``."""
        if isinstance(error.body, dict) and "Message" in error.body:
            return error.body
        return {"Message": error.reason}

    def _token(self, request: Request) -> Response:
        body = request.json_object()
        if not self._token_request_valid(body):
            raise HttpError(401, "unauthorized", {"Message": "invalid token request"})
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime
        lifetime = int(self.token_lifetime)
        return Response(
            200, {"access_token": token, "token_type": "bearer", "expires_in": lifetime}
        )

    def _token_request_valid(self, body: Mapping[str, Any]) -> bool:
        creds = self.credentials
        expected = {
            "AppID": creds.app_id,
            "Kanzlei": creds.kanzlei,
            "Database": creds.database,
            "User": creds.user,
            "Password": creds.password,
        }
        if any(body.get(key) != value for key, value in expected.items()):
            return False
        nonce, stamp, signature = (
            body.get("Nonce"),
            body.get("RequestTimeStamp"),
            body.get("HMAC512Signature"),
        )
        product = body.get("Product")
        if not all(isinstance(v, str) for v in (nonce, stamp, signature)):
            return False
        if str(product) != str(creds.product) or not _timestamp_fresh(str(stamp)):
            return False
        wanted = token_signature(creds.api_key, product, creds.app_id, str(nonce), str(stamp))
        return hmac.compare_digest(wanted, str(signature))

    def _configurator(self, request: Request) -> Response:
        if request.query_value("Kanzlei") != self.credentials.kanzlei:
            raise HttpError(404, "notFound", {"Message": "unknown Kanzlei"})
        return Response(
            200, {"relayUrl": self.url, "connectorUrl": self.url, "securityGateway": self.url}
        )

    # -- state hooks -----------------------------------------------------------------------

    def reset_state(self) -> None:
        """Forget all parties and tokens."""
        self.parties = {}
        self.tokens = {}
        self._next_betnr = FIRST_BETNR
        self._next_komm_id = FIRST_KOMM_ID
        self._komm_ids = set()

    def load_scenario(self, scenario: Mapping[str, Any]) -> dict[str, int]:
        """Replace the parties by ``scenario["advoware"]["Beteiligte"]``."""
        part = scenario.get("advoware") or {}
        raw = part.get("Beteiligte") if isinstance(part, Mapping) else None
        raw = raw or []
        if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
            raise HttpError(400, "badScenario", {"error": "Beteiligte must be a list of objects"})
        tokens = self.tokens
        self.reset_state()
        self.tokens = tokens  # loading data does not log anybody out
        self._reserve_ids(raw)
        for data in raw:
            self._insert_party(data, trusted=True)
        komm_count = sum(len(p["kommunikation"]) for p in self.parties.values())
        return {"Beteiligte": len(self.parties), "Kommunikation": komm_count}

    def _reserve_ids(self, raw: list[dict[str, Any]]) -> None:
        """Start new numbers above every number the scenario uses."""
        betnrs = [p["betNr"] for p in raw if isinstance(p.get("betNr"), int)]
        komm_ids = [
            k["id"]
            for p in raw
            for k in p.get("kommunikation") or []
            if isinstance(k, dict) and isinstance(k.get("id"), int)
        ]
        self._next_betnr = max([FIRST_BETNR - 1, *betnrs]) + 1
        self._next_komm_id = max([FIRST_KOMM_ID - 1, *komm_ids]) + 1

    def now(self) -> str:
        """The server's current local time as Advoware writes ``geaendertAm`` (the injected
        clock, else :func:`now_berlin`, looked up at call time so tests may patch it)."""
        return now_berlin() if self.clock is None else now_berlin(self.clock)

    def set_search(self, enabled: bool) -> None:
        """Offer (or withdraw) the optional ``GET /Beteiligte?name=`` search route."""
        self.search = enabled
        template = f"{ADVONET}/Beteiligte"
        self._routes = [
            r for r in self._routes if not (r.method == "GET" and r.template == template)
        ]
        if enabled:
            self.add_route("GET", template, self._search)

    def dump_state(self) -> dict[str, Any]:
        """``{"Beteiligte": [...]}`` with the stored (true) ``kommKz``."""
        return {"Beteiligte": [_copy_party(p) for p in self.parties.values()]}

    def configure(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Also ``kommkz_zero_defect`` (bool), ``token_lifetime`` (seconds) and ``search``
        (bool, default false: no ``GET /Beteiligte?name=``)."""
        settings = super().configure(body)
        if "search" in body:
            if not isinstance(body["search"], bool):
                raise HttpError(400, "badConfig", {"error": "search must be bool"})
            self.set_search(body["search"])
        if "kommkz_zero_defect" in body:
            if not isinstance(body["kommkz_zero_defect"], bool):
                raise HttpError(400, "badConfig", {"error": "kommkz_zero_defect must be bool"})
            self.kommkz_zero_defect = body["kommkz_zero_defect"]
        if "token_lifetime" in body:
            value = body["token_lifetime"]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise HttpError(400, "badConfig", {"error": "token_lifetime must be positive"})
            self.token_lifetime = float(value)
        settings.update(
            kommkz_zero_defect=self.kommkz_zero_defect,
            token_lifetime=self.token_lifetime,
            search=self.search,
        )
        return settings

    def admin_edit(self, body: dict[str, Any]) -> Any:
        """A person's edit in Advoware's own UI (may change ``kommKz`` and delete entries)."""
        if "create" in body:
            if not isinstance(body["create"], dict):
                raise HttpError(400, "badEdit", {"error": "create must be an object"})
            return _copy_party(self._insert_party(body["create"], trusted=False))
        betnr = body.get("betNr")
        if isinstance(betnr, bool) or not isinstance(betnr, int):
            raise HttpError(400, "badEdit", {"error": "betNr missing"})
        party = self._require(betnr)
        if body.get("delete") is True:
            self._komm_ids.difference_update(k["id"] for k in party["kommunikation"])
            del self.parties[betnr]
            return {"deleted": betnr}
        if "delete_kommunikation" in body:
            komm = self._require_komm(party, body["delete_kommunikation"])
            party["kommunikation"].remove(komm)
            self._komm_ids.discard(komm["id"])
            return _copy_party(party)
        if isinstance(body.get("kommunikation"), dict):
            return self._edit_komm(party, body["kommunikation"])
        if isinstance(body.get("fields"), dict):
            return _copy_party(self._update_party_fields(party, body["fields"]))
        raise HttpError(400, "badEdit", {"error": "fields or kommunikation expected"})

    def _edit_komm(self, party: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        if "id" not in data:
            return dict(self._insert_komm(party, data, trusted=False))
        komm = self._require_komm(party, data["id"])
        changes = _komm_changes(data, creating=False)
        if "kommKz" in data:
            changes["kommKz"] = _kommkz(data["kommKz"])
        return dict(self._apply_komm_changes(komm, changes))

    # -- parties ---------------------------------------------------------------------------

    def _require(self, betnr: int) -> dict[str, Any]:
        party = self.parties.get(betnr)
        if party is None:
            raise HttpError(404, "notFound", {"Message": "Beteiligter not found"})
        return party

    def _betnr_param(self, request: Request) -> int:
        try:
            return int(request.params["betNr"])
        except ValueError as exc:
            raise bad_request("betNr must be an integer") from exc

    def _party_out(self, party: Mapping[str, Any]) -> dict[str, Any]:
        copy = _copy_party(party)
        if self.kommkz_zero_defect:
            for komm in copy["kommunikation"]:
                komm["kommKz"] = 0
        return copy

    def _get_party(self, request: Request) -> Response:
        betnr = self._betnr_param(request)
        with self.lock:
            return Response(200, self._party_out(self._require(betnr)))

    def _search(self, request: Request) -> Response:
        name = request.query_value("name")
        with self.lock:
            found = [
                self._party_out(p)
                for p in self.parties.values()
                if name is None or p["name"] == name
            ]
        return Response(200, found)

    def _create_party(self, request: Request) -> Response:
        data = request.json_object()
        with self.lock:
            party = self._insert_party(data, trusted=False)
            return Response(200, {"betNr": party["betNr"]})

    def _update_party(self, request: Request) -> Response:
        betnr = self._betnr_param(request)
        data = request.json_object()
        with self.lock:
            party = self._update_party_fields(self._require(betnr), data)
            return Response(200, {"betNr": party["betNr"]})

    def load_party(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Add one party as a scenario load does (``betNr``, ``rowId``, ids may be given)."""
        return self._insert_party(data, trusted=True)

    def _insert_party(self, data: Mapping[str, Any], *, trusted: bool) -> dict[str, Any]:
        fields = _party_changes(data, creating=True)
        betnr = data.get("betNr") if trusted else None
        if betnr is None:
            betnr = self._next_betnr
        if isinstance(betnr, bool) or not isinstance(betnr, int) or betnr in self.parties:
            raise HttpError(400, "badScenario", {"error": "betNr invalid or duplicate"})
        self._next_betnr = max(self._next_betnr, betnr + 1)
        party: dict[str, Any] = {"betNr": betnr, "rowId": self._row_id()}
        party["geaendertAm"] = self.now()
        party.update(dict.fromkeys(PARTY_FIELDS))
        party.update(fields)
        party["kommunikation"] = []
        if trusted:
            party["rowId"] = _optional_text(data, "rowId") or party["rowId"]
            party["geaendertAm"] = _optional_text(data, "geaendertAm") or party["geaendertAm"]
        self.parties[betnr] = party
        for komm in data.get("kommunikation") or []:
            if not isinstance(komm, dict):
                raise bad_request("kommunikation must be a list of objects")
            self._insert_komm(party, komm, trusted=True, touch=False)
        return party

    def _update_party_fields(
        self, party: dict[str, Any], data: Mapping[str, Any]
    ) -> dict[str, Any]:
        party.update(_party_changes(data, creating=False))
        party["rowId"] = self._row_id()
        party["geaendertAm"] = self.now()
        return party

    def _row_id(self) -> str:
        return base64.b64encode(self._rows.getrandbits(64).to_bytes(8, "big")).decode("ascii")

    # -- Kommunikationen -------------------------------------------------------------------

    def _require_komm(self, party: dict[str, Any], komm_id: Any) -> dict[str, Any]:
        for komm in party["kommunikation"]:
            if komm["id"] == komm_id:
                return komm
        raise HttpError(404, "notFound", {"Message": "Kommunikation not found"})

    def _komm_id_param(self, request: Request) -> int:
        try:
            return int(request.params["kommId"])
        except ValueError as exc:
            raise bad_request("id must be an integer") from exc

    def _list_komm(self, request: Request) -> Response:
        betnr = self._betnr_param(request)
        with self.lock:
            return Response(200, self._party_out(self._require(betnr))["kommunikation"])

    def _create_komm(self, request: Request) -> Response:
        betnr = self._betnr_param(request)
        data = request.json_object()
        with self.lock:
            party = self._require(betnr)
            self._insert_komm(party, data, trusted=False)
            return Response(200, {"betNr": party["betNr"]})

    def _update_komm(self, request: Request) -> Response:
        betnr = self._betnr_param(request)
        komm_id = self._komm_id_param(request)
        data = request.json_object()
        with self.lock:
            komm = self._require_komm(self._require(betnr), komm_id)
            changes = _komm_changes(data, creating=False)  # kommKz: read-only, ignored
            self._apply_komm_changes(komm, changes)
            return Response(200, {"betNr": betnr})

    def _delete_komm(self, request: Request) -> Response:
        betnr = self._betnr_param(request)
        komm_id = self._komm_id_param(request)
        with self.lock:
            self._require_komm(self._require(betnr), komm_id)
        raise HttpError(403, "forbidden", {"Message": "Deleting Kommunikationen is not allowed"})

    def _insert_komm(
        self,
        party: dict[str, Any],
        data: Mapping[str, Any],
        *,
        trusted: bool,
        touch: bool = True,
    ) -> dict[str, Any]:
        values = _komm_changes(data, creating=True)
        komm_id = data.get("id") if trusted else None
        if komm_id is None:
            komm_id = self._next_komm_id
        if isinstance(komm_id, bool) or not isinstance(komm_id, int) or self._komm_exists(komm_id):
            raise HttpError(400, "badScenario", {"error": "Kommunikation id invalid or duplicate"})
        self._next_komm_id = max(self._next_komm_id, komm_id + 1)
        komm = {"id": komm_id, "betNr": party["betNr"], "rowId": self._row_id(), **values}
        if trusted:
            komm["rowId"] = _optional_text(data, "rowId") or komm["rowId"]
        party["kommunikation"].append(komm)
        self._komm_ids.add(komm_id)
        return komm

    def _komm_exists(self, komm_id: int) -> bool:
        return komm_id in self._komm_ids

    def _apply_komm_changes(
        self, komm: dict[str, Any], changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        komm.update(changes)
        komm["rowId"] = self._row_id()
        return komm

    def _admin_expire(self, request: Request) -> Response:
        self.expire_tokens()
        return Response(200, {"expired": len(self.tokens)})


# -- validation and helpers ---------------------------------------------------------------


def token_signature(api_key: str, product: Any, app_id: str, nonce: str, stamp: str) -> str:
    """base64(HMAC-SHA512(base64-decode(api_key), "{Product}:{AppID}:{Nonce}:{Stamp}"))."""
    message = f"{product}:{app_id}:{nonce}:{stamp}".encode()
    digest = hmac.new(base64.b64decode(api_key), message, hashlib.sha512).digest()
    return base64.b64encode(digest).decode("ascii")


def _timestamp_fresh(stamp: str) -> bool:
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    skew = timedelta(seconds=limits.ADVOWARE_TOKEN_CLOCK_SKEW_SECONDS)
    return abs(datetime.now(UTC) - moment) <= skew


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _checked_texts(data: Mapping[str, Any], max_lengths: Mapping[str, int]) -> dict[str, Any]:
    """The text fields of ``max_lengths`` present in ``data``; 400 for a non-string or an
    over-long value."""
    texts: dict[str, Any] = {}
    for field, max_length in max_lengths.items():
        if field not in data:
            continue
        value = data[field]
        if value is not None and not isinstance(value, str):
            raise bad_request(f"{field} must be a string")
        if value is not None and len(value) > max_length:
            raise bad_request(f"{field} is longer than {max_length} characters")
        texts[field] = value
    return texts


def _party_changes(data: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validated party fields of a body (unknown keys, ``betNr``, ``rowId`` ignored)."""
    changes = _checked_texts(data, limits.ADVOWARE_PARTY_MAX_LENGTH)
    if "geburtsdatum" in data:
        changes["geburtsdatum"] = _birth_date(data["geburtsdatum"])
    if (creating or "name" in changes) and not (changes.get("name") or "").strip():
        raise bad_request("name is required")
    return changes


def _birth_date(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad_request("geburtsdatum must be a string")
    try:
        day = datetime.strptime(value[:10], "%Y-%m-%d")
        if len(value) > 10:
            datetime.strptime(value[10:], "T%H:%M:%S")
    except ValueError as exc:
        raise bad_request("geburtsdatum is not a date") from exc
    return day.strftime("%Y-%m-%dT00:00:00")


def _kommkz(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request("kommKz must be an integer")
    if value not in limits.ADVOWARE_KOMMKZ_RANGE:
        raise bad_request("kommKz out of range")
    return value


def _komm_changes(data: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validated ``tlf``/``bemerkung``/``online`` (and ``kommKz``/``kommArt`` on create)."""
    changes = {
        field: value or ""
        for field, value in _checked_texts(data, limits.ADVOWARE_KOMM_MAX_LENGTH).items()
    }
    if "online" in data:
        if not isinstance(data["online"], bool):
            raise bad_request("online must be a boolean")
        changes["online"] = data["online"]
    if creating:
        kind = _kommkz(data.get("kommKz"))
        art = data.get("kommArt", 0)
        if isinstance(art, bool) or not isinstance(art, int):
            raise bad_request("kommArt must be an integer")
        defaults = {"tlf": "", "bemerkung": "", "online": False}
        changes = {"kommKz": kind, "kommArt": art, **defaults, **changes}
    return changes


def _copy_party(party: Mapping[str, Any]) -> dict[str, Any]:
    copy = dict(party)
    copy["kommunikation"] = [dict(komm) for komm in party["kommunikation"]]
    return copy
