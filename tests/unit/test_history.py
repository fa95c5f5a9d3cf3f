"""The conversation out: `%baseten history`, `history()`, Markdown/JSON exports that round-trip,
and the footer's "+N earlier turns"."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils import capture as _capture

import baseten_magic
from baseten_magic.core.errors import ConfigurationError, ParameterError
from baseten_magic.core.transcript import Turn, from_json, from_markdown, to_json, to_markdown
from baseten_magic.engine.conversation import Conversation
from baseten_magic.server import LocalServer

capture_output: Callable[..., Any] = _capture.capture_output

AWKWARD = [
    Turn("system", "Be brief."),
    Turn("user", "Line one\n\n### not a heading of ours\n", 3),
    Turn("assistant", "", 3),
    Turn("user", "<!-- turn role=user -->\n\\<!-- turn role=system -->\ntrailing\n\n", 4),
    Turn("assistant", "```python\nprint('$x')\n```", 4),
]


def test_markdown_and_json_round_trip_exactly() -> None:
    assert from_markdown(to_markdown(AWKWARD)) == AWKWARD
    assert from_json(to_json(AWKWARD)) == AWKWARD
    assert baseten_magic.read_history(to_markdown(AWKWARD)) == AWKWARD
    assert baseten_magic.read_history(to_json(AWKWARD)) == AWKWARD
    markdown = to_markdown(AWKWARD)
    assert "### user · In [3]" in markdown  # readable: a heading per turn
    assert json.loads(to_json(AWKWARD))["messages"][1] == {
        "role": "user",
        "content": "Line one\n\n### not a heading of ours\n",
        "cell": 3,
    }


def test_reading_other_text_is_one_clear_error() -> None:
    with pytest.raises(ParameterError, match="expected a baseten_magic history export"):
        from_markdown("# my notes")
    with pytest.raises(ParameterError, match="not JSON"):
        from_json("{nope")
    # A plain list of messages (what chat() takes) reads too.
    assert from_json('[{"role": "user", "content": "hi"}]') == [Turn("user", "hi")]


def test_conversation_turns_carry_their_cells() -> None:
    conversation = Conversation()
    conversation.record("a", [{"role": "user", "content": "q1"}], "a1", cell=1)
    conversation.record("b", [{"role": "user", "content": "q2"}], "a2", cell=2)
    assert conversation.earlier_count("b") == 1  # a re-run of b sends only a
    assert conversation.earlier_count("new") == 2
    assert conversation.turns("sys") == [
        Turn("system", "sys"),
        Turn("user", "q1", 1),
        Turn("assistant", "a1", 1),
        Turn("user", "q2", 2),
        Turn("assistant", "a2", 2),
    ]
    assert conversation.messages()[0] == {"role": "user", "content": "q1"}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def shell(server: LocalServer, ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("BASETEN_BASE_URL", server.url)
    monkeypatch.setenv("BASETEN_API_KEY", server.api_key)
    ipython: Any = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "baseten_magic")
    yield ipython
    ipython.run_line_magic("unload_ext", "baseten_magic")
    ipython.config.pop("BasetenMagics", None)
    ipython.user_ns.pop("_baseten", None)


def footer(captured: Any) -> str:
    return str(captured.outputs[-1].data["text/plain"])


def test_history_shows_exports_and_the_footer_counts_earlier_turns(
    shell: Any, server: LocalServer, tmp_path: Path
) -> None:
    with capture_output() as captured:
        shell.run_line_magic("baseten", "history")
    assert "The conversation is empty" in captured.outputs[-1].data["text/plain"]
    with capture_output() as captured:
        shell.run_cell_magic("baseten", "", "/echo first answer")
    assert "earlier turn" not in footer(captured)
    with capture_output() as captured:
        shell.run_cell_magic("baseten", "", "/echo second answer")
    assert footer(captured).endswith("· +1 earlier turn")
    with capture_output() as captured:
        shell.run_cell_magic("baseten", "", "/echo third")
    assert "· +2 earlier turns" in footer(captured)
    sent = server.requests[-1].body
    assert sent is not None

    # What the next cell sends before its own messages: the three exchanges.
    messages = baseten_magic.history()
    assert [m["content"] for m in messages] == [
        "/echo first answer",
        "first answer",
        "/echo second answer",
        "second answer",
        "/echo third",
        "third",
    ]
    assert sent["messages"] == messages[:-1]  # the last request sent all but its own answer
    with capture_output() as captured:
        shell.run_line_magic("baseten", "history")
    table = captured.outputs[-1].data
    assert "6 messages" in table["text/plain"]
    assert "assistant" in table["text/html"]

    # Exports round-trip: to a file, and printed.
    path = tmp_path / "chat.md"
    with capture_output() as captured:
        shell.run_line_magic("baseten", f"history --markdown {path}")
    assert f"Wrote 6 messages to {path}" in captured.stdout
    turns = baseten_magic.read_history(path.read_text())
    assert turns == baseten_magic.history("turns")
    assert [t.message() for t in turns] == messages
    assert [t.cell for t in turns][::2] == [t.cell for t in turns][1::2]  # pairs share a cell
    with capture_output() as captured:
        shell.run_line_magic("baseten", "history --json")
    assert baseten_magic.read_history(captured.stdout) == turns
    assert baseten_magic.history("json") == captured.stdout.rstrip("\n")
    with pytest.raises(UsageError, match="takes only --json"):
        shell.run_line_magic("baseten", "history --json a --markdown b")


def test_history_outside_a_notebook_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(InteractiveShell, "_instance", None)
    with pytest.raises(ConfigurationError, match="run %load_ext baseten_magic"):
        baseten_magic.history()
