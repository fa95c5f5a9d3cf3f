"""A minimal HTTP/1.1 server on asyncio streams, exact enough to reproduce wire-level faults.

Rule: this module knows bytes, status lines and chunked framing, nothing about chat
completions. It supports keep-alive, request bodies framed by `Content-Length`, plain responses
with `Content-Length`, and streamed responses with `Transfer-Encoding: chunked`. A client that
goes away mid-response ends that connection quietly: no traceback, no half-written state kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

logger = logging.getLogger("baseten_magic.server")

MAX_HEADER_BYTES = 64 * 1024
# A long chat request (a 262k-token context, a few images as data URLs) stays well below this.
MAX_BODY_BYTES = 16 * 1024 * 1024
# Idle keep-alive connections are closed after this long, as real servers do.
KEEP_ALIVE_TIMEOUT_S = 75.0


class ClientGone(Exception):
    """The client closed its connection (or the response was aborted) while we were writing."""


class BadRequest(Exception):
    """The request could not be parsed as HTTP/1.1; carries the status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request; header names are lower-cased."""

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: Mapping[str, str]
    body: bytes = b""
    peer: str = ""


@dataclass
class Exchange:
    """The response side of one request: `respond()` once, or `start_stream()` then chunks."""

    writer: asyncio.StreamWriter
    keep_alive: bool
    started: bool = False
    finished: bool = False
    aborted: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)
    status: int = 0  # the status sent, for the access log

    def _check_open(self) -> None:
        if self.aborted or self.writer.is_closing():
            raise ClientGone("connection closed")

    async def _write(self, data: bytes) -> None:
        self._check_open()
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            # RuntimeError: asyncio refuses writes on a transport that closed under us.
            self.aborted = True
            raise ClientGone(str(exc)) from exc

    def _head(self, status: int, headers: Mapping[str, str]) -> bytes:
        self.status = status
        reason = _reason(status)
        lines = [f"HTTP/1.1 {status} {reason}"]
        merged = {**self.extra_headers, **headers}
        merged["Connection"] = "keep-alive" if self.keep_alive else "close"
        lines.extend(f"{name}: {value}" for name, value in merged.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def respond(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        """Send a complete response framed by Content-Length."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        head = self._head(status, {**headers, "Content-Length": str(len(body))})
        await self._write(head + body)
        self.finished = True

    async def start_stream(self, status: int, headers: Mapping[str, str]) -> None:
        """Send the status line and headers of a chunked response."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        await self._write(self._head(status, {**headers, "Transfer-Encoding": "chunked"}))

    async def send_chunk(self, data: bytes) -> None:
        """Send one chunk and wait until it is handed to the socket (a stream must be a stream)."""
        if not data:
            return  # a zero-length chunk would end the body
        await self._write(b"%x\r\n%b\r\n" % (len(data), data))

    async def end_stream(self) -> None:
        """Send the terminating zero-length chunk."""
        await self._write(b"0\r\n\r\n")
        self.finished = True

    def abort(self) -> None:
        """Close the connection without finishing the response (what a crashed upstream does)."""
        self.aborted = True
        self.keep_alive = False
        with contextlib.suppress(Exception):
            self.writer.close()


Handler = Callable[[Request, Exchange], Awaitable[None]]


def _access_log(request: Request, exchange: Exchange, started: float) -> None:
    """One line per request at INFO (the CLI shows it on stderr unless --quiet). The path only:
    a query string could carry a secret."""
    outcome = "cut" if exchange.aborted else str(exchange.status or "-")
    logger.info(
        "%s %s %s %s %.3fs",
        request.peer,
        request.method,
        request.path,
        outcome,
        time.monotonic() - started,
    )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


async def read_request(reader: asyncio.StreamReader, peer: str = "") -> Request | None:
    """Read one request; None on a clean EOF between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest(400, "incomplete request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadRequest(431, "request head too large") from exc
    text = head.decode("latin-1")
    request_line, *header_lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, f"malformed request line {request_line[:80]!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, f"malformed header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if "transfer-encoding" in headers:
        raise BadRequest(411, "chunked request bodies are not supported; send Content-Length")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise BadRequest(400, f"bad Content-Length {length_text[:40]!r}")
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise BadRequest(413, f"body of {length} bytes exceeds {MAX_BODY_BYTES}")
    try:
        body = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise BadRequest(400, "body shorter than Content-Length") from exc
    split = urlsplit(target)
    return Request(
        method=method.upper(),
        target=target,
        path=split.path or "/",
        query=split.query,
        version=version,
        headers=headers,
        body=body,
        peer=peer,
    )


def wants_keep_alive(request: Request) -> bool:
    """HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 only when asked."""
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


class HTTPServer:
    """Accepts connections and runs `handler` for each request, with keep-alive."""

    def __init__(self, handler: Handler, on_bad_request: Callable[[BadRequest], bytes]) -> None:
        self._handler = handler
        self._on_bad_request = on_bad_request
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.open_connections = 0

    async def start(self, host: str, port: int) -> int:
        """Listen and return the bound port."""
        self._server = await asyncio.start_server(
            self._connection, host, port, limit=MAX_HEADER_BYTES
        )
        sockname = self._server.sockets[0].getsockname()
        return int(sockname[1])

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.open_connections += 1
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else ""
        # A zero high-water mark makes drain() wait until each chunk reached the socket.
        writer.transport.set_write_buffer_limits(high=0)
        try:
            await self._serve(reader, writer, peer)
        except (ConnectionError, ClientGone, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away; nothing to report
        except asyncio.CancelledError:
            pass  # server shutting down
        finally:
            self.open_connections -= 1
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        while True:
            try:
                async with asyncio.timeout(KEEP_ALIVE_TIMEOUT_S):
                    request = await read_request(reader, peer)
            except BadRequest as exc:
                exchange = Exchange(writer, keep_alive=False)
                body = self._on_bad_request(exc)
                await exchange.respond(exc.status, body, {"Content-Type": "application/json"})
                logger.info("%s - - %d (%s)", peer, exc.status, exc.message)
                return
            if request is None:
                return
            exchange = Exchange(writer, keep_alive=wants_keep_alive(request))
            started = time.monotonic()
            try:
                await self._handler(request, exchange)
            except ClientGone:
                _access_log(request, exchange, started)
                return
            except Exception:
                logger.exception("handler failed for %s %s", request.method, request.path)
                if exchange.started:
                    return
                exchange.keep_alive = False
                await exchange.respond(
                    500,
                    self._on_bad_request(BadRequest(500, "internal server error")),
                    {"Content-Type": "application/json"},
                )
                return
            _access_log(request, exchange, started)
            if exchange.aborted or not exchange.keep_alive:
                return
            if not exchange.finished:
                # A handler that left a stream open cannot share the connection again.
                return
