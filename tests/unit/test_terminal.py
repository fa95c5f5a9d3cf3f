"""render.terminal: readable plain text for terminal IPython, ANSI only on a TTY."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest

from baseten_magic.core.result import ChatResult, Usage
from baseten_magic.core.stream import Delta
from baseten_magic.render.terminal import TerminalPrinter


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _result(**changes: object) -> ChatResult:
    base: dict[str, object] = {
        "content": "# Answer\nIt is **42**.",
        "reasoning": "Think. Then answer.",
        "model": "zai-org/GLM-4.7",
        "usage": Usage(prompt_tokens=10, completion_tokens=20, reasoning_tokens=5),
        "cost": Decimal("0.0000500"),
        "ttft_s": 0.25,
        "latency_s": 1.25,
    }
    base.update(changes)
    return ChatResult(**base)  # type: ignore[arg-type]


def _stream(printer: TerminalPrinter) -> None:
    for piece in ("Think.", " Then answer."):
        printer.add(Delta(reasoning=piece))
    for piece in ("# Answer\n", "It is ", "**42**."):
        printer.add(Delta(content=piece))
        printer.tick()


def test_plain_output_has_reasoning_answer_and_footer() -> None:
    out = io.StringIO()
    printer = TerminalPrinter(out)
    _stream(printer)
    printer.finish(_result(), pricing_mode="per_token")
    assert out.getvalue() == (
        "Reasoning\n"
        "Think. Then answer.\n"
        "\n"
        "# Answer\n"
        "It is **42**.\n"
        "\n"
        "zai-org/GLM-4.7 · 10 in / 20 out (5 reasoning) · $0.00005 · TTFT 0.25 s · total 1.25 s"
        " · 20.0 tok/s\n"
    )
    assert "\x1b[" not in out.getvalue()


def test_text_is_written_as_it_arrives() -> None:
    out = io.StringIO()
    printer = TerminalPrinter(out, color=False)
    printer.add(Delta(content="Hel"))
    assert out.getvalue() == "Hel"
    printer.add(Delta(content="lo"))
    assert out.getvalue() == "Hello"
    assert printer.next_deadline() is None


def test_tty_gets_dim_reasoning_and_footer() -> None:
    out = _Tty()
    printer = TerminalPrinter(out)
    _stream(printer)
    printer.finish(_result(), pricing_mode="per_token")
    text = out.getvalue()
    assert text.startswith("\x1b[2mReasoning\x1b[0m\n\x1b[2mThink.\x1b[0m")
    assert "\n# Answer\nIt is **42**." in text  # the answer itself is never styled
    assert text.rstrip("\n").endswith("tok/s\x1b[0m")


def test_color_false_wins_over_a_tty() -> None:
    out = _Tty()
    printer = TerminalPrinter(out, color=False)
    _stream(printer)
    printer.finish(_result(), pricing_mode="per_token")
    assert "\x1b[" not in out.getvalue()


@pytest.mark.parametrize(
    ("status", "error", "mark"),
    [
        ("interrupted", None, "■ interrupted — partial answer"),
        ("error", "connection reset", "⚠ error: connection reset"),
    ],
)
def test_status_mark_precedes_the_footer(status: str, error: str | None, mark: str) -> None:
    out = io.StringIO()
    printer = TerminalPrinter(out)
    printer.add(Delta(content="partial"))
    printer.finish(_result(content="partial", status=status, error=error), pricing_mode="per_token")
    lines = out.getvalue().splitlines()
    assert lines[0] == "partial"
    assert lines[1] == ""
    assert lines[2] == mark
    assert lines[3].startswith("zai-org/GLM-4.7 · ")


def test_without_streaming_finish_prints_the_whole_result() -> None:
    out = io.StringIO()
    printer = TerminalPrinter(out)
    printer.finish(_result(reasoning=""), pricing_mode="per_call")
    text = out.getvalue()
    assert text.startswith("# Answer\nIt is **42**.\n\n")
    assert "Reasoning" not in text
    assert "per call" in text


def test_extra_plain_text_is_printed_before_the_footer() -> None:
    out = io.StringIO()
    printer = TerminalPrinter(out)
    printer.add(Delta(content="done\n"))
    extra = {"text/html": "<b>x</b>", "text/plain": "Tool calls:\n→ f({})"}
    printer.finish(_result(content="done\n", reasoning=""), pricing_mode="per_token", extra=[extra])
    assert out.getvalue().startswith("done\n\nTool calls:\n→ f({})\nzai-org")


def test_finish_twice_prints_once() -> None:
    out = io.StringIO()
    printer = TerminalPrinter(out)
    printer.finish(_result(), pricing_mode="per_token")
    first = out.getvalue()
    printer.finish(_result(), pricing_mode="per_token")
    assert out.getvalue() == first


HOSTILE = [
    "\x1b]52;c;ZWNobyBwd25lZA==\x07",  # OSC 52: write the clipboard (BEL-terminated)
    "\x1b]52;c;ZWNobw==\x1b\\",  # the same, ST-terminated
    "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 link
    "\x1b[2J\x1b[H",  # clear screen, cursor home
    "\x1bc",  # full reset
    "\x9b2J",  # CSI as a C1 control
    "\x9d52;c;eA==\x9c",  # OSC as a C1 control, C1 ST
    "\x1bP1$qm\x1b\\",  # DCS
    "\x07\x08\r\x00\x7f",  # BEL, backspace, CR, NUL, DEL
]


@pytest.mark.parametrize("attack", HOSTILE)
@pytest.mark.parametrize("piece", [1, 3, 1000])
def test_control_sequences_never_reach_the_terminal(attack: str, piece: int) -> None:
    out = io.StringIO()
    printer = TerminalPrinter(out, color=False)
    text = f"safe {attack}text\tand\nmore"
    # Split anywhere, also inside a sequence, as deltas may be.
    pieces = [text[start : start + piece] for start in range(0, len(text), piece)]
    for part in pieces:
        printer.add(Delta(reasoning=part))
    for part in pieces:
        printer.add(Delta(content=part))
    printer.finish(
        ChatResult(content=text, reasoning=text, model=f"m{attack}"), pricing_mode="per_token"
    )
    written = out.getvalue()
    assert not [c for c in written if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0]
    assert "safe " in written and "text\tand\nmore" in written


def test_an_unterminated_sequence_does_not_hide_the_rest_of_the_answer() -> None:
    out = io.StringIO()
    printer = TerminalPrinter(out, color=False)
    printer.add(Delta(content="start \x1b]0;title"))
    printer.add(Delta(content="x" * 5000 + " the end"))
    assert out.getvalue().endswith(" the end")
