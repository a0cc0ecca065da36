"""A tiny HTTP server that answers from a script, for testing the hooks' retry policy.

Each request takes the next step of the script: ``(status, headers, body)`` answers, ``"reset"``
closes the connection without an answer, ``("hang", seconds)`` sleeps before answering 200, a
callable ``(method, path, body) -> (status, headers, body)`` answers from the request. A body
given as bytes is sent as is; a ``Content-Type`` in the step's headers replaces the default
``application/json``. When the script is used up, it answers 200 ``{}``. Requests are recorded
(method, path, headers, body).

Like Apache's ``LimitRequestLine``, a request line longer than :data:`REQUEST_LINE_LIMIT` bytes
is answered 414 without taking a step (Python's own server would accept 64 KB).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Step = Any
#: Apache's default ``LimitRequestLine``: longer request lines are refused with 414.
REQUEST_LINE_LIMIT = 8190


@dataclass
class Script:
    """Steps to play and requests seen."""

    steps: list[Step] = field(default_factory=list)
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_step(self) -> Step:
        with self.lock:
            return self.steps.pop(0) if self.steps else (200, {}, {})


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler skeleton of the test servers: silent, one method for every
    verb (:meth:`answer`), with helpers to read the body, reply, or reset the connection."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def answer(self) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self.answer()

    do_POST = do_PUT = do_DELETE = do_GET

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reset_connection(self) -> None:
        """No answer: SO_LINGER 0, so the client sees a connection reset, not a clean close."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def reply(self, status: int, headers: Iterable[tuple[str, Any]], data: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def answer(self) -> None:
            body = self.read_body()
            with script.lock:
                script.seen.append((self.command, self.path, dict(self.headers), body))
            if len(self.requestline.encode()) > REQUEST_LINE_LIMIT:
                self.reply(414, [("Content-Type", "text/html")], b"<h1>URI Too Long</h1>")
                return
            step = script.next_step()
            if callable(step):
                step = step(self.command, self.path, body)
            if step == "reset":
                self.reset_connection()
                return
            if isinstance(step, tuple) and step[0] == "hang":
                time.sleep(step[1])
                step = (200, {}, {})
            status, headers, payload = step
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            headers = {"Content-Type": "application/json", **headers}
            self.reply(status, headers.items(), data)

    return Handler


@contextmanager
def scripted_server(*steps: Step) -> Iterator[tuple[str, Script]]:
    """Run a scripted server on a free port; yield its base URL and the script."""
    script = Script(list(steps))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()
