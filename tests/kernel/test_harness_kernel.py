"""The real-kernel harness: IOPub traffic is counted, display updates applied, interrupts work."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from harness import server_env
from harness.kernel import (
    IOPubMessage,
    KernelSession,
    OutputCollector,
    kernel_environ,
    run_notebook,
    write_notebook,
)

if TYPE_CHECKING:
    from baseten_magic.server import LocalServer

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def kernel() -> Iterator[KernelSession]:
    """One kernel for this module: starting one costs about a second."""
    with KernelSession({"HARNESS_MARKER": "from-test"}) as session:
        yield session


def test_print_is_one_stream_message(kernel: KernelSession) -> None:
    result = kernel.execute("print(1)")
    assert result.status == "ok"
    assert result.stdout == "1\n"
    assert result.count("stream") == 1
    assert result.counts["status"] == 2  # busy, then idle
    assert result.outputs == ({"output_type": "stream", "name": "stdout", "text": "1\n"},)
    assert result.nbytes("stream") == len('{"name": "stdout", "text": "1\\n"}')
    assert result.nbytes() > result.nbytes("stream")


def test_env_reaches_the_kernel(kernel: KernelSession) -> None:
    result = kernel.execute("import os; print(os.environ['HARNESS_MARKER'])")
    assert result.stdout == "from-test\n"


def test_real_keys_never_reach_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASETEN_API_KEY", "real-key")
    env = kernel_environ({"BASETEN_BASE_URL": "http://127.0.0.1:1/v1"})
    assert "BASETEN_API_KEY" not in env
    assert env["BASETEN_BASE_URL"] == "http://127.0.0.1:1/v1"


def test_display_updates_are_applied_like_a_front_end(kernel: KernelSession) -> None:
    code = (
        "h = display('first', display_id=True)\n"
        "display('other')\n"
        "h.update('second')\n"
        "h.update('third')\n"
    )
    result = kernel.execute(code)
    assert result.status == "ok"
    assert result.count("display_data") == 2
    assert result.count("update_display_data") == 2
    assert result.data() == ["'third'", "'other'"]
    assert all("transient" not in out for out in result.outputs)
    assert result.nbytes("update_display_data") > 0


def test_clear_output_wait_defers_the_clear() -> None:
    collector = OutputCollector()

    def msg(kind: str, **content: object) -> IOPubMessage:
        return IOPubMessage(kind, content, 0)

    collector.apply(msg("stream", name="stdout", text="a"))
    collector.apply(msg("clear_output", wait=True))
    assert len(collector.outputs) == 1
    collector.apply(msg("stream", name="stdout", text="b"))
    assert collector.outputs == [{"output_type": "stream", "name": "stdout", "text": "b"}]
    collector.apply(msg("clear_output", wait=False))
    assert collector.outputs == []


def test_error_reply_and_output(kernel: KernelSession) -> None:
    result = kernel.execute("1/0")
    assert result.status == "error"
    assert result.error_name == "ZeroDivisionError"
    assert [o["output_type"] for o in result.outputs] == ["error"]


def test_interrupt_stops_a_sleeping_cell_and_the_next_cell_runs(kernel: KernelSession) -> None:
    msg_id = kernel.start_execute("print('started', flush=True)\nimport time\ntime.sleep(30)")
    kernel.wait_for(msg_id, lambda m: m.msg_type == "stream", timeout=30)
    kernel.interrupt()
    # Well under the 30 s sleep: the interrupt, not the sleep, ended the cell.
    result = kernel.wait(msg_id, timeout=10)
    assert result.status == "error"
    assert result.error_name == "KeyboardInterrupt"
    assert result.stdout == "started\n"  # the message wait_for saw is still recorded
    after = kernel.execute("print('next')", timeout=10)
    assert after.stdout == "next\n"


def test_run_notebook_passes_env_and_returns_outputs(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "demo.ipynb",
        [
            "import os\nprint(os.environ['HARNESS_MARKER'])",
            "from pathlib import Path\nPath.cwd().name",
        ],
    )
    out = run_notebook(path, env={"HARNESS_MARKER": "nb"}, timeout=60)
    assert out.cells[0].outputs[0]["text"] == "nb\n"
    assert out.cells[1].outputs[0]["data"]["text/plain"] == repr(tmp_path.name)


def test_fixtures_point_a_fresh_kernel_at_the_local_server(
    local_server: LocalServer, ledger_path: Path
) -> None:
    assert os.environ["BASETEN_BASE_URL"] == local_server.url
    assert os.environ["BASETEN_MAGIC_LEDGER"] == str(ledger_path)
    code = (
        "import os, httpx\n"
        "r = httpx.post(os.environ['BASETEN_BASE_URL'] + '/chat/completions',\n"
        "    headers={'Authorization': 'Bearer ' + os.environ['BASETEN_API_KEY']},\n"
        "    json={'model': 'openai/gpt-oss-120b', 'max_tokens': 8,\n"
        "          'messages': [{'role': 'user', 'content': 'hi'}]})\n"
        "print(r.status_code, r.json()['object'])"
    )
    # A kernel of its own: the environment is fixed when a kernel starts.
    with KernelSession(server_env(local_server)) as kernel:
        result = kernel.execute(code, timeout=30)
    assert result.stdout == "200 chat.completion\n", result.outputs
    assert local_server.request_count == 1
