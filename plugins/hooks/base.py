"""What both hooks share: one HTTP session, timeouts, retries, typed errors, stats, masking.

The hooks speak HTTP and nothing else. Every request goes through :meth:`JsonApiHook._call`,
which

* sends it on the hook's single ``requests.Session`` with explicit (connect, read) timeouts,
* counts it (``"METHOD /path/template"``, status, duration) in :attr:`JsonApiHook.stats`,
* retries what is safe to retry (connection errors, timeouts, 429 honouring ``Retry-After``,
  502/503/504, and 500 for idempotent requests) with exponential backoff and full jitter,
  bounded by a number of attempts and by total time,
* never repeats a non-idempotent request that failed *ambiguously* (timeout or reset after it
  was sent, 502/504) unless a ``recover`` callback first confirmed that it did not take effect,
  and never repeats a POST whose answer timed out (read timeout, 504): the server may still be
  creating, so no check can tell yet; the caller's next run finds what was created,
* turns error answers into the typed errors of :mod:`include.beteiligte_sync.errors`.

Secrets (API keys, passwords, tokens, signatures) are registered with Airflow's secret masker
and are additionally scrubbed from every error text this module builds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

import requests
import urllib3.exceptions
from airflow.sdk import BaseHook
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from hooks.stats import NO_RESPONSE, RequestStats, StatsRecorder
from include.beteiligte_sync.errors import (
    ApiError,
    AuthFailed,
    BadRequest,
    BadResponse,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

#: Methods that may be repeated blindly: doing them twice has the effect of doing them once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Longest body kept on an error (``ApiError.__str__`` shortens further for messages).
_ERROR_BODY_LIMIT = 2000
_REDACTED = "***"
#: Longest request line (``METHOD URL HTTP/1.1``, URL in absolute form as a proxy sees it) this
#: module sends. Front servers refuse longer ones with 414 (Apache ``LimitRequestLine`` 8190,
#: nginx 8k header buffers); the margin leaves room for a prefix a reverse proxy adds.
REQUEST_LINE_BUDGET = 8000


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts, TLS and retry policy, read from the connection's ``extra``.

    :param verify: verify TLS certificates (extra ``verify``, default true).
    :param connect_timeout: seconds to establish a connection (extra ``connect_timeout``).
    :param read_timeout: seconds to wait for an answer (extra ``read_timeout``).
    :param retry_attempts: attempts per request, the first included (extra ``retry_attempts``).
    :param retry_max_seconds: total time budget per request incl. waits (``retry_max_seconds``).
    :param retry_wait_base: backoff base in seconds (``retry_wait_base``; tiny in tests).
    :param retry_wait_max: longest single backoff wait in seconds (``retry_wait_max``).
    """

    verify: bool = True
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retry_attempts: int = 5
    retry_max_seconds: float = 120.0
    retry_wait_base: float = 0.5
    retry_wait_max: float = 30.0

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> HttpSettings:
        """Build the settings from a connection's ``extra`` dict (missing keys: defaults)."""
        d = cls()
        return cls(
            verify=_as_bool(extra.get("verify", d.verify)),
            connect_timeout=float(extra.get("connect_timeout", d.connect_timeout)),
            read_timeout=float(extra.get("read_timeout", d.read_timeout)),
            retry_attempts=max(1, int(extra.get("retry_attempts", d.retry_attempts))),
            retry_max_seconds=float(extra.get("retry_max_seconds", d.retry_max_seconds)),
            retry_wait_base=float(extra.get("retry_wait_base", d.retry_wait_base)),
            retry_wait_max=float(extra.get("retry_wait_max", d.retry_wait_max)),
        )


def _as_bool(value: Any) -> bool:
    """Read a boolean from JSON or from a UI string field (``"false"``, ``"0"``, ``"no"``)."""
    if isinstance(value, str):
        return value.strip().lower() not in {"false", "0", "no", "off", ""}
    return bool(value)


def base_url_from_connection(conn: Connection, *, strip_suffix: str = "") -> str:
    """Return ``scheme://host[:port][/path]`` of a connection, without a trailing slash.

    :param conn: the Airflow connection; ``host`` may be a full URL or a bare host name
        (then ``schema`` is the URL scheme, default ``https``, and ``port`` is appended).
    :param strip_suffix: a path suffix operators sometimes paste by mistake (``/api/v1``).
    """
    host = (conn.host or "").strip()
    if not host:
        raise ValueError(f"connection {conn.conn_id!r} has no host")
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}"
    if conn.port and urlsplit(host).port is None:
        parts = urlsplit(host)
        host = f"{parts.scheme}://{parts.hostname}:{conn.port}{parts.path}"
    host = host.rstrip("/")
    if strip_suffix and host.endswith(strip_suffix):
        host = host[: -len(strip_suffix)]
    return host


def format_path(template: str, ids: Mapping[str, object] | None = None) -> str:
    """Fill a path template like ``/api/v1/CBeteiligte/{id}``, each id percent-encoded."""
    if not ids:
        return template
    return template.format(**{key: quote(str(value), safe="") for key, value in ids.items()})


def request_line_length(method: str, url: str, params: Any = None) -> int:
    """Bytes of the request line ``METHOD URL HTTP/1.1`` that ``requests`` would send for
    ``url`` with query ``params``, counting the URL in absolute form (scheme and host too, as
    sent to a proxy), so the figure is never below what any hop sees."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, params)
    return len(f"{method} {prepared.url} HTTP/1.1".encode())


def _json_kind(answer: Any) -> str:
    """What a decoded JSON answer is, in words for an error message (never its content)."""
    if answer is None:
        return "an empty body"
    kinds = {list: "a JSON list", str: "a JSON string", bool: "a JSON boolean"}
    for kind, words in kinds.items():
        if isinstance(answer, kind):
            return words
    return "a JSON number" if isinstance(answer, int | float) else "an unexpected JSON value"


def _retry_after_seconds(response: requests.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form; HTTP dates are rare here)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _was_not_sent(exc: requests.RequestException) -> bool:
    """True if the request certainly never reached the server (safe to repeat any method)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", exc.args[0])
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


class _RetryableFailure(Exception):
    """Internal: a failed attempt that may be repeated (wraps the typed error to raise at the end).

    :param ambiguous: the request may have taken effect; repeat only after checking.
    """

    def __init__(
        self, error: ApiError, *, ambiguous: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.ambiguous = ambiguous
        self.retry_after = retry_after


class JsonApiHook(BaseHook):
    """Base of :class:`~hooks.espocrm.EspoCrmHook` and :class:`~hooks.advoware.AdvowareHook`.

    Subclasses set the Airflow class attributes, :attr:`api_label` (used in messages) and
    implement :meth:`_auth_headers`; they call :meth:`_call` for every request.

    :param conn_id: the Airflow connection id.
    :param connection: an explicit connection object instead of looking ``conn_id`` up
        (for tools and tests that have no Airflow secrets backend at hand).
    """

    api_label: ClassVar[str] = "API"
    conn_type: ClassVar[str] = ""

    def __init__(self, conn_id: str, *, connection: Connection | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id
        self._explicit_connection = connection
        self._secrets: set[str] = set()
        self._stats = StatsRecorder()

    # -- connection, settings, session (all lazy: constructing a hook costs nothing) --------

    @cached_property
    def connection(self) -> Connection:
        """The Airflow connection (looked up once); its secrets get registered for masking."""
        conn = self._explicit_connection or self.get_connection(self.conn_id)
        self._register_secret(conn.password)
        for key, value in conn.extra_dejson.items():
            if key.rsplit("__", 1)[-1] in self._secret_extra_keys():
                self._register_secret(value)
        return conn

    @cached_property
    def extra(self) -> dict[str, Any]:
        """The connection's extra fields, also read from the UI's prefixed form.

        Older Airflow UIs store form fields as ``extra__<conn_type>__<field>``; both spellings
        work, the plain one wins.
        """
        prefix = f"extra__{self.conn_type}__"
        raw = self.connection.extra_dejson
        plain = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}
        plain.update({k: v for k, v in raw.items() if not k.startswith(prefix)})
        return {k: v for k, v in plain.items() if v is not None and v != ""}

    @cached_property
    def settings(self) -> HttpSettings:
        """Timeouts, TLS verification and retry policy from the connection's extra."""
        return HttpSettings.from_extra(self.extra)

    @cached_property
    def session(self) -> requests.Session:
        """The one ``requests.Session`` of this hook (connection pooling)."""
        session = requests.Session()
        session.verify = self.settings.verify
        session.headers.update({"Accept": "application/json"})
        # The environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE) is read once per origin
        # in :meth:`_environment`, not on every request: requests scans all of ``os.environ``
        # twice per call otherwise, which was the largest single CPU cost of a sync (issue 8).
        session.trust_env = False
        return session

    @cached_property
    def _environments(self) -> dict[str, dict[str, Any]]:
        """Per origin: the keyword arguments :meth:`_environment` found for it."""
        return {}

    def _environment(self, url: str) -> dict[str, Any]:
        """Proxies and CA bundle for ``url``'s origin, from the environment, as requests would
        find them on every call with ``trust_env`` (cached per scheme and host)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._environments:
            with requests.Session() as probe:  # trust_env on: requests' own rules, applied once
                found = probe.merge_environment_settings(
                    origin, {}, None, self.settings.verify, None
                )
            found_kwargs: dict[str, Any] = {"proxies": found["proxies"]}
            if parts.scheme == "https":  # a CA bundle means nothing (but a stat) for plain HTTP
                found_kwargs["verify"] = found["verify"]
            self._environments[origin] = found_kwargs
        return self._environments[origin]

    def get_conn(self) -> requests.Session:
        """Return the hook's HTTP session (Airflow's conventional accessor)."""
        return self.session

    def close(self) -> None:
        """Close the session's pooled connections (the hook stays usable; a new one opens)."""
        if "session" in self.__dict__:
            self.__dict__.pop("session").close()

    # -- stats -------------------------------------------------------------------------------

    @property
    def stats(self) -> RequestStats:
        """Snapshot of the requests made so far: per ``"METHOD /template"`` and status."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Forget the request statistics (e.g. between benchmark phases)."""
        self._stats.reset()

    # -- secrets -------------------------------------------------------------------------------

    @classmethod
    def _secret_extra_keys(cls) -> frozenset[str]:
        """Names of ``extra`` fields that hold secrets."""
        return frozenset({"api_key"})

    def _register_secret(self, value: object) -> None:
        """Mask ``value`` in Airflow logs and scrub it from this hook's error texts."""
        if not isinstance(value, str) or not value:
            return
        self._secrets.add(value)
        try:
            from airflow.sdk.log import mask_secret

            mask_secret(value)
        except Exception:  # masking is best effort outside a configured Airflow
            self.log.debug("secret masker not available")

    def _redact(self, text: str) -> str:
        """Replace every known secret in ``text`` by ``***``."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, _REDACTED)
        return text

    # -- subclass points -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Base URL that request paths are appended to."""
        raise NotImplementedError

    def _auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a request."""
        raise NotImplementedError

    def _auth_failed_message(self, request: str) -> str:
        """What an operator should check when the API answers 401."""
        return f"{self.api_label} refused the credentials of connection {self.conn_id!r}"

    def _send_authorized(
        self, method: str, url: str, request: str, **kwargs: Any
    ) -> requests.Response:
        """Send one request with authentication (Advoware adds token renewal on 401)."""
        headers = {**kwargs.pop("headers", {}), **self._auth_headers()}
        return self._send(method, url, request, headers=headers, **kwargs)

    # -- the request pipeline ------------------------------------------------------------------

    def _call(
        self,
        method: str,
        template: str,
        *,
        ids: Mapping[str, object] | None = None,
        params: Any = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        base_url: str | None = None,
        authorized: bool = True,
        idempotent: bool | None = None,
        recover: Callable[[], Any] | None = None,
    ) -> Any:
        """Make one logical request (with retries) and return the decoded JSON answer.

        :param template: path template, e.g. ``/api/v1/CBeteiligte/{id}``; it names the request
            in stats, logs and errors, so no id or query value ever appears there.
        :param ids: values for the template's placeholders.
        :param json_body: the JSON body, or a callable building it anew for every attempt.
        :param idempotent: override the method's default (GET/PUT/DELETE idempotent, POST not).
        :param recover: for non-idempotent requests: called before repeating after an ambiguous
            failure; returns the answer if the first attempt did take effect (then it is not
            repeated), or ``None`` to repeat. Without it, ambiguous failures are not retried.
        """
        request = f"{method} {template}"
        url = (base_url or self.base_url) + format_path(template, ids)
        if (params or len(url) > REQUEST_LINE_BUDGET // 2) and request_line_length(
            method, url, params
        ) > REQUEST_LINE_BUDGET:
            # A front server would answer 414; callers that can split (EspoCRM ``in`` lists)
            # cut their requests to fit before they get here.
            raise BadRequest(
                f"{self.api_label} request line would exceed {REQUEST_LINE_BUDGET} bytes "
                "(front servers refuse longer ones with 414); not sent",
                request=request,
            )
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        send_kwargs: dict[str, Any] = {
            "params": params,
            "json_body": json_body,
            "headers": dict(headers or {}),
        }
        must_check = False
        try:
            for attempt in self._retrying(request):
                with attempt:
                    if must_check and recover is not None:
                        found = recover()
                        if found is not None:
                            self.log.info("%s had taken effect; not repeating it", request)
                            return found
                        must_check = False
                    try:
                        response = self._attempt(
                            method, url, request, authorized, idempotent, send_kwargs
                        )
                    except _RetryableFailure as failure:
                        if failure.ambiguous:
                            if recover is None:
                                raise failure.error from None
                            must_check = True
                        raise
                    return self._decode(response, request)
        except _RetryableFailure as failure:
            raise failure.error from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _retrying(self, request: str) -> Retrying:
        """The retry policy for one logical request."""
        s = self.settings
        backoff = wait_random_exponential(multiplier=s.retry_wait_base, max=s.retry_wait_max)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _RetryableFailure) and exc.retry_after is not None:
                return exc.retry_after  # the server said how long; guessing shorter is rude
            return float(backoff(state))

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            status = exc.error.status if isinstance(exc, _RetryableFailure) else None
            sleep = state.next_action.sleep if state.next_action else 0.0
            self.log.warning(
                "%s failed (status %s), attempt %d of %d; retrying in %.2f s",
                request,
                status if status is not None else NO_RESPONSE,
                state.attempt_number,
                s.retry_attempts,
                sleep,
            )

        return Retrying(
            stop=stop_after_attempt(s.retry_attempts) | stop_before_delay(s.retry_max_seconds),
            wait=wait,
            retry=retry_if_exception_type(_RetryableFailure),
            before_sleep=log_retry,
            reraise=True,
        )

    def _attempt(
        self,
        method: str,
        url: str,
        request: str,
        authorized: bool,
        idempotent: bool,
        send_kwargs: dict[str, Any],
    ) -> requests.Response:
        """One attempt: send, then classify the outcome (return, retryable, or typed error)."""
        kwargs = {**send_kwargs, "headers": dict(send_kwargs["headers"])}
        if callable(kwargs["json_body"]):  # a fresh body per attempt (e.g. a new nonce)
            kwargs["json_body"] = kwargs["json_body"]()
        try:
            if authorized:
                response = self._send_authorized(method, url, request, **kwargs)
            else:
                response = self._send(method, url, request, **kwargs)
        except requests.RequestException as exc:
            lost = ServerError(
                f"no response from {self.api_label} ({type(exc).__name__})", request=request
            )
            if method == "POST" and isinstance(exc, requests.ReadTimeout):
                # The server may still be working on it: a check now cannot see the effect
                # yet, and a repeat would create twice. The next run re-reads and finds it.
                raise lost from None
            sure = idempotent or _was_not_sent(exc)
            raise _RetryableFailure(lost, ambiguous=not sure) from None
        status = response.status_code
        if status < 400:
            return response
        error: ApiError = self._error_for(response, request)
        if status in (429, 503):  # refused before doing anything: safe for every method
            raise _RetryableFailure(error, retry_after=_retry_after_seconds(response))
        if status == 504 and method == "POST":
            raise error  # the upstream may still be creating it (as after a read timeout)
        if status in (502, 504):  # a gateway may have passed the request on
            raise _RetryableFailure(error, ambiguous=not idempotent)
        if status == 500 and idempotent:
            raise _RetryableFailure(error)
        raise error

    def _send(
        self,
        method: str,
        url: str,
        request: str,
        *,
        params: Any = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send exactly one HTTP request and count it."""
        started = time.monotonic()
        s = self.settings
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                headers=dict(headers or {}),
                timeout=(s.connect_timeout, s.read_timeout),
                **self._environment(url),
            )
        except requests.RequestException as exc:
            elapsed = time.monotonic() - started
            self._stats.record(request, NO_RESPONSE, elapsed)
            self.log.debug("%s -> %s after %.0f ms", request, type(exc).__name__, elapsed * 1000)
            raise
        elapsed = time.monotonic() - started
        self._stats.record(request, response.status_code, elapsed)
        self.log.debug("%s -> %s in %.0f ms", request, response.status_code, elapsed * 1000)
        return response

    def _error_for(self, response: requests.Response, request: str) -> ApiError:
        """The typed error for an error answer (status, ``X-Status-Reason``, scrubbed body)."""
        status = response.status_code
        reason = response.headers.get("X-Status-Reason")
        body = self._redact(response.text[:_ERROR_BODY_LIMIT]) if response.content else None
        kw: dict[str, Any] = {"status": status, "reason": reason, "body": body, "request": request}
        label = self.api_label
        if status == 401:
            return AuthFailed(self._auth_failed_message(request), **kw)
        if status == 404:
            return NotFound(f"{label}: not found", **kw)
        if status == 409:
            return Conflict(f"{label}: conflict ({reason or 'no reason given'})", **kw)
        if status == 403:
            return Forbidden(f"{label}: forbidden", **kw)
        if status == 429:
            retry_after = _retry_after_seconds(response)
            return RateLimited(f"{label}: rate limited", retry_after=retry_after, **kw)
        if status >= 500:
            return ServerError(f"{label}: server error", **kw)
        return BadRequest(f"{label}: request rejected", **kw)

    def _decode(self, response: requests.Response, request: str) -> Any:
        """The JSON answer, or ``None`` for an empty body; ``BadResponse`` if it is not JSON
        (an HTML error page, JSON cut off) or not UTF-8.

        The bytes are decoded strictly as UTF-8 (a leading BOM tolerated) whatever charset the
        answer claims: JSON is UTF-8 (RFC 8259), and ``requests``' guessing or replacement
        characters would let a latin-1 'ä' reach the other system as '\ufffd'.
        """
        if not response.content:
            return None
        try:
            return json.loads(response.content.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise BadResponse(
                f"{self.api_label} answer is not UTF-8",
                status=response.status_code,
                request=request,
            ) from None
        except ValueError:
            raise BadResponse(
                f"{self.api_label} answer is not JSON",
                status=response.status_code,
                request=request,
            ) from None

    def _object_answer(self, answer: Any, request: str) -> dict[str, Any]:
        """``answer`` as a dict, or ``BadResponse`` naming what came instead (an empty body, a
        list, a string...): a decoded answer of the wrong shape must not reach the engine as a
        ``TypeError``. ``request`` is ``"METHOD /path/template"``."""
        if isinstance(answer, Mapping):
            return dict(answer)
        raise BadResponse(
            f"{self.api_label} answered {_json_kind(answer)} where an object was expected",
            request=request,
        )
