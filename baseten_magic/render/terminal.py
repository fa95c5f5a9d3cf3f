"""Plain-text streaming for terminal IPython (no rich front end).

Rule: text goes out as it arrives, unthrottled (a terminal appends, it never repaints):
reasoning under a dim "Reasoning" header, then the answer as raw Markdown, then the status mark
and the footer's plain line. ANSI styling only when writing to a TTY and color is not off.

Text from the model or the server never reaches the terminal with control sequences in it: escape
sequences (CSI such as clear-screen, OSC 52 clipboard writes, OSC 8 links, DCS/APC strings),
C1 controls and every C0 control except newline and tab are removed, even when a sequence is
split across deltas. Only this module's own styling codes are written.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from baseten_magic.core.result import ChatResult
from baseten_magic.core.stream import Delta
from baseten_magic.render.bundle import footer_text, status_mark

__all__ = ["ControlStripper", "TerminalPrinter", "strip_controls"]

_DIM = "\x1b[2m"
_BOLD_YELLOW = "\x1b[1;33m"
_RESET = "\x1b[0m"

# Anything that can start or be part of a control sequence; text without it is printed as is.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# An unterminated string sequence (OSC, DCS, ...) stops swallowing text after this many
# characters, so a stray ESC ] cannot hide the rest of an answer.
_MAX_SEQUENCE = 4096
_STRING_STARTS = {"]", "P", "X", "^", "_"}  # after ESC: OSC, DCS, SOS, PM, APC
_C1_STRINGS = {"\x9d", "\x90", "\x98", "\x9e", "\x9f"}  # the same, as C1 controls


class ControlStripper:
    """Removes terminal control sequences from text that arrives in pieces."""

    __slots__ = ("_length", "_state")

    def __init__(self) -> None:
        self._state = "text"  # text | esc | csi | string | string_esc
        self._length = 0  # characters swallowed by the current sequence

    def feed(self, text: str) -> str:
        """The printable part of `text`, given what came before it."""
        if self._state == "text" and _UNSAFE.search(text) is None:
            return text
        out: list[str] = []
        for char in text:
            state = self._state
            if state == "text":
                if char == "\x1b":
                    self._enter("esc")
                elif char == "\x9b":
                    self._enter("csi")
                elif char in _C1_STRINGS:
                    self._enter("string")
                elif char in "\n\t" or not _UNSAFE.match(char):
                    out.append(char)
                continue
            self._length += 1
            if state == "esc":
                if char == "[":
                    self._state = "csi"
                elif char in _STRING_STARTS:
                    self._state = "string"
                else:
                    self._state = "text"  # a two-character escape (ESC c resets the terminal)
            elif state == "csi":
                if "\x40" <= char <= "\x7e" or self._length > 64:
                    self._state = "text"  # the final byte ends it
            elif state == "string":
                if char in ("\x07", "\x9c") or self._length > _MAX_SEQUENCE:
                    self._state = "text"  # BEL or ST ends it
                elif char == "\x1b":
                    self._state = "string_esc"
            else:  # string_esc: ESC \ is ST; anything else stays inside the string
                self._state = "text" if char == "\\" else "string"
        return "".join(out)

    def _enter(self, state: str) -> None:
        self._state = state
        self._length = 0


def strip_controls(text: str) -> str:
    """`text` without terminal control sequences (newlines and tabs kept)."""
    return ControlStripper().feed(text)


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
        self._clean_reasoning = ControlStripper()
        self._clean_content = ControlStripper()

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
            self._write(self._style(self._clean_reasoning.feed(delta.reasoning), _DIM))
        if delta.content:
            self._start_answer()
            self._content += delta.content
            self._write(self._clean_content.feed(delta.content))

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
                lines.append(strip_controls(plain))
        mark = status_mark(result)
        if mark is not None:
            lines.append(self._style(strip_controls(mark), _BOLD_YELLOW))
        # The footer holds the server's model name: text from outside, stripped too.
        footer = footer_text(result, pricing_mode=pricing_mode, notes=notes)
        lines.append(self._style(strip_controls(footer), _DIM))
        ending = "" if not self._content or self._content.endswith("\n") else "\n"
        self._write(ending + "\n".join(lines) + "\n")
