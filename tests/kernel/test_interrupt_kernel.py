"""Interrupts of `%%baseten` in a real ipykernel against a hostile loopback server: nothing is
sent after an interrupt during a retry wait, a wait for the first byte ends at once with the
socket closed, and each call leaves exactly one ledger row."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.hostile import HostileServer, Request, http_response, sse, sse_head, wait_closed
from harness.kernel import KernelSession

from baseten_magic.io.ledger import Ledger

pytestmark = pytest.mark.kernel

KEY = "sk-kernel-interrupt-key-0123456789"
CELL = "%%baseten -m gpt-oss --no-memory\nhi"


class Script:
    """What the hostile server does, switchable per test; `closed` holds hang-up times."""

    def __init__(self) -> None:
        self.mode = "retry"
        self.closed: list[float] = []

    def __call__(self, n: int, request: Request, sock: socket.socket) -> None:
        if self.mode == "retry" and n == 1:
            sock.sendall(http_response(429, b'{"error": "slow down"}', {"Retry-After": "3"}))
        elif self.mode == "retry":
            sock.sendall(
                sse_head()
                + sse({"choices": [{"index": 0, "delta": {"content": "late"}}]})
                + sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                + sse("[DONE]")
            )
        elif wait_closed(sock, 20):
            self.closed.append(time.monotonic())


@pytest.fixture(scope="module")
def script() -> Script:
    return Script()


@pytest.fixture(scope="module")
def server(script: Script) -> Iterator[HostileServer]:
    with HostileServer(script) as hostile:
        yield hostile


@pytest.fixture(scope="module")
def ledger_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ledger") / "ledger.sqlite3"


@pytest.fixture(scope="module")
def kernel(server: HostileServer, ledger_file: Path) -> Iterator[KernelSession]:
    env = {
        "BASETEN_BASE_URL": server.url,
        "BASETEN_API_KEY": KEY,
        "BASETEN_MAGIC_LEDGER": str(ledger_file),
    }
    with KernelSession(env) as session:
        loaded = session.execute("%load_ext baseten_magic", timeout=60)
        assert loaded.status == "ok", loaded.outputs
        yield session


def _wait_requests(server: HostileServer, count: int) -> None:
    deadline = time.monotonic() + 20
    while server.requests < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.requests >= count


def test_interrupt_during_a_retry_wait_sends_nothing_more(
    kernel: KernelSession, server: HostileServer, script: Script, ledger_file: Path
) -> None:
    script.mode = "retry"
    before = server.requests
    msg_id = kernel.start_execute(CELL)
    _wait_requests(server, before + 1)
    time.sleep(0.5)  # inside the 3 s Retry-After wait
    interrupted_at = time.monotonic()
    kernel.interrupt()
    result = kernel.wait(msg_id, timeout=30)
    assert time.monotonic() - interrupted_at <= 1.0
    assert result.status == "error"
    time.sleep(3.5)  # past the Retry-After: a reader still alive would send request 2 now
    assert server.requests == before + 1
    rows = Ledger(ledger_file).rows()
    assert rows[-1].status == "interrupted"


def test_interrupt_before_the_first_byte_closes_the_socket_at_once(
    kernel: KernelSession, server: HostileServer, script: Script, ledger_file: Path
) -> None:
    script.mode = "silent"
    rows_before = len(Ledger(ledger_file).rows())
    before = server.requests
    msg_id = kernel.start_execute(CELL)
    _wait_requests(server, before + 1)
    time.sleep(0.3)
    interrupted_at = time.monotonic()
    kernel.interrupt()
    result = kernel.wait(msg_id, timeout=30)
    assert time.monotonic() - interrupted_at <= 1.0
    assert result.status == "error"
    deadline = time.monotonic() + 2
    while not script.closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert script.closed and script.closed[-1] - interrupted_at <= 1.0
    rows = Ledger(ledger_file).rows()
    assert len(rows) == rows_before + 1 and rows[-1].status == "interrupted"
