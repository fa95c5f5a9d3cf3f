"""A small hostile HTTP server on loopback, for faults the local server cannot produce.

Rule: each request is answered by a script function, given the request number (1-based), the
parsed request and the raw socket; the server counts requests and open connections and records
when a client closed a connection, so tests can assert on what really went over the wire.

    def script(n: int, request: Request, sock: socket.socket) -> None:
        sock.sendall(http_response(200, b"...", {"Content-Type": "text/event-stream"}))

    with HostileServer(script) as server:
        Client(base_url=server.url, api_key="k").stream(...)
        assert server.requests == 1
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any


@dataclass
class Request:
    """What the client sent: method, path, headers (lower-cased names) and body."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


Script = Callable[[int, Request, socket.socket], None]


def http_response(
    status: int,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    *,
    reason: str = "X",
    length: bool = True,
) -> bytes:
    """The bytes of one HTTP/1.1 response (with Content-Length unless `length=False`)."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sse_head(headers: Mapping[str, str] | None = None) -> bytes:
    """The head of a 200 event-stream response whose body ends when the connection closes."""
    return http_response(
        200, b"", {"Content-Type": "text/event-stream", **(headers or {})}, length=False
    )


def sse(payload: Any) -> bytes:
    """One `data:` event holding `payload` as JSON (or a raw string)."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def wait_closed(sock: socket.socket, timeout: float) -> bool:
    """Wait until the client closes its end; True if it did within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        readable, _, _ = select.select([sock], [], [], min(left, 0.05))
        if readable:
            try:
                if sock.recv(65536) == b"":
                    return True
            except OSError:
                return True


class HostileServer:
    """A threaded loopback server answering every request with `script`."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests = 0
        self.open_connections = 0
        self.closed_at: list[float] = []  # monotonic times a client was seen closing
        self.received: list[Request] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> HostileServer:
        self._accept_thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        self._accept_thread.join(timeout=2)
        for thread in self._threads:
            thread.join(timeout=2)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                readable, _, _ = select.select([self._listener], [], [], 0.05)
                if not readable:
                    continue
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.open_connections += 1
        try:
            request = self._read_request(conn)
            if request is None:
                return
            with self._lock:
                self.requests += 1
                number = self.requests
                self.received.append(request)
            self.script(number, request, conn)
        except OSError:
            pass  # the client went away mid-answer: that is what many tests provoke
        except BaseException as exc:  # surfaced by tests that check `errors`
            self.errors.append(exc)
        finally:
            try:
                conn.close()
            finally:
                with self._lock:
                    self.open_connections -= 1

    @staticmethod
    def _read_request(conn: socket.socket) -> Request | None:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                return None
            data += piece
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            piece = conn.recv(65536)
            if not piece:
                break
            rest += piece
        return Request(method, path, headers, rest[:length])
