"""Notebook-side hardening, in a real InteractiveShell against the local server on loopback: an
interrupted tool loop keeps its finished rounds, an interrupt ends in one line (not a
traceback), and the panel shows a ledger that cannot be opened instead of dying unseen."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils import capture as _capture

from baseten_magic.core.pricing import format_usd
from baseten_magic.core.stream import Delta
from baseten_magic.io.ledger import Ledger
from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.render.painter import Painter
from baseten_magic.server import LocalServer

capture_output: Callable[..., Any] = _capture.capture_output


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def shell(server: LocalServer, ledger_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server.set_speed(None)
    monkeypatch.setenv("BASETEN_BASE_URL", server.url)
    monkeypatch.setenv("BASETEN_API_KEY", server.api_key)
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(ledger_file))
    ipython: Any = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "baseten_magic")
    yield ipython
    ipython.run_line_magic("unload_ext", "baseten_magic")
    ipython.config.pop("BasetenMagics", None)
    for name in ("_baseten", "R", "get_weather"):
        ipython.user_ns.pop(name, None)


def magics_of(shell: Any) -> BasetenMagics:
    found = shell.magics_manager.registry["BasetenMagics"]
    assert isinstance(found, BasetenMagics)
    return found


def _interrupt_when(monkeypatch: pytest.MonkeyPatch, wanted: Callable[[Delta], bool]) -> None:
    """Make the painter raise KeyboardInterrupt (as SIGINT would, on the cell's thread) at the
    first delta for which `wanted` holds."""
    original = Painter.add

    def add(self: Painter, delta: Delta) -> None:
        original(self, delta)
        if wanted(delta):
            raise KeyboardInterrupt

    monkeypatch.setattr(Painter, "add", add)


# -- an interrupted tool loop keeps every finished round ------------------------------


def test_an_interrupt_in_round_two_keeps_round_one_in_the_result_and_the_session(
    shell: Any, ledger_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    def get_weather(city: str) -> str:
        """The weather in a city."""
        ran.append(city)
        return f"sunny in {city}"

    shell.user_ns["get_weather"] = get_weather
    # Round 2 (the answer to the tool's result) is cut at its first piece of answer text.
    _interrupt_when(monkeypatch, lambda delta: bool(ran) and bool(delta.content))
    with capture_output() as captured, pytest.raises(KeyboardInterrupt):
        shell.run_cell_magic(
            "baseten", "-m gpt-oss --no-memory --tools get_weather --run-tools -o R", "Weather?"
        )
    assert len(ran) == 1  # the tool ran after round 1
    rows = Ledger(ledger_file).rows()
    assert [r.status for r in rows] == ["ok", "interrupted"]
    result = shell.user_ns["R"]
    assert result.status == "interrupted"
    first_round_reasoning = "Stand-in reasoning"
    assert first_round_reasoning in result.reasoning  # round 1's text, as on screen
    assert result.content  # round 2's first piece of answer
    assert result.cost == sum((r.cost_usd for r in rows), Decimal(0))
    assert result.cost > 0
    session = magics_of(shell).session
    assert [(r.status, r.cost_usd) for r in session.rows] == [(r.status, r.cost_usd) for r in rows]
    assert session.cost() == (2, result.cost)
    assert "interrupted" in "\n".join(str(o.data.get("text/plain")) for o in captured.outputs)


def test_the_cost_table_after_an_interrupted_loop_matches_the_ledger(
    shell: Any, ledger_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def get_weather(city: str) -> str:
        """The weather in a city."""
        raise KeyboardInterrupt  # pressed while the tool ran, between the two rounds

    shell.user_ns["get_weather"] = get_weather
    with capture_output(), pytest.raises(KeyboardInterrupt):
        shell.run_cell_magic(
            "baseten", "-m gpt-oss --no-memory --tools get_weather --run-tools -o R", "Weather?"
        )
    (row,) = Ledger(ledger_file).rows()
    assert row.status == "ok" and row.cost_usd > 0
    result = shell.user_ns["R"]
    assert result.status == "interrupted"  # the cell was, though its one call was not
    assert result.cost == row.cost_usd
    assert result.tool_calls  # what round 1 asked for stays visible
    with capture_output() as table:
        shell.run_line_magic("baseten", "cost")
    shown = "\n".join(str(o.data.get("text/plain")) for o in table.outputs)
    assert format_usd(row.cost_usd) in shown  # not $0: the session kept round 1's row


# -- an interrupt is one line, and still an error --------------------------------------


def test_an_interrupt_shows_one_line_and_is_an_error(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[int] = []

    def fifth(delta: Delta) -> bool:  # the fifth piece of answer text
        if delta.content:
            counted.append(1)
        return len(counted) == 5 and bool(delta.content)

    _interrupt_when(monkeypatch, fifth)
    with capture_output() as captured:
        outcome = shell.run_cell("%%baseten -o R\n/words 60")
    assert isinstance(outcome.error_in_exec, KeyboardInterrupt)  # so Run All stops
    assert type(outcome.error_in_exec).__name__ == "KeyboardInterrupt"  # the reply's ename
    printed = [line for line in captured.stdout.splitlines() if line.strip()]
    assert len(printed) == 1, captured.stdout
    assert "KeyboardInterrupt" in printed[0] and "interrupted by the user" in printed[0]
    assert "Traceback" not in captured.stdout + captured.stderr
    assert shell.user_ns["R"].status == "interrupted"
    assert shell.user_ns["R"].content  # the partial answer is kept


# -- the panel and a ledger that cannot be opened -------------------------------------


def test_the_panel_shows_a_ledger_that_cannot_be_opened(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    from baseten_magic.panel.app import Panel

    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(tmp_path))  # a directory
    panel = Panel(magics_of(shell).session)
    try:
        panel.prompt.value = "hello"
        before = server.request_count

        async def go() -> list[Any]:
            panel.send()
            return await panel.wait()

        assert asyncio.run(go()) == []
        shown = str(panel.columns[0].error.value)
        assert "the cost ledger at" in shown and "BASETEN_MAGIC_LEDGER" in shown
        assert "Traceback" not in shown and shown.count("<div") == 1
        assert not panel.streaming and panel.send_button.disabled is False
        assert server.request_count == before  # nothing was sent unlogged
    finally:
        panel.close()
