"""Airflow hook for the Advoware REST API (Beteiligte and their Kommunikationen).

Implements :class:`include.beteiligte_sync.clients.AdvowareClient` over HTTP: optional base-URL
discovery, the HMAC-SHA512 token scheme of SPEC §5 with a shared token cache, one renewal on
401, and create requests that are never duplicated by a retry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import requests

from hooks.base import JsonApiHook, base_url_from_connection
from include.beteiligte_sync.errors import ApiError, AuthFailed, BadResponse, ServerError

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from include.beteiligte_sync.clients import Record

TOKEN_PATH = "/api/v1/Token"
CONFIGURATOR_PATH = "/AdvonetConfigurator/api/Url"
BETEILIGTE_PATH = "/api/v1/advonet/Beteiligte"
PARTY_PATH = "/api/v1/advonet/Beteiligte/{betNr}"
KOMMUNIKATIONEN_PATH = "/api/v1/advonet/Beteiligte/{betNr}/Kommunikationen"
KOMMUNIKATION_PATH = "/api/v1/advonet/Beteiligte/{betNr}/Kommunikationen/{kommId}"
#: A token is renewed this long before it expires (at most), so no call races its expiry.
TOKEN_RENEW_MARGIN_SECONDS = 60.0
#: Parties whose Kommunikation ids this hook remembers (to recognise a lost create).
_KNOWN_IDS_LIMIT = 5000
#: Answers of ``GET .../Beteiligte?name=`` that mean "this server has no party search".
SEARCH_ABSENT_STATUSES = frozenset({404, 405})


def hmac_signature(api_key_b64: str, product: int, app_id: str, nonce: str, timestamp: str) -> str:
    """The ``HMAC512Signature`` of a token request (SPEC §5).

    ``base64(HMAC-SHA512(key=base64decode(api_key), msg="{product}:{app_id}:{nonce}:{timestamp}"))``

    :param api_key_b64: the connection's ``api_key`` (base64 text).
    :raises ValueError: if ``api_key_b64`` is not valid base64 (the key itself is not quoted).
    """
    try:
        key = base64.b64decode(api_key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("api_key is not valid base64") from None
    message = f"{product}:{app_id}:{nonce}:{timestamp}".encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha512).digest()).decode("ascii")


def token_timestamp(now: datetime | None = None) -> str:
    """``RequestTimeStamp`` of a token request: ISO 8601 UTC with ``Z``, whole seconds."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _same_kommunikation(entry: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
    """True if ``entry`` (as GET shows it) carries the values a create request sent.

    ``kommKz`` only counts when GET reports it: the real API may show 0 there (known defect).
    """
    if (entry.get("tlf") or "") != (data.get("tlf") or ""):
        return False
    if (entry.get("bemerkung") or "") != (data.get("bemerkung") or ""):
        return False
    shown = entry.get("kommKz")
    return not shown or "kommKz" not in data or shown == data["kommKz"]


def _betnr_answer(answer: Any, request: str) -> Record:
    """``{"betNr": n}`` from the answer of a write (POST/PUT of a party or a Kommunikation).

    Advoware's write answers carry only the ``betNr``; nothing else is read from them, so a
    server that sends more (or a sandbox that echoes the record) cannot make the hook depend on
    it. ``BadResponse`` if the answer names no integer ``betNr``.
    """
    betnr = answer.get("betNr") if isinstance(answer, Mapping) else None
    if isinstance(betnr, str) and betnr.isdigit():
        betnr = int(betnr)
    if isinstance(betnr, bool) or not isinstance(betnr, int):
        raise BadResponse("Advoware write answer names no betNr", request=request)
    return {"betNr": betnr}


class AdvowareHook(JsonApiHook):
    """Talk to Advoware's REST API with a Bearer token from its security gateway.

    Connection (type ``advoware``): ``host`` is the API base URL, ``login`` the employee short
    name, ``password`` the password; ``extra``: ``app_id``, ``api_key`` (base64), ``kanzlei``,
    ``database``, ``role`` (2), ``product`` (64), ``security_gateway`` (token base URL, default
    the host), optional ``configurator_url`` (discover the base URL), plus the HTTP settings
    of :class:`hooks.base.HttpSettings`.

    :param advoware_conn_id: the Airflow connection id.
    :param connection: an explicit connection instead of looking the id up.
    """

    conn_name_attr = "advoware_conn_id"
    default_conn_name = "advoware_default"
    conn_type = "advoware"
    hook_name = "Advoware"
    api_label: ClassVar[str] = "Advoware"

    def __init__(
        self, advoware_conn_id: str = default_conn_name, *, connection: Connection | None = None
    ) -> None:
        super().__init__(advoware_conn_id, connection=connection)
        self.advoware_conn_id = advoware_conn_id
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._known_komm_ids: OrderedDict[int, frozenset[Any]] = OrderedDict()
        self._search_absent = False

    @classmethod
    def _secret_extra_keys(cls) -> frozenset[str]:
        """``api_key`` is the HMAC key; the password is masked as the connection's password."""
        return frozenset({"api_key", "password"})

    # -- endpoints -----------------------------------------------------------------------------

    @cached_property
    def endpoints(self) -> tuple[str, str]:
        """``(api_base_url, security_gateway_url)``, discovered once if ``configurator_url`` is set.

        Discovery uses ``connectorUrl`` when the configurator names one, else ``relayUrl``.
        """
        extra = self.extra
        gateway = (extra.get("security_gateway") or "").rstrip("/")
        configurator = (extra.get("configurator_url") or "").rstrip("/")
        if not configurator:
            api = base_url_from_connection(self.connection)
            return api, gateway or api
        answer = self._call(
            "GET",
            CONFIGURATOR_PATH,
            base_url=configurator,
            params={"Kanzlei": extra.get("kanzlei", "")},
            authorized=False,
        )
        if not isinstance(answer, Mapping):
            raise ServerError("Advoware configurator: unexpected answer", request="GET discovery")
        api = (answer.get("connectorUrl") or answer.get("relayUrl") or "").rstrip("/")
        if not api:
            raise ServerError("Advoware configurator named no API URL", request="GET discovery")
        found_gateway = (answer.get("securityGateway") or "").rstrip("/")
        self.log.info(
            "Advoware base URL discovered (connector: %s)", bool(answer.get("connectorUrl"))
        )
        return api, gateway or found_gateway or api

    @property
    def base_url(self) -> str:
        """The Advoware API base URL (connector or relay)."""
        return self.endpoints[0]

    # -- token ---------------------------------------------------------------------------------

    def _token_request_body(self) -> dict[str, Any]:
        """A fresh token request (new nonce and timestamp, so a repeat is never a replay)."""
        conn = self.connection
        extra = self.extra
        product = int(extra.get("product", 64))
        app_id = str(extra.get("app_id", ""))
        nonce = str(uuid.uuid4())
        timestamp = token_timestamp()
        try:
            signature = hmac_signature(
                str(extra.get("api_key", "")), product, app_id, nonce, timestamp
            )
        except ValueError:
            raise AuthFailed(
                f"api_key of connection {self.conn_id!r} is not valid base64",
                request="POST /api/v1/Token",
            ) from None
        self._register_secret(signature)
        return {
            "AppID": app_id,
            "Kanzlei": extra.get("kanzlei", ""),
            "Database": extra.get("database", ""),
            "User": conn.login or "",
            "Role": int(extra.get("role", 2)),
            "Product": product,
            "Password": conn.password or "",
            "Nonce": nonce,
            "HMAC512Signature": signature,
            "RequestTimeStamp": timestamp,
        }

    def _fetch_token(self) -> tuple[str, float]:
        """Ask the security gateway for a token; return it and its lifetime in seconds."""
        answer = self._call(
            "POST",
            TOKEN_PATH,
            base_url=self.endpoints[1],
            json_body=self._token_request_body,
            authorized=False,
            idempotent=True,  # a second token does no harm
        )
        token = answer.get("access_token") if isinstance(answer, Mapping) else None
        if not token:
            raise ServerError(
                "Advoware security gateway sent no access_token", request="POST /api/v1/Token"
            )
        self._register_secret(token)
        expires_in = float(answer.get("expires_in") or 3300)
        self.log.info("Advoware token issued (valid %d s)", int(expires_in))
        return str(token), expires_in

    def _current_token(self) -> str:
        """The cached token, fetched or renewed when missing or about to expire."""
        with self._token_lock:  # one fetch even if several threads need a token at once
            if self._token is None or time.monotonic() >= self._token_renew_at:
                token, expires_in = self._fetch_token()
                margin = min(TOKEN_RENEW_MARGIN_SECONDS, expires_in * 0.1)
                self._token, self._token_renew_at = token, time.monotonic() + expires_in - margin
            return self._token

    def _drop_token(self, token: str) -> None:
        """Forget ``token`` unless another thread already replaced it."""
        with self._token_lock:
            if self._token == token:
                self._token = None

    def _auth_headers(self) -> dict[str, str]:
        """The Bearer header with the current token."""
        return {"Authorization": f"Bearer {self._current_token()}"}

    def _send_authorized(
        self, method: str, url: str, request: str, **kwargs: Any
    ) -> requests.Response:
        """Send with the Bearer token; on 401 fetch a new token once and repeat the call."""
        headers = dict(kwargs.pop("headers", {}))
        token = self._current_token()
        response = self._send(
            method, url, request, headers={**headers, "Authorization": f"Bearer {token}"}, **kwargs
        )
        if response.status_code != 401:
            return response
        self.log.info("Advoware refused the token for %s (401); renewing it once", request)
        self._drop_token(token)
        token = self._current_token()
        return self._send(
            method, url, request, headers={**headers, "Authorization": f"Bearer {token}"}, **kwargs
        )

    def _auth_failed_message(self, request: str) -> str:
        """What to check when Advoware answers 401."""
        if request.endswith(TOKEN_PATH):
            return (
                f"Advoware security gateway refused the token request of connection "
                f"{self.conn_id!r} (401): check login, password, and extra app_id, api_key, "
                "kanzlei, database, role, product (and the machine clock: the request is timed)"
            )
        return f"Advoware refused a freshly issued token (401) for connection {self.conn_id!r}"

    # -- Beteiligte ----------------------------------------------------------------------------

    def _remember_komm_ids(self, party: Mapping[str, Any]) -> None:
        """Remember which Kommunikation ids a party had (to recognise our own lost creates)."""
        betnr = party.get("betNr")
        if betnr is None:
            return
        ids = frozenset(k.get("id") for k in party.get("kommunikation") or [])
        self._known_komm_ids[int(betnr)] = ids
        self._known_komm_ids.move_to_end(int(betnr))
        while len(self._known_komm_ids) > _KNOWN_IDS_LIMIT:
            self._known_komm_ids.popitem(last=False)

    def get_beteiligte(self, betnr: int) -> Record:
        """Return one party including its ``kommunikation`` list; ``NotFound`` if unknown."""
        answer = self._call("GET", PARTY_PATH, ids={"betNr": betnr})
        party = self._object_answer(answer, f"GET {PARTY_PATH}")
        self._remember_komm_ids(party)
        return party

    def find_beteiligte(self, name: str) -> list[Record] | None:
        """Return the parties whose ``name`` equals ``name``, or ``None`` if this Advoware has
        no party search.

        The search (``GET .../Beteiligte?name=``) is an optional capability: no real server is
        confirmed to have it. A 404 or 405 answer means it is absent; that is remembered for
        the life of the hook, so later calls return ``None`` without a request.
        """
        if self._search_absent:
            return None
        request = f"GET {BETEILIGTE_PATH}"
        try:
            answer = self._call("GET", BETEILIGTE_PATH, params={"name": name})
        except ApiError as exc:
            if exc.status not in SEARCH_ABSENT_STATUSES:
                raise
            self._search_absent = True
            self.log.info(
                "Advoware has no party search (%s answered %s); not asking again",
                request,
                exc.status,
            )
            return None
        parties = answer.get("list", []) if isinstance(answer, Mapping) else answer or []
        if not isinstance(parties, list):
            raise BadResponse(
                "Advoware answered the party search with something that is not a list",
                request=request,
            )
        parties = [self._object_answer(p, request) for p in parties]
        for party in parties:
            self._remember_komm_ids(party)
        return parties

    def create_beteiligte(self, data: Mapping[str, Any]) -> Record:
        """Create a party and return Advoware's answer, ``{"betNr": n}``: it carries only the
        new ``betNr`` (read the party with :meth:`get_beteiligte` for ``rowId`` and fields).

        After a lost answer, and only if the server has a party search, the parties with the
        same ``name`` are compared with those that existed before the request: a new one with
        our values is our party, not created twice. Without a search a lost answer is raised,
        never repeated blindly (a duplicate party is worse than an error the next run retries).
        """
        body = dict(data)
        request = f"POST {BETEILIGTE_PATH}"
        answer = self._call(
            "POST", BETEILIGTE_PATH, json_body=body, recover=self._party_recovery(body)
        )
        created = _betnr_answer(answer, request)
        if "kommunikation" not in body:  # a new party has none: no read needed before adding
            self._remember_komm_ids({**created, "kommunikation": []})
        return created

    def _party_recovery(self, body: Mapping[str, Any]) -> Callable[[], Record | None] | None:
        """A check whether a lost create of ``body`` took effect (``None``: no way to tell)."""
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return None  # Advoware refuses a party without name anyway
        found = self.find_beteiligte(name)
        if found is None:
            return None  # no search: a lost answer cannot be checked, so it is not repeated
        before = {p.get("betNr") for p in found}

        def recover() -> Record | None:
            now = self.find_beteiligte(name)
            if now is None:
                raise ServerError(
                    "Advoware party search vanished; cannot tell whether a lost create landed",
                    request=f"POST {BETEILIGTE_PATH}",
                )
            new = [
                p
                for p in now
                if p.get("betNr") not in before
                and all(p.get(k) == body[k] for k in ("vorname", "rechtsform") if k in body)
            ]
            return max(new, key=lambda p: int(p["betNr"])) if new else None

        return recover

    def update_beteiligte(self, betnr: int, data: Mapping[str, Any]) -> Record:
        """Update a party's own fields; return Advoware's answer ``{"betNr": n}`` (it carries
        nothing else: read the party for its new ``rowId``)."""
        answer = self._call("PUT", PARTY_PATH, ids={"betNr": betnr}, json_body=dict(data))
        return _betnr_answer(answer, f"PUT {PARTY_PATH}")

    # -- Kommunikation -------------------------------------------------------------------------

    def create_kommunikation(self, betnr: int, data: Mapping[str, Any]) -> Record:
        """Create a Kommunikation (``tlf``, ``bemerkung``, ``kommKz``, ``online``) and return it.

        Advoware answers only ``{"betNr": n}``, so the new entry (with its ``id``) is found by
        re-reading the party: the entry with our values that was not there before. After a lost
        answer the same look tells whether the create landed; it is not repeated if it did.
        """
        body = dict(data)
        if betnr not in self._known_komm_ids:
            self.get_beteiligte(betnr)  # one read so a lost answer can be told apart
        before = self._known_komm_ids.get(betnr, frozenset())

        def new_entry() -> Record | None:
            party = self.get_beteiligte(betnr)
            fresh = [
                entry
                for entry in party.get("kommunikation") or []
                if entry.get("id") not in before and _same_kommunikation(entry, body)
            ]
            return dict(fresh[-1]) if fresh else None

        recovered: list[Record] = []

        def recover() -> Record | None:
            entry = new_entry()
            if entry is not None:
                recovered.append(entry)
            return entry

        request = f"POST {KOMMUNIKATIONEN_PATH}"
        answer = self._call(
            "POST", KOMMUNIKATIONEN_PATH, ids={"betNr": betnr}, json_body=body, recover=recover
        )
        if recovered:  # a lost answer whose create had landed: the entry was found already
            entry = recovered[0]
        else:
            _betnr_answer(answer, request)
            found = new_entry()
            if found is None:
                raise BadResponse(
                    "Advoware accepted the Kommunikation but the party does not show it",
                    request=request,
                )
            entry = found
        known = self._known_komm_ids.get(betnr, before)
        self._known_komm_ids[betnr] = known | {entry.get("id")}
        return entry

    def update_kommunikation(self, betnr: int, komm_id: int, data: Mapping[str, Any]) -> Record:
        """Change ``tlf``, ``bemerkung``, ``online`` of a Kommunikation (``kommKz`` read-only);
        return Advoware's answer ``{"betNr": n}`` (it carries nothing else)."""
        answer = self._call(
            "PUT", KOMMUNIKATION_PATH, ids={"betNr": betnr, "kommId": komm_id}, json_body=dict(data)
        )
        return _betnr_answer(answer, f"PUT {KOMMUNIKATION_PATH}")

    def check_connection(self) -> None:
        """Raise ``AuthFailed``/``ApiError`` unless a token can be obtained."""
        self._current_token()

    def test_connection(self) -> tuple[bool, str]:
        """Airflow UI "Test" button: obtain a token."""
        try:
            self.check_connection()
        except Exception as exc:
            return False, self._redact(str(exc))
        return True, "Advoware token obtained"
