"""A conversation written out: turns (role, text, cell of origin) to Markdown or JSON and back.

Rule: an export reads back to exactly the turns that were written (`from_markdown(to_markdown(t))
== t`, the same for JSON), so a conversation can be saved, diffed, edited and sent again. The
Markdown is meant to be read: a heading per turn (role and `In [n]`) above the text as it was.
Each turn opens with an HTML comment that carries its role and cell (invisible once rendered),
which is what the reader splits on; a line of text that looks like one is written with a
backslash before it and read back without.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from baseten_magic.core.budget import estimate_tokens
from baseten_magic.core.errors import ParameterError

__all__ = ["FORMAT", "Turn", "from_json", "from_markdown", "read", "to_json", "to_markdown"]

#: The format's name and version, in both exports' headers.
FORMAT = "baseten_magic.history/1"
_HEADER = f"<!-- {FORMAT} -->"
_MARKER = re.compile(r"^<!-- turn role=([a-z_]+)(?: cell=(\d+))? -->$", re.MULTILINE)
# A text line that would read as a marker (or as an escaped one) gets one more backslash.
_LOOKS_LIKE_MARKER = re.compile(r"^(\\*)(<!-- turn role=)", re.MULTILINE)
_ESCAPED = re.compile(r"^\\(\\*<!-- turn role=)", re.MULTILINE)


@dataclass(frozen=True)
class Turn:
    """One message of a conversation, with the cell (`In [n]`) it came from when known."""

    role: str
    content: str
    cell: int | None = None

    @property
    def tokens(self) -> int:
        """A generous estimate of the tokens this message adds to a prompt."""
        return 4 + estimate_tokens(self.content)

    def message(self) -> dict[str, str]:
        """The turn as an OpenAI-style message."""
        return {"role": self.role, "content": self.content}

    def as_dict(self) -> dict[str, Any]:
        """The turn as JSON-ready data (`cell` is null when unknown)."""
        return {"role": self.role, "content": self.content, "cell": self.cell}


def _heading(turn: Turn) -> str:
    where = "" if turn.cell is None else f" · In [{turn.cell}]"
    return f"### {turn.role}{where}"


def to_markdown(turns: Iterable[Turn]) -> str:
    """The turns as Markdown: a heading per turn, then its text unchanged."""
    parts = [_HEADER, ""]
    for turn in turns:
        cell = "" if turn.cell is None else f" cell={turn.cell}"
        text = _LOOKS_LIKE_MARKER.sub(r"\\\1\2", turn.content)
        parts.append(f"<!-- turn role={turn.role}{cell} -->\n{_heading(turn)}\n\n{text}\n")
    return "\n".join(parts)


def from_markdown(text: str) -> list[Turn]:
    """The turns of a `to_markdown` export; raises ParameterError on other text."""
    if not text.startswith(_HEADER):
        raise ParameterError(
            f"expected a baseten_magic history export starting with {_HEADER!r}, got "
            f"{text[:40]!r}; pass the text %baseten history --markdown wrote"
        )
    pieces = _MARKER.split(text[len(_HEADER) :])
    found = list(zip(pieces[1::3], pieces[2::3], pieces[3::3], strict=True))
    turns = []
    # split() gives: preamble, then (role, cell, body) for each marker.
    for index, (role, cell, body) in enumerate(found):
        # body is "\n### heading\n\n" + text + "\n", and one "\n" more before a next marker.
        _, _, rest = body.partition("\n\n")
        rest = rest.removesuffix("\n" if index == len(found) - 1 else "\n\n")
        content = _ESCAPED.sub(r"\1", rest)
        turns.append(Turn(role, content, None if cell is None else int(cell)))
    return turns


def to_json(turns: Iterable[Turn]) -> str:
    """The turns as JSON: `{"format": ..., "messages": [{"role", "content", "cell"}]}`."""
    data = {"format": FORMAT, "messages": [turn.as_dict() for turn in turns]}
    return json.dumps(data, ensure_ascii=False, indent=1)


def _turn(item: object) -> Turn:
    if not isinstance(item, Mapping) or not isinstance(item.get("content", ""), str):
        raise ParameterError(
            f"expected a message with a role and text content, got {str(item)[:60]!r}; "
            'pass e.g. {"role": "user", "content": "Hello"}'
        )
    cell = item.get("cell")
    return Turn(
        str(item.get("role", "")),
        str(item.get("content", "")),
        cell if isinstance(cell, int) and not isinstance(cell, bool) else None,
    )


def from_json(text: str) -> list[Turn]:
    """The turns of a `to_json` export (or of a plain JSON list of messages)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParameterError(
            f"expected a JSON history export, got text that is not JSON ({exc.msg}); pass the "
            "text %baseten history --json wrote"
        ) from None
    items: Sequence[object] = data.get("messages", ()) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ParameterError(
            f"expected a list of messages, got {type(items).__name__}; pass the text "
            "%baseten history --json wrote"
        )
    return [_turn(item) for item in items]


def read(text: str) -> list[Turn]:
    """The turns of either export, told apart by their first character."""
    stripped = text.lstrip()
    return from_json(text) if stripped[:1] in ("{", "[") else from_markdown(text)
