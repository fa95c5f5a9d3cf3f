"""A run killed with `kill -9` loses nothing it was answered: the re-run sends only the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import baseten_magic
from baseten_magic.io.cache import ResponseCache
from baseten_magic.server import LocalServer

ServerFactory = Callable[..., LocalServer]
ROOT = Path(__file__).resolve().parents[2]
ROWS = 60
CHILD = (
    "import baseten_magic\n"
    f"baseten_magic.map('Echo {{value}}', [str(i) for i in range({ROWS})], progress=False,"
    " concurrency=2)\n"
)


def test_kill_9_then_rerun_sends_only_the_missing_rows(
    limited_server: ServerFactory, batch_env: Path
) -> None:
    server = limited_server(latency_s=0.2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env)
    try:
        deadline = time.monotonic() + 60
        while server.stats().requests < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    sent_before = server.stats().requests
    assert 12 <= sent_before < ROWS
    time.sleep(0.3)  # requests the child had in flight finish at the server
    stored = len(ResponseCache(batch_env / "cache.sqlite3"))
    assert stored >= sent_before - 2  # at most the two in flight were lost with the process
    requests_before = server.stats().requests
    out = baseten_magic.map(
        "Echo {value}", [str(i) for i in range(ROWS)], progress=False, concurrency=2
    )
    assert out["error"].isna().all()
    assert out.attrs["baseten"]["cached"] == stored
    assert server.stats().requests - requests_before == ROWS - stored
