"""HTTP plumbing shared by both stand-ins: routing, admin API, call counters, faults, latency.

Each stand-in (EspoCRM, Advoware) is an :class:`ApiServer` on its own
``ThreadingHTTPServer``. Product paths (``/api/...``) go through latency, fault injection
and the call counters; admin paths (``/_admin/...``) never do. A handler never lets an
exception escape: bad input is answered with a 4xx, a bug in the sandbox with a 500.

Like the Apache in front of the real servers (``LimitRequestLine 8190``), a request line
(method, path, query and protocol) longer than 8190 bytes is answered 414 before routing.

:meth:`ApiServer.call` runs the same routing and handlers in-process without a socket
(``listen=False``): the in-memory test fakes are built on it, so they follow the very same
rules as the HTTP sandbox.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sandbox.faults import FaultInjector, FaultRule

log = logging.getLogger("sandbox")

ADMIN_PREFIX = "/_admin/"

#: Apache's default ``LimitRequestLine``: longer request lines are answered 414.
MAX_REQUEST_LINE = 8190


def request_line(method: str, path: str, query: str, protocol: str = "HTTP/1.1") -> str:
    """The HTTP request line of a request (what ``LimitRequestLine`` measures)."""
    target = f"{path}?{query}" if query else path
    return f"{method} {target} {protocol}"


def uri_too_long() -> HttpError:
    """Apache's 414 for a request line over :data:`MAX_REQUEST_LINE` bytes."""
    return HttpError(414, "uriTooLong", {"message": "Request-URI Too Long"})


class HttpError(Exception):
    """An error answer: status, ``X-Status-Reason`` and an optional JSON body."""

    def __init__(
        self,
        status: int,
        reason: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body
        self.headers = dict(headers or {})


@dataclass
class Request:
    """One parsed HTTP request as the route handlers see it."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """Decode the body as JSON; a malformed or empty body is a 400 (``badRequest``)."""
        if not self.body.strip():
            raise HttpError(400, "badRequest", {"message": "empty body"})
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise HttpError(400, "badRequest", {"message": "malformed JSON"}) from exc

    def json_object(self) -> dict[str, Any]:
        """Decode the body as a JSON object (anything else is a 400)."""
        data = self.json()
        if not isinstance(data, dict):
            raise HttpError(400, "badRequest", {"message": "JSON object expected"})
        return data

    def query_pairs(self) -> list[tuple[str, str]]:
        """The query string as ``(key, value)`` pairs in order, blanks kept."""
        return parse_qsl(self.query, keep_blank_values=True)

    def query_value(self, name: str) -> str | None:
        """The first value of a plain query parameter, or ``None``."""
        for key, value in self.query_pairs():
            if key == name:
                return value
        return None


def make_request(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> Request:
    """A :class:`Request` as the HTTP plumbing would build it (case-insensitive headers),
    for :meth:`ApiServer.call`."""
    lowered = {key.lower(): value for key, value in (headers or {}).items()}
    return Request(method, path, query, _Headers(lowered), body)


@dataclass
class Response:
    """A JSON answer (``body`` ``None`` means no body); ``raw`` replaces the encoded body
    (the ``non_utf8`` fault)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


RouteHandler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    """A method and a path template such as ``/api/v1/CBeteiligte/{id}``."""

    method: str
    template: str
    regex: re.Pattern[str]
    handler: RouteHandler


def compile_template(template: str) -> re.Pattern[str]:
    """Turn ``/a/{id}/b`` into a regex with a named group per ``{placeholder}``."""
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(f"^{pattern}$")


class CallCounters:
    """Calls per ``"METHOD /path/template"`` and status, plus concurrency of product calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[str, dict[str, int]] = {}
        self.in_flight = 0
        self.max_concurrent = 0

    def enter(self) -> None:
        """A product request started."""
        with self._lock:
            self.in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self.in_flight)

    def leave(self, key: str, outcome: str) -> None:
        """A product request ended with ``outcome`` (a status code or ``reset``)."""
        with self._lock:
            self.in_flight -= 1
            per_status = self.calls.setdefault(key, {})
            per_status[outcome] = per_status.get(outcome, 0) + 1

    def reset(self) -> None:
        """Forget all counts (requests in flight stay counted as in flight)."""
        with self._lock:
            self.calls = {}
            self.max_concurrent = self.in_flight

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        with self._lock:
            return {
                "calls": {key: dict(value) for key, value in sorted(self.calls.items())},
                "max_concurrent": self.max_concurrent,
                "in_flight": self.in_flight,
            }


class _ConnectionReset(Exception):
    """Raised inside dispatch to abort the connection without an answer."""


class ApiServer:
    """Base of both stand-ins; subclasses add product routes and the state hooks."""

    name = "api"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 0, listen: bool = True
    ) -> None:
        self.lock = threading.RLock()
        self.latency_ms = 0
        self.counters = CallCounters()
        self.faults = FaultInjector(seed)
        self.stopping = threading.Event()
        self._routes: list[Route] = []
        self._admin_routes: list[Route] = []
        self._httpd = _Httpd((host, port), _make_handler(self)) if listen else None
        self._thread: threading.Thread | None = None
        self._add_common_admin_routes()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (0 for an in-process server)."""
        return int(self._httpd.server_address[1]) if self._httpd is not None else 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Serve in a daemon thread."""
        if self._httpd is None:
            raise RuntimeError("an in-process server (listen=False) does not serve")
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            args=(0.05,),
            name=f"sandbox-{self.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; hanging responses are released at once."""
        self.stopping.set()
        if self._httpd is None:
            return
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    # -- routing ---------------------------------------------------------------------------

    def add_route(self, method: str, template: str, handler: RouteHandler) -> None:
        """Register a product route."""
        self._routes.append(Route(method, template, compile_template(template), handler))

    def add_admin_route(self, method: str, template: str, handler: RouteHandler) -> None:
        """Register an admin route (no faults, no counters, no latency)."""
        self._admin_routes.append(Route(method, template, compile_template(template), handler))

    # -- hooks for subclasses --------------------------------------------------------------

    def reset_state(self) -> None:
        """Empty the data of this server."""
        raise NotImplementedError

    def load_scenario(self, scenario: Mapping[str, Any]) -> dict[str, int]:
        """Replace the data by this server's part of ``scenario``; return counts loaded."""
        raise NotImplementedError

    def dump_state(self) -> dict[str, Any]:
        """This server's data in scenario shape."""
        raise NotImplementedError

    def admin_edit(self, body: dict[str, Any]) -> Any:
        """Change data as a person would through the product's own UI."""
        raise NotImplementedError

    def configure(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Apply runtime settings; return the current settings."""
        if "latency_ms" in body:
            self.latency_ms = _non_negative_int(body["latency_ms"], "latency_ms")
        return {"latency_ms": self.latency_ms}

    def check_auth(self, request: Request) -> None:
        """Raise ``HttpError(401)`` unless the request is authenticated for ``request.path``."""

    def error_body(self, error: HttpError) -> Any:
        """The JSON body of an error answer, in the style of the real API."""
        return error.body

    def expire_tokens(self) -> None:
        """Let every issued token expire now (only Advoware issues tokens)."""

    # -- dispatch --------------------------------------------------------------------------

    def dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one request; never raises."""
        try:
            request = _read_request(handler)
        except HttpError as error:
            _write(handler, self._error_response(error))
            return
        if len(handler.requestline.encode("latin-1", "replace")) > MAX_REQUEST_LINE:
            self._refuse_long_line(handler, request)
            return
        if request.path.startswith(ADMIN_PREFIX):
            _write(handler, self._dispatch_admin(request))
            return
        self._dispatch_product(handler, request)

    def _refuse_long_line(self, handler: BaseHTTPRequestHandler, request: Request) -> None:
        """414 from the front server: counted (product paths), never faulted or delayed."""
        handler.close_connection = True
        response = self._error_response(uri_too_long())
        if not request.path.startswith(ADMIN_PREFIX):
            route, _ = self._match(self._routes, request)
            key = f"{request.method} {route.template if route else request.path}"
            self.counters.enter()
            self.counters.leave(key, str(response.status))
        _write(handler, response)

    def call(self, request: Request, *, authenticate: bool = True) -> Response:
        """Answer one product request in-process: the request-line limit, routing, auth and
        the handler, as over HTTP, but without latency, faults or counters."""
        line = request_line(request.method, request.path, request.query)
        if len(line.encode("utf-8")) > MAX_REQUEST_LINE:
            return self._error_response(uri_too_long())
        route, allowed = self._match(self._routes, request)
        if route is not None and not authenticate:
            try:
                return route.handler(request)
            except HttpError as error:
                return self._error_response(error)
        return self._handle(route, allowed, request)

    def _dispatch_product(self, handler: BaseHTTPRequestHandler, request: Request) -> None:
        route, allowed = self._match(self._routes, request)
        template = route.template if route else request.path
        key = f"{request.method} {template}"
        self.counters.enter()
        response: Response | None = None
        try:
            response = self._run_product(route, allowed, request, template)
        except _ConnectionReset:
            pass
        finally:
            # Counted before the answer leaves: a client that reads the counters right after
            # its answer must see this call (counted after, a test's reset of the counters
            # could land in between and the call would count towards the next stretch).
            outcome = str(response.status) if response is not None else "reset"
            self.counters.leave(key, outcome)
            log.debug("%s %s -> %s", request.method, template, outcome)
        if response is None:
            _reset_connection(handler)
        else:
            _write(handler, response)

    def _run_product(
        self, route: Route | None, allowed: bool, request: Request, template: str
    ) -> Response:
        if self.latency_ms:
            self.stopping.wait(self.latency_ms / 1000)
        rule = self.faults.pick(request.method, template, request.path, self.stopping.wait)
        early = self._apply_fault_before(rule)
        if early is not None:
            return early
        response = self._handle(route, allowed, request)
        if rule is not None and rule.kind == "drop_response":
            raise _ConnectionReset
        if rule is not None and rule.kind == "non_utf8":
            response.raw = not_utf8_body(response.body)
        return response

    def _apply_fault_before(self, rule: FaultRule | None) -> Response | None:
        """Act on a fault that fires before the request is performed."""
        if rule is None:
            return None
        if rule.kind == "error":
            return self._error_response(HttpError(rule.status, "injectedFault"))
        if rule.kind == "rate_limit":
            headers = {"Retry-After": str(rule.retry_after)}
            return self._error_response(HttpError(429, "tooManyRequests", headers=headers))
        if rule.kind == "hang":
            self.stopping.wait(rule.seconds)
        elif rule.kind == "reset":
            raise _ConnectionReset
        elif rule.kind == "expire_tokens":
            self.expire_tokens()
        return None

    def _handle(self, route: Route | None, allowed: bool, request: Request) -> Response:
        try:
            if route is None:
                raise HttpError(405 if allowed else 404, "notFound" if not allowed else "method")
            self.check_auth(request)
            return route.handler(request)
        except HttpError as error:
            return self._error_response(error)
        except Exception:  # a sandbox bug must not kill the connection thread
            log.exception("sandbox %s failed on %s %s", self.name, request.method, request.path)
            return self._error_response(HttpError(500, "internalError"))

    def _dispatch_admin(self, request: Request) -> Response:
        route, allowed = self._match(self._admin_routes, request)
        try:
            if route is None:
                raise HttpError(405 if allowed else 404, "unknown admin call")
            return route.handler(request)
        except HttpError as error:
            body = error.body if error.body is not None else {"error": error.reason}
            return Response(error.status, body, {"X-Status-Reason": error.reason})
        except Exception:
            log.exception("sandbox %s admin call failed", self.name)
            return Response(500, {"error": "internal"})

    def _match(self, routes: list[Route], request: Request) -> tuple[Route | None, bool]:
        """The matching route, and whether the path exists for another method (405)."""
        path_known = False
        for route in routes:
            match = route.regex.match(request.path)
            if match is None:
                continue
            path_known = True
            if route.method == request.method:
                request.params = match.groupdict()
                return route, True
        return None, path_known

    def _error_response(self, error: HttpError) -> Response:
        headers = {"X-Status-Reason": error.reason, **error.headers}
        return Response(error.status, self.error_body(error), headers)

    # -- admin API -------------------------------------------------------------------------

    def _add_common_admin_routes(self) -> None:
        self.add_admin_route("POST", "/_admin/reset", self._admin_reset)
        self.add_admin_route("POST", "/_admin/scenario", self._admin_scenario)
        self.add_admin_route("GET", "/_admin/state", lambda r: Response(200, self._dump()))
        self.add_admin_route("POST", "/_admin/edit", self._admin_edit)
        self.add_admin_route(
            "GET", "/_admin/counters", lambda r: Response(200, self.counters.snapshot())
        )
        self.add_admin_route("POST", "/_admin/counters/reset", self._admin_counters_reset)
        self.add_admin_route("GET", "/_admin/faults", lambda r: Response(200, self.faults.dump()))
        self.add_admin_route("POST", "/_admin/faults", self._admin_faults)
        self.add_admin_route("DELETE", "/_admin/faults", self._admin_clear_faults)
        self.add_admin_route("POST", "/_admin/config", self._admin_config)

    def _dump(self) -> dict[str, Any]:
        with self.lock:
            return self.dump_state()

    def _admin_reset(self, request: Request) -> Response:
        with self.lock:
            self.reset_state()
        self.counters.reset()
        self.faults.clear()
        return Response(200, {"ok": True})

    def _admin_scenario(self, request: Request) -> Response:
        scenario = request.json_object()
        with self.lock:
            loaded = self.load_scenario(scenario)
        return Response(200, {"loaded": loaded})

    def _admin_edit(self, request: Request) -> Response:
        body = request.json_object()
        with self.lock:
            return Response(200, self.admin_edit(body))

    def _admin_counters_reset(self, request: Request) -> Response:
        self.counters.reset()
        return Response(200, {"ok": True})

    def _admin_faults(self, request: Request) -> Response:
        body = request.json_object()
        try:
            self.faults.set_rules(body.get("rules", []), seed=body.get("seed", 0))
        except ValueError as exc:
            raise HttpError(400, "badFaultRule", {"error": str(exc)}) from exc
        return Response(200, self.faults.dump())

    def _admin_clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return Response(200, {"ok": True})

    def _admin_config(self, request: Request) -> Response:
        body = request.json_object()
        with self.lock:
            return Response(200, self.configure(body))


def not_utf8_body(body: Any) -> bytes:
    """``body`` as JSON encoded in latin-1 (not UTF-8), with at least one ``ä`` in it."""
    if isinstance(body, dict):
        body = {**body, "sandboxFault": "Gebühr ä"}
    elif isinstance(body, list):
        body = [*body, "Gebühr ä"]
    else:
        body = {"value": body, "sandboxFault": "Gebühr ä"}
    return json.dumps(body, ensure_ascii=False).encode("latin-1", "replace")


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise HttpError(400, "badConfig", {"error": f"{name} must be a non-negative number"})
    return int(value)


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    # Do not join handler threads on close: a hanging fault or an idle keep-alive connection
    # must not block the shutdown of a test.
    block_on_close = False
    allow_reuse_address = True


def _make_handler(server: ApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"sandbox-{server.name}"
        timeout = 120

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in separate writes; without NODELAY, Nagle's algorithm
            # and the client's delayed ACK add ~40 ms to every answer.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            server.dispatch(self)

        do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            # One DEBUG line per request is written by dispatch; stay silent here.
            pass

    return Handler


def _read_request(handler: BaseHTTPRequestHandler) -> Request:
    length_text = handler.headers.get("Content-Length") or "0"
    try:
        length = int(length_text)
    except ValueError as exc:
        handler.close_connection = True
        raise HttpError(400, "badRequest", {"message": "bad Content-Length"}) from exc
    if length < 0:
        handler.close_connection = True
        raise HttpError(400, "badRequest", {"message": "bad Content-Length"})
    body = handler.rfile.read(length) if length else b""
    parts = urlsplit(handler.path)
    headers = {key.lower(): value for key, value in handler.headers.items()}
    return Request(handler.command, parts.path, parts.query, _Headers(headers), body)


class _Headers(dict[str, str]):
    """Case-insensitive header lookup (keys stored lower-case)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


def _write(handler: BaseHTTPRequestHandler, response: Response) -> None:
    payload = b"" if response.body is None else json.dumps(response.body).encode("utf-8")
    if response.raw is not None:
        payload = response.raw
    try:
        handler.send_response(response.status)
        if response.body is not None or response.raw is not None:
            handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)
    except OSError:
        # The client went away (timeout on a hanging answer): nothing left to tell it.
        handler.close_connection = True


def _reset_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close the socket with SO_LINGER 0, so the client sees a TCP RST and no answer."""
    handler.close_connection = True
    sock = handler.connection
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed (test helper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
