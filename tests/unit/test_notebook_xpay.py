"""The xpay route from the notebook: a `%%baseten --route xpay` cell and the panel's Send, with
the real `mcp` client against the local MCP stand-in on loopback (nothing here was checked
against the reseller itself)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils import capture as _capture

from baseten_magic.core.result import ChatResult
from baseten_magic.io.ledger import Ledger
from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.server.xpay import LocalMCPServer

pytest.importorskip("mcp")

capture_output: Callable[..., Any] = _capture.capture_output

KEY = "xpay-notebook-key-4c1d9e7a2b"
GPT = "openai/gpt-oss-120b"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalMCPServer]:
    with LocalMCPServer(key=KEY) as running:
        yield running


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def shell(
    server: LocalMCPServer, ledger_file: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    server.set_speed(None)
    server.progress_every = None
    monkeypatch.setenv("XPAY_MCP_URL", server.url)
    monkeypatch.setenv("XPAY_KEY", KEY)
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(ledger_file))
    ipython: Any = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "baseten_magic")
    yield ipython
    ipython.run_line_magic("unload_ext", "baseten_magic")
    ipython.config.pop("BasetenMagics", None)
    for name in ("_baseten", "answer"):
        ipython.user_ns.pop(name, None)


def magics_of(shell: Any) -> BasetenMagics:
    found = shell.magics_manager.registry["BasetenMagics"]
    assert isinstance(found, BasetenMagics)
    return found


def texts(captured: Any) -> list[str]:
    """Every text/plain an output or an update carried, in order."""
    return [str(output.data.get("text/plain", "")) for output in captured.outputs]


def everything(captured: Any) -> str:
    shown = [captured.stdout, captured.stderr]
    shown += [str(value) for output in captured.outputs for value in output.data.values()]
    return "\n".join(shown)


def test_a_cell_on_route_xpay_is_answered_priced_per_call_and_logged(
    shell: Any, server: LocalMCPServer, ledger_file: Path
) -> None:
    with capture_output() as captured:
        shell.run_cell_magic("baseten", "--route xpay -o answer", "/echo Hello over MCP")
        shell.run_line_magic("baseten", "cost")
    answer = shell.user_ns["answer"]
    assert isinstance(answer, ChatResult)
    assert (answer.status, answer.content) == ("ok", "Hello over MCP")
    assert answer.cost == Decimal("0.01")
    assert server.arguments[-1]["model"] == GPT
    (row,) = Ledger(ledger_file).rows()
    assert (row.route, row.pricing_mode, row.cost_usd, row.source) == (
        "xpay",
        "per_call",
        Decimal("0.01"),
        "magic",
    )
    (kept,) = magics_of(shell).session.rows
    assert (kept.route, kept.pricing_mode, kept.cost_usd) == ("xpay", "per_call", Decimal("0.01"))
    shown = everything(captured)
    assert "Hello over MCP" in shown
    assert "$0.01" in shown  # the footer and the cost table
    assert KEY not in shown
    assert KEY not in repr(answer) and KEY not in repr(row)


def test_the_route_trait_sends_every_cell_the_xpay_way(
    shell: Any, server: LocalMCPServer, ledger_file: Path
) -> None:
    shell.run_line_magic("config", 'BasetenMagics.route = "xpay"')
    before = len(server.arguments)
    with capture_output():
        shell.run_cell_magic("baseten", "--no-memory", "/echo via the trait")
    assert shell.user_ns["_baseten"].content == "via the trait"
    assert len(server.arguments) == before + 1
    assert Ledger(ledger_file).rows()[-1].route == "xpay"


def test_a_slow_answer_shows_a_live_waiting_line_with_progress(
    shell: Any, server: LocalMCPServer
) -> None:
    server.set_speed(40)  # about 2.5 s for this answer, sent whole at the end
    server.progress_every = 0.4
    with capture_output() as captured:
        shell.run_cell_magic("baseten", "--route xpay --no-memory -o answer", "/words 80")
    answer = shell.user_ns["answer"]
    assert answer.status == "ok" and len(answer.content.split()) >= 60
    shown = texts(captured)
    waiting = [text for text in shown if text.startswith("waiting for the answer")]
    seconds = {int(m.group(1)) for t in waiting if (m := re.search(r"… (\d+) s", t))}
    assert {0, 1, 2} <= seconds  # repainted as the seconds pass, while no byte of it arrived
    assert any("generating (report" in text for text in waiting)  # MCP progress reports
    assert len(waiting) == len(set(waiting))  # resent only when its text changes
    # Once the answer is there the line is blanked, and the answer is painted below it.
    first = shown.index(waiting[0])
    assert "" in shown[first + 1 :]
    assert answer.content.split()[0] in "\n".join(shown)


# -- the panel on the route ---------------------------------------------------------------------


@pytest.fixture
def magics(shell: Any) -> BasetenMagics:
    return magics_of(shell)


def test_the_panels_send_on_the_xpay_route(
    magics: BasetenMagics, server: LocalMCPServer, ledger_file: Path
) -> None:
    from baseten_magic.panel.app import Panel

    magics.route = "xpay"
    panel = Panel(magics.session)
    try:
        panel.prompt.value = "/echo the panel over MCP"

        async def go() -> list[ChatResult]:
            panel.send_button.click()
            return await panel.wait()

        (result,) = asyncio.run(go())
        assert (result.status, result.content) == ("ok", "the panel over MCP")
        assert result.cost == Decimal("0.01")
        surface = panel.columns[0].surface
        assert "the panel over MCP" in surface.text
        assert "$0.01" in surface.text  # the footer, priced per call
        assert panel.columns[0].error.value == ""
        row = Ledger(ledger_file).rows()[-1]
        assert (row.route, row.source, row.cost_usd) == ("xpay", "panel", Decimal("0.01"))
        assert magics.session.rows[-1].route == "xpay"
        assert "$0.01" in panel.cost.value
        assert KEY not in surface.html and KEY not in panel.cost.value
    finally:
        panel.close()
