"""Interrupts against a hostile loopback server: a retry wait, a wait for the first byte, and
more presses while the call is being wound up. KeyboardInterrupt is raised in the main thread
with `_thread.interrupt_main()` from timers, as a SIGINT would be."""

from __future__ import annotations

import _thread
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.hostile import HostileServer, Request, http_response, sse, sse_head, wait_closed

from baseten_magic.engine.call import CallContext, ChatCall, prepare_request
from baseten_magic.io.client import Client
from baseten_magic.io.ledger import Ledger, LedgerRow

KEY = "sk-interrupt-test-key-0123456789"
OK_STREAM = (
    sse_head()
    + sse({"model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
    + sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    + sse("[DONE]")
)


class Pacer:
    def next_deadline(self) -> float:
        return time.monotonic() + 0.05

    def tick(self) -> None:
        pass


class Timers:
    """Interrupt the main thread at given delays; `fired` holds when each press happened."""

    def __init__(self) -> None:
        self.started: list[threading.Timer] = []
        self.fired: list[float] = []

    def press(self) -> None:
        self.fired.append(time.monotonic())
        _thread.interrupt_main()


@pytest.fixture
def timers() -> Iterator[Timers]:
    made = Timers()
    yield made
    for timer in made.started:
        timer.cancel()


def _interrupt_at(timers: Timers, *seconds: float) -> None:
    for delay in seconds:
        timer = threading.Timer(delay, timers.press)
        timer.daemon = True
        timers.started.append(timer)
        timer.start()


def _call(ledger: Ledger) -> ChatCall:
    return ChatCall(prepare_request("hi", model="gpt-oss"), CallContext(session="s", ledger=ledger))


def test_interrupt_during_a_retry_wait_never_sends_again(tmp_path: Path, timers: Timers) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        if n == 1:
            sock.sendall(http_response(429, b'{"error": "slow down"}', {"Retry-After": "2"}))
        else:
            sock.sendall(OK_STREAM)

    ledger = Ledger(tmp_path / "l.sqlite3")
    with HostileServer(script) as server:
        client = Client(base_url=server.url, api_key=KEY)
        call = _call(ledger)
        _interrupt_at(timers, 0.5)
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            call.run(client, pacer=Pacer())
        assert time.monotonic() - started < 1.5
        time.sleep(2.5)  # past the Retry-After: a worker still alive would send now
        assert server.requests == 1
        assert server.open_connections == 0
    assert call.result is not None and call.result.status == "interrupted"
    assert [r.status for r in ledger.rows()] == ["interrupted"]


def test_interrupt_before_the_first_byte_returns_at_once_and_closes_the_socket(
    tmp_path: Path, timers: Timers
) -> None:
    closed: list[float] = []

    def script(n: int, request: Request, sock: socket.socket) -> None:
        if wait_closed(sock, 10):  # never answers; notes when the client hung up
            closed.append(time.monotonic())

    ledger = Ledger(tmp_path / "l.sqlite3")
    with HostileServer(script) as server:
        client = Client(base_url=server.url, api_key=KEY)
        call = _call(ledger)
        _interrupt_at(timers, 0.4)
        with pytest.raises(KeyboardInterrupt):
            call.run(client, pacer=Pacer())
        returned = time.monotonic()
        assert returned - timers.fired[0] <= 1.0
        deadline = time.monotonic() + 1.0
        while not closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert closed and closed[0] - timers.fired[0] < 0.5  # the socket closed at once
        assert server.requests == 1
    assert [r.status for r in ledger.rows()] == ["interrupted"]


class SlowLedger(Ledger):
    """A ledger whose writes take a second: long enough for more interrupt presses."""

    def record(self, row: LedgerRow) -> None:
        time.sleep(1.0)
        super().record(row)


def test_more_interrupts_while_winding_up_never_lose_the_row(
    tmp_path: Path, timers: Timers
) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        wait_closed(sock, 10)

    ledger = SlowLedger(tmp_path / "l.sqlite3")
    with HostileServer(script) as server:
        client = Client(base_url=server.url, api_key=KEY)
        call = _call(ledger)
        _interrupt_at(timers, 0.3, 0.6, 0.8, 1.0)
        with pytest.raises(KeyboardInterrupt):
            call.run(client, pacer=Pacer())
        time.sleep(0.2)  # every timer has fired
    assert [r.status for r in ledger.rows()] == ["interrupted"]


def test_an_interrupted_client_still_works(tmp_path: Path, timers: Timers) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        if n == 1:
            wait_closed(sock, 10)
        else:
            sock.sendall(OK_STREAM)

    with HostileServer(script) as server:
        client = Client(base_url=server.url, api_key=KEY)
        _interrupt_at(timers, 0.3)
        with pytest.raises(KeyboardInterrupt):
            _call(Ledger(tmp_path / "l.sqlite3")).run(client, pacer=Pacer())
        with client:
            result = _call(Ledger(tmp_path / "l.sqlite3")).run(client, pacer=Pacer())
        assert result.content == "hi"
