"""Interrupts in a real ipykernel: a slow `%%baseten --route xpay` cell (the real `mcp` client
against the local MCP stand-in) is cancelled and logged, and an interrupted cell shows one line,
is an error reply, and stops nbclient's Run All."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from harness import server_env
from harness.kernel import KernelSession, kernel_environ, write_notebook
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from baseten_magic.io.ledger import Ledger
from baseten_magic.server import LocalServer

pytestmark = pytest.mark.kernel

pytest.importorskip("mcp")

KEY = "xpay-kernel-key-8e3f1a6c0d"
ONE_LINE = "interrupted by the user"


def _error_lines(outputs: Any) -> list[list[str]]:
    return [list(o["traceback"]) for o in outputs if o["output_type"] == "error"]


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[Any]:
    from baseten_magic.server.xpay import LocalMCPServer

    with LocalMCPServer(key=KEY, tokens_per_second=5) as running:  # ~40 s for a story
        yield running


def test_interrupting_a_slow_xpay_cell_cancels_the_call_in_one_line(
    mcp_server: Any, tmp_path: Path
) -> None:
    ledger_file = tmp_path / "ledger.sqlite3"
    env = {
        "XPAY_KEY": KEY,
        "XPAY_MCP_URL": mcp_server.url,
        "BASETEN_MAGIC_LEDGER": str(ledger_file),
    }
    with KernelSession(env) as kernel:
        loaded = kernel.execute("%load_ext baseten_magic", timeout=60)
        assert loaded.status == "ok", loaded.outputs
        cancelled_before, sent_before = mcp_server.cancelled, len(mcp_server.arguments)
        msg_id = kernel.start_execute("%%baseten --route xpay --no-memory\nTell me a story")
        kernel.wait_for(
            msg_id,
            lambda m: (
                "waiting for the answer… 1 s"
                in str(m.content.get("data", {}).get("text/plain", ""))
            ),
            timeout=30,
        )
        # Interrupt once the tool call is at the stand-in (the first call also imports mcp).
        deadline = time.monotonic() + 20
        while len(mcp_server.arguments) == sent_before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(mcp_server.arguments) == sent_before + 1
        time.sleep(0.3)
        interrupted_at = time.monotonic()
        kernel.interrupt()
        result = kernel.wait(msg_id, timeout=30)
        assert time.monotonic() - interrupted_at <= 3.0
        assert result.status == "error"
        assert result.error_name == "KeyboardInterrupt"
        (traceback,) = _error_lines(result.outputs)
        assert len(traceback) == 1 and ONE_LINE in traceback[0]
        texts = [str(o.get("data", {}).get("text/plain", "")) for o in result.outputs]
        assert any("interrupted" in text for text in texts)  # the footer's mark
        deadline = time.monotonic() + 5
        while mcp_server.cancelled == cancelled_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mcp_server.cancelled > cancelled_before  # the stand-in saw the call go away
        # The kernel is usable afterwards, on the route, and the key was never shown.
        mcp_server.set_speed(None)
        after = kernel.execute("%%baseten --route xpay --no-memory\n/echo still fine")
        assert after.status == "ok", after.outputs
        everything = repr([m.content for m in result.messages + after.messages])
        assert KEY not in everything
    rows = Ledger(ledger_file).rows()
    assert [(r.status, r.route) for r in rows] == [("interrupted", "xpay"), ("ok", "xpay")]
    assert rows[0].cost_usd == 0 and str(rows[1].cost_usd) == "0.01"


def test_an_interrupted_cell_is_one_line_and_stops_run_all(tmp_path: Path) -> None:
    with LocalServer(tokens_per_second=20) as server:  # ~10 s for 200 words
        path = write_notebook(
            tmp_path / "run_all.ipynb",
            [
                "%load_ext baseten_magic",
                # SIGINT while the next cell streams, as the stop button sends it.
                "import os, signal, threading\n"
                "threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT)).start()",
                "%%baseten --no-memory\n/words 200",
                "print('after the interrupt')",
            ],
        )
        nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
        env = server_env(server) | {"BASETEN_MAGIC_LEDGER": str(tmp_path / "ledger.sqlite3")}
        client = NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=False)
        with pytest.raises(CellExecutionError) as info:
            client.execute(env=kernel_environ(env))
    assert info.value.ename == "KeyboardInterrupt"
    cell = nb.cells[2]
    (traceback,) = _error_lines(cell.outputs)
    assert len(traceback) == 1 and ONE_LINE in traceback[0]
    assert "Traceback" not in "\n".join(traceback)
    assert nb.cells[3].outputs == [] and nb.cells[3].execution_count is None  # Run All stopped
