"""A forwarding HTTP server: everything goes to the sandbox, chosen requests to a scripted server.

The engine tests of bad HTTP answers need one entity's request answered badly while the rest of
the same run talks to the real sandbox. :class:`Router` sits in front of a sandbox server; a
request whose method and path (query ignored) match a route is forwarded to the scripted server
of ``tests/hooks/scripted_server.py`` instead, which plays its script (truncated JSON, an HTML
page, an odd status...). Status, headers and body are relayed as they come; when the upstream
drops the connection, the router resets the client's connection too.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.hooks.scripted_server import QuietHandler

#: Hop-by-hop headers, and those the router sets itself.
_SKIP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
)


class Router:
    """Routes ``(METHOD, path)`` to ``target`` URLs, all else to ``upstream``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.routes: dict[tuple[str, str], str] = {}
        self.routed = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The router's base URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, method: str, path: str, target: str) -> None:
        """Send ``method path`` (exact path, query ignored) to ``target`` from now on."""
        self.routes[(method.upper(), path)] = target

    def clear(self) -> None:
        """Everything to the upstream again."""
        self.routes.clear()

    def target_for(self, method: str, path: str) -> str:
        """Where a request goes."""
        target = self.routes.get((method, path.split("?", 1)[0]))
        if target is None:
            return self.upstream
        self.routed += 1
        return target

    def start(self) -> Router:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


def _forward(target: str, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
    """One request to ``target``; returns ``(status, headers, body)``."""
    parts = urlsplit(target)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def _handler(router: Router) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def answer(self) -> None:
            body = self.read_body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
            target = router.target_for(self.command, self.path)
            try:
                status, answer_headers, data = _forward(
                    target, self.command, self.path, headers, body
                )
            except (OSError, http.client.HTTPException):
                # the upstream dropped the connection: so does the router (RST, no answer)
                self.reset_connection()
                return
            kept = [(k, v) for k, v in answer_headers if k.lower() not in _SKIP_HEADERS]
            self.reply(status, kept, data)

    return Handler


@contextmanager
def router(upstream: str) -> Iterator[Router]:
    """A running :class:`Router` in front of ``upstream``."""
    running = Router(upstream).start()
    try:
        yield running
    finally:
        running.stop()
