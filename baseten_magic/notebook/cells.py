"""Cell text → chat messages.

Rule: a plain cell is one user message. A line that is exactly `@system`, `@user` or
`@assistant` (any case, surrounding spaces allowed) starts a new message with that role; text
before the first marker is a user message. Write `\\@user` at the start of a line for a literal
`@user` line. A message with no text is an error, and so is an empty cell.

    %%baseten
    @system
    You answer in one sentence.
    @user
    What is a monad?
    @assistant
    A monoid in the category of endofunctors.
    @user
    Say it for a five-year-old.

A `@system` block that opens the cell is the system prompt for this cell, replacing
`--system` / `BasetenMagics.system`; a `@system` block later in the cell stays where it is
written (and still replaces the default one). Blank lines around each message are dropped; the
text inside is kept exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from baseten_magic.core.errors import ParameterError

ROLES = ("system", "user", "assistant")

_MARKER = re.compile(r"^[ \t]*@(system|user|assistant)[ \t]*$", re.IGNORECASE)
# A marker written with one or more leading backslashes: drop one backslash, keep the line.
_ESCAPED = re.compile(r"^([ \t]*)\\(\\*@(?:system|user|assistant)[ \t]*)$", re.IGNORECASE)

Message = dict[str, str]


@dataclass(frozen=True)
class ParsedCell:
    """A cell's messages: its leading `@system` block (if any) and everything after it."""

    system: str | None
    messages: tuple[Message, ...]
    has_system_block: bool = False

    def request_messages(self, default_system: str = "") -> list[Message]:
        """System message (the cell's, else the default when non-empty) + the cell's messages."""
        out: list[Message] = []
        system = self.system_prompt(default_system)
        if system:
            out.append({"role": "system", "content": system})
        out.extend(dict(m) for m in self.messages)
        return out

    def system_prompt(self, default_system: str = "") -> str:
        """The system prompt this cell runs with: a cell `@system` block wins over the default."""
        if self.system is not None:
            return self.system
        return "" if self.has_system_block else default_system


def parse_cell(text: str) -> ParsedCell:
    """Split a cell body into messages by role markers; raises ParameterError when empty."""
    if not text.strip():
        raise ParameterError(
            "the cell is empty: expected a prompt below %%baseten; type the question to ask"
        )
    blocks: list[tuple[str, list[str], int]] = []  # (role, lines, line number of the marker)
    role, start = "user", 0
    lines: list[str] = []
    implicit = True  # the text before the first marker
    for number, line in enumerate(text.splitlines(), start=1):
        match = _MARKER.match(line)
        if match:
            if not implicit or _has_text(lines):
                blocks.append((role, lines, start))
            role, lines, start, implicit = match.group(1).lower(), [], number, False
            continue
        escaped = _ESCAPED.match(line)
        lines.append(escaped.group(1) + escaped.group(2) if escaped else line)
    if not implicit or _has_text(lines):
        blocks.append((role, lines, start))

    messages: list[Message] = []
    for role, body, start in blocks:
        content = _trim(body)
        if not content.strip():
            raise ParameterError(
                f"the @{role} message on line {start} is empty: expected text below the marker; "
                f"add text or remove the marker (write \\@{role} for a literal line)"
            )
        messages.append({"role": role, "content": content})

    has_system = any(m["role"] == "system" for m in messages)
    system: str | None = None
    if messages and messages[0]["role"] == "system":
        system = messages.pop(0)["content"]
    if not messages:
        raise ParameterError(
            "the cell holds only a @system block: expected a @user message after it; "
            "add the question to ask"
        )
    return ParsedCell(system=system, messages=tuple(messages), has_system_block=has_system)


def _has_text(lines: list[str]) -> bool:
    return any(line.strip() for line in lines)


def _trim(lines: list[str]) -> str:
    """Drop blank lines at both ends and trailing spaces at the end; keep indentation inside."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end]).rstrip()
