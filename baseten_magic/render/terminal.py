"""Plain-text streaming for terminal IPython (no rich front end).

Rule: text goes out as it arrives, unthrottled (a terminal appends, it never repaints):
reasoning under a dim "Reasoning" header, then the answer as raw Markdown, then the status mark
and the footer's plain line. ANSI styling only when writing to a TTY and color is not off.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from baseten_magic.core.result import ChatResult
from baseten_magic.core.stream import Delta
from baseten_magic.render.bundle import footer_text, status_mark

__all__ = ["TerminalPrinter"]

_DIM = "\x1b[2m"
_BOLD_YELLOW = "\x1b[1;33m"
_RESET = "\x1b[0m"


class TerminalPrinter:
    """Prints a streaming answer as readable plain text; same calls as `Painter`."""

    def __init__(self, stream: TextIO | None = None, color: bool | None = None) -> None:
        # Resolved at construction, not import, so a redirected sys.stdout is honoured.
        self._stream = sys.stdout if stream is None else stream
        if color is None:
            isatty = getattr(self._stream, "isatty", None)
            color = bool(isatty()) if callable(isatty) else False
        self._color = color
        self._reasoning = ""
        self._content = ""
        self._in_reasoning = False
        self._finished = False

    def _style(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self._color and text else text

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def add(self, delta: Delta) -> None:
        """Print the delta's reasoning (dim, under a header) or answer text as it arrives."""
        if delta.reasoning:
            if not self._reasoning:
                self._write(self._style("Reasoning", _DIM) + "\n")
            self._in_reasoning = True
            self._reasoning += delta.reasoning
            self._write(self._style(delta.reasoning, _DIM))
        if delta.content:
            self._start_answer()
            self._content += delta.content
            self._write(delta.content)

    def _start_answer(self) -> None:
        if self._in_reasoning:
            # Close the reasoning with a blank line before the answer begins.
            ending = "\n" if self._reasoning.endswith("\n") else "\n\n"
            self._write(ending)
            self._in_reasoning = False

    def tick(self) -> None:
        """Nothing to do: a terminal prints each delta as it arrives."""

    def next_deadline(self) -> float | None:
        """Always None: nothing is ever pending."""
        return None

    def finish(
        self,
        result: ChatResult,
        *,
        pricing_mode: str,
        extra: Sequence[Mapping[str, Any]] = (),
        notes: Sequence[str] = (),
    ) -> None:
        """Print what the deltas did not carry, then a blank line, the status mark and footer."""
        if self._finished:
            return
        self._finished = True
        # Without streaming the result holds the whole text; print whatever was not printed
        # (reasoning only while it can still come before the answer).
        if (
            not self._content
            and result.reasoning.startswith(self._reasoning)
            and len(result.reasoning) > len(self._reasoning)
        ):
            self.add(Delta(reasoning=result.reasoning[len(self._reasoning) :]))
        if result.content.startswith(self._content) and len(result.content) > len(self._content):
            self.add(Delta(content=result.content[len(self._content) :]))
        self._start_answer()
        lines = [""]
        for bundle in extra:
            plain = bundle.get("text/plain")
            if isinstance(plain, str) and plain:
                lines.append(plain)
        mark = status_mark(result)
        if mark is not None:
            lines.append(self._style(mark, _BOLD_YELLOW))
        lines.append(self._style(footer_text(result, pricing_mode=pricing_mode, notes=notes), _DIM))
        ending = "" if not self._content or self._content.endswith("\n") else "\n"
        self._write(ending + "\n".join(lines) + "\n")
