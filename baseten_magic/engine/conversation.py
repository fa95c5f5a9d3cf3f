"""Conversation memory for `%%baseten` cells: a rule users can predict.

Rule: the conversation is an ordered list of exchanges — one per cell — each holding the cell's
messages and the assistant's answer, keyed by the cell's identity (the front end's cell id when
the front end sends one, else the magic line plus the cell's text).

- Running a new cell appends its exchange at the end.
- Re-running a cell REPLACES its earlier exchange in place: no duplicate, and its position in
  the conversation does not move.
- A request sends the system prompt, then every exchange BEFORE this cell's position (all of
  them for a new cell; exchanges after a re-run cell are not sent), then this cell's messages.
- A call that failed or was interrupted stores its partial answer, followed by a note that it
  was cut short, only if that partial answer is non-empty; a call that produced no text leaves
  the conversation as it was (including an earlier exchange of the same cell).
- `%baseten reset` forgets everything; `--no-memory` cells neither read nor write it.
- The system prompt is not part of an exchange: each request uses the current one.
- `turns(system)` is what the next new cell sends before its own messages, each message with
  the cell it came from (`In [n]`); `%baseten history` and `baseten_magic.history()` show it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from baseten_magic.core.result import Status
from baseten_magic.core.transcript import Turn

Message = dict[str, str]

PARTIAL_NOTE = "[this answer was cut short: {status}]"


@dataclass(frozen=True)
class Exchange:
    """One cell's messages and the assistant's answer to them."""

    key: str
    messages: tuple[Mapping[str, str], ...]
    answer: str
    status: Status = "ok"
    cell: int | None = None  # the execution count (`In [n]`) of the cell that made it

    def as_messages(self) -> list[Message]:
        """The exchange as wire messages; a partial answer carries a note saying so."""
        out = [dict(m) for m in self.messages]
        answer = self.answer
        if self.status != "ok":
            answer = f"{answer}\n\n{PARTIAL_NOTE.format(status=self.status)}"
        out.append({"role": "assistant", "content": answer})
        return out


def cell_key(cell_id: str | None, line: str, cell: str) -> str:
    """A cell's identity: the front end's cell id when known, else its magic line and text."""
    if cell_id:
        return f"id:{cell_id}"
    return f"text:{line.strip()}\n{cell}"


class Conversation:
    """The ordered exchanges of one shell's `%%baseten` cells."""

    def __init__(self) -> None:
        self._exchanges: list[Exchange] = []

    def __len__(self) -> int:
        return len(self._exchanges)

    def __repr__(self) -> str:
        return f"Conversation(exchanges={len(self._exchanges)})"

    @property
    def exchanges(self) -> tuple[Exchange, ...]:
        """The exchanges in conversation order."""
        return tuple(self._exchanges)

    def _index(self, key: str) -> int | None:
        for index, exchange in enumerate(self._exchanges):
            if exchange.key == key:
                return index
        return None

    def earlier_count(self, key: str) -> int:
        """How many earlier exchanges a request for this cell sends along."""
        index = self._index(key)
        return len(self._exchanges) if index is None else index

    def turns(self, system: str = "") -> list[Turn]:
        """What the next new cell sends before its own messages, with each one's cell."""
        out = [Turn("system", system)] if system else []
        for exchange in self._exchanges:
            out.extend(Turn(m["role"], m["content"], exchange.cell) for m in exchange.as_messages())
        return out

    def messages(self, system: str = "") -> list[Message]:
        """`turns(system)` as wire messages: what the next new cell sends before its own."""
        return [turn.message() for turn in self.turns(system)]

    def history_for(self, key: str) -> list[Message]:
        """Messages of every exchange before this cell's position (all, for a new cell)."""
        index = self._index(key)
        earlier = self._exchanges if index is None else self._exchanges[:index]
        return [message for exchange in earlier for message in exchange.as_messages()]

    def messages_for(
        self, key: str, cell_messages: Sequence[Mapping[str, str]], system: str = ""
    ) -> list[Message]:
        """The full request: system prompt, earlier exchanges, then this cell's messages."""
        out: list[Message] = [{"role": "system", "content": system}] if system else []
        out.extend(self.history_for(key))
        out.extend(dict(m) for m in cell_messages)
        return out

    def record(
        self,
        key: str,
        cell_messages: Sequence[Mapping[str, str]],
        answer: str,
        status: Status = "ok",
        *,
        cell: int | None = None,
    ) -> bool:
        """Store (or replace in place) this cell's exchange; returns False when nothing stored."""
        if status != "ok" and not answer.strip():
            return False
        exchange = Exchange(
            key=key,
            messages=tuple(dict(m) for m in cell_messages),
            answer=answer,
            status=status,
            cell=cell,
        )
        index = self._index(key)
        if index is None:
            self._exchanges.append(exchange)
        else:
            self._exchanges[index] = exchange
        return True

    def reset(self) -> None:
        """Forget every exchange."""
        self._exchanges.clear()
