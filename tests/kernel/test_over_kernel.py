"""`%%baseten --over` in a real ipykernel against a rate-limited loopback server: the progress
display stays bounded in messages, Kernel → Interrupt stops within a second and keeps the rows
done in `-o`, and a re-run sends only the rows still missing (counted at the server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.kernel import KernelSession

from baseten_magic.io.ledger import Ledger
from baseten_magic.server import LocalServer

pytestmark = pytest.mark.kernel

DISPLAYS = ("display_data", "update_display_data")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(latency_s=0.3, max_concurrent=4) as running:
        yield running


@pytest.fixture(scope="module")
def ledger_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("over") / "ledger.sqlite3"


@pytest.fixture(scope="module")
def kernel(server: LocalServer, ledger_file: Path) -> Iterator[KernelSession]:
    env = {
        "BASETEN_BASE_URL": server.url,
        "BASETEN_API_KEY": server.api_key,
        "BASETEN_MAGIC_LEDGER": str(ledger_file),
        "BASETEN_MAGIC_CACHE": str(ledger_file.with_name("cache.sqlite3")),
    }
    with KernelSession(env) as session:
        loaded = session.execute(
            "%load_ext baseten_magic\nimport pandas as pd\n"
            "df = pd.DataFrame({'review': [f'review {i}' for i in range(40)]},\n"
            "                  index=[f'R{i:02}' for i in range(40)])\n"
            "big = pd.DataFrame({'review': [f'long review {i}' for i in range(80)]})",
            timeout=60,
        )
        assert loaded.status == "ok", loaded.outputs
        yield session


def _wait_requests(server: LocalServer, count: int) -> None:
    deadline = time.monotonic() + 20
    while server.stats().requests < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.stats().requests >= count


def test_progress_is_bounded_and_the_result_is_shown(
    kernel: KernelSession, server: LocalServer, ledger_file: Path
) -> None:
    before = server.stats().requests
    started = time.monotonic()
    result = kernel.execute(
        "%%baseten --over df -o out --concurrency 4\n/echo {review} is fine", timeout=120
    )
    wall = time.monotonic() - started
    assert result.status == "ok", result.outputs
    assert server.stats().requests - before == 40
    displays = sum(result.count(kind) for kind in DISPLAYS)
    print(f"\n--over progress: {displays} display messages in {wall:.2f} s")
    assert displays <= 3 * wall + 4, (displays, wall)
    # What stays: the one-line summary, then the first rows as the DataFrame's own HTML.
    plain = result.data("text/plain")
    assert plain[0].startswith("baseten map: 40/40 rows, 40 requests, 0 cached, 0 errors")
    html = result.data("text/html")
    assert any("<table" in h and "R00" in h and "review 0 is fine" in h for h in html)
    assert len(result.outputs) == 2
    rows = [r for r in Ledger(ledger_file).rows() if r.source == "batch"]
    assert len(rows) == 40
    assert {r.cell for r in rows} == {result.execution_count}
    shown = kernel.execute(
        "from baseten_magic.notebook.magics import BasetenMagics\n"
        "m = get_ipython().magics_manager.registry['BasetenMagics']\n"
        "print(m.session.id, len(m.session.rows), list(out.index[:2]), out['answer'].iloc[1])"
    )
    session_id, kept, *rest = shown.stdout.split(" ", 2)
    assert {r.session for r in rows} == {session_id} and kept == "40"
    assert rest[0].startswith("['R00', 'R01'] review 1 is fine")


def test_interrupt_keeps_the_rows_done_and_a_rerun_sends_only_the_rest(
    kernel: KernelSession, server: LocalServer
) -> None:
    cell = "%%baseten --over big -o part --concurrency 4\n/echo {review}"
    before = server.stats().requests
    msg_id = kernel.start_execute(cell)
    _wait_requests(server, before + 12)
    interrupted_at = time.monotonic()
    kernel.interrupt()
    result = kernel.wait(msg_id, timeout=30)
    latency = time.monotonic() - interrupted_at
    sent = server.stats().requests - before
    assert result.status == "error" and result.error_name == "KeyboardInterrupt"
    assert latency <= 1.0, latency
    traceback = result.reply.get("traceback") or []
    assert len(traceback) == 1 and "interrupted by the user after" in traceback[0]
    assert "the rows done are in part (and _baseten)" in traceback[0]
    time.sleep(0.6)
    assert server.stats().requests - before == sent  # nothing sent after the interrupt
    kept = kernel.execute("print(len(part), int(part['answer'].notna().sum()))")
    total, done = map(int, kept.stdout.split())
    assert total == 80 and 8 <= done < 80
    print(f"\n--over interrupt: stopped in {latency:.2f} s, {done} rows kept of {sent} sent")
    again_from = server.stats().requests
    rerun = kernel.execute(cell, timeout=120)
    assert rerun.status == "ok", rerun.outputs
    resent = server.stats().requests - again_from
    print(f"--over re-run: {resent} rows sent, {80 - done} were missing")
    assert resent == 80 - done
    final = kernel.execute(
        "print(int(part['answer'].notna().sum()), part.attrs['baseten']['cached'])"
    )
    assert final.stdout.split() == ["80", str(done)]
