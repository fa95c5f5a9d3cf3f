"""The panel in a real kernel: it streams on the kernel's event loop while other cells run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.kernel import KernelSession

from baseten_magic.server import LocalServer

pytestmark = pytest.mark.kernel

SETUP = """\
%load_ext baseten_magic
from baseten_magic.panel.app import Panel
panel = Panel()
panel.prompt.value = "What is the capital of France?"
panel.send()
print("sent", panel.streaming)
"""


@pytest.fixture(scope="module")
def slow_server() -> Iterator[LocalServer]:
    # Slow enough that the answer takes seconds: the next cell runs while it streams.
    with LocalServer(tokens_per_second=50) as server:
        yield server


@pytest.fixture
def kernel(slow_server: LocalServer, tmp_path: Path) -> Iterator[KernelSession]:
    env = {
        "BASETEN_BASE_URL": slow_server.url,
        "BASETEN_API_KEY": slow_server.api_key,
        "BASETEN_MAGIC_LEDGER": str(tmp_path / "ledger.sqlite3"),
    }
    with KernelSession(env, cwd=tmp_path) as session:
        yield session


def test_other_cells_run_while_the_panel_streams(kernel: KernelSession) -> None:
    first = kernel.execute(SETUP)
    assert first.status == "ok", first.stderr
    assert first.stdout.strip() == "sent True"
    # The widgets reached the front end as comm messages.
    assert first.count("comm_open") > 0

    second = kernel.execute("print(panel.streaming)")
    assert second.status == "ok", second.stderr
    assert second.stdout.strip() == "True"

    third = kernel.execute(
        "results = await panel.wait()\n"
        "r = results[0]\n"
        "print(r.status, r.finish_reason, panel.streaming)\n"
        "print(r.content[-40:] in panel.columns[0].surface.text)\n"
        "print('bm-footer' in panel.columns[0].surface.html)\n",
        timeout=120,
    )
    assert third.status == "ok", third.stderr
    assert third.stdout.split("\n")[:3] == ["ok stop False", "True", "True"]


def test_stop_from_another_cell_interrupts_the_stream(kernel: KernelSession) -> None:
    first = kernel.execute(SETUP)
    assert first.status == "ok", first.stderr
    stopped = kernel.execute(
        "panel.stop_button.click()\n"
        "results = await panel.wait()\n"
        "print(results[0].status, panel.session.ledger.rows()[-1].status)\n"
        "print('interrupted' in panel.columns[0].surface.html)\n",
        timeout=30,
    )
    assert stopped.status == "ok", stopped.stderr
    assert stopped.stdout.split("\n")[:2] == ["interrupted interrupted", "True"]


def test_a_saved_panel_exports_as_a_readable_line(tmp_path: Path) -> None:
    import re

    import nbformat
    from harness.kernel import run_notebook, write_notebook
    from nbconvert import HTMLExporter

    from baseten_magic.panel.app import SAVED_TEXT

    path = write_notebook(tmp_path / "panel.ipynb", ["%load_ext baseten_magic\n%baseten panel"])
    executed = run_notebook(path)
    # nbclient saves the widget state, so nbconvert renders the widget view, not its text.
    assert "widgets" in executed.metadata
    nbformat.write(executed, path)  # type: ignore[no-untyped-call]
    body, _ = HTMLExporter().from_filename(str(path))  # type: ignore[no-untyped-call]
    line = re.search(r'<div class="bm-panel-saved"[^>]*>([^<]*)</div>', body)
    assert line is not None and line.group(1) == SAVED_TEXT
