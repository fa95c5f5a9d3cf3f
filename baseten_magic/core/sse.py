"""Server-Sent Events decoding on raw bytes, exact to the WHATWG event-stream rules.

Rule: bytes in, events out, nothing else. Spec:
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

- UTF-8 whatever the declared charset; invalid bytes become U+FFFD; one leading BOM is dropped.
- Line ends are CR, LF or CRLF only (never U+2028, U+2029 or U+0085, which models emit inside
  JSON strings); any byte may be a chunk boundary, including inside a character or a CRLF.
- A blank line dispatches only if at least one `data` line arrived; it always resets the event
  type. `:` lines are comments. An unterminated event at EOF is discarded.
- `id` persists across events (the spec's "last event ID"); `retry` is reported on the event
  dispatched by the block that carried it.
- One event (its pending line plus its data lines) may hold at most `max_event_chars`
  characters; past that `EventTooLarge` is raised, so a hostile endless line cannot take all
  memory. The spec sets no limit; the default is far above any chat chunk.

Speed: a run of plain `data: X` events (every chat stream) is cut out of the decoded text with
C-speed string calls and never looked at line by line; everything else goes through the general
line loop, which touches each line once. CR handling is only paid for when a CR is present.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_EVENT_CHARS", "EventTooLarge", "SSEDecoder", "ServerSentEvent"]

_BOM = "\ufeff"
# A chat chunk is a few hundred bytes; the largest legitimate events (a whole tool-call argument
# or logprobs block in one event) stay far below a few MB.
MAX_EVENT_CHARS = 16 * 1024 * 1024


class EventTooLarge(ValueError):
    """One event grew past the decoder's size cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"expected server-sent events of at most {limit // (1024 * 1024)} MB each, got one "
            "larger (the server or a proxy in between sent an endless line); check the base URL"
        )
        self.limit = limit


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its type, data, last event id and retry hint."""

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None


def _data_run(text: str, end: int) -> list[str] | None:
    """The data values if `text[:end]` is a run of `data: X` + blank-line events, else None.

    The run is exactly `"data: " + "\\n\\ndata: ".join(datas) + "\\n\\n"` when it starts with
    `data: `, ends with a blank line and holds two LFs per event, so no value spans lines.
    """
    if end < 8 or not text.startswith("data: "):
        return None
    if text.find("\n") == end - 2:
        return [text[6 : end - 2]]  # one event: its only line end is the closing blank line
    datas = text[6 : end - 2].split("\n\ndata: ")
    if text.count("\n", 0, end) != 2 * len(datas):
        return None
    return datas


class SSEDecoder:
    """Incremental event-stream decoder: `feed(bytes)` per network read, `close()` at EOF."""

    __slots__ = (
        "_clean",
        "_data",
        "_data_size",
        "_decode",
        "_decoder",
        "_event",
        "_last_id",
        "_max",
        "_retry",
        "_skip_lf",
        "_started",
        "_tail",
        "_tail_size",
    )

    def __init__(self, max_event_chars: int = MAX_EVENT_CHARS) -> None:
        self._max = max_event_chars
        self._reset()

    def _reset(self) -> None:
        # The incremental decoder holds back a character split across chunks until it completes.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._decode: Callable[[bytes], str] = self._decoder.decode
        self._started = False  # a non-empty text was seen, so the BOM question is settled
        self._clean = False  # at an event boundary with nothing pending: the fast path applies
        self._skip_lf = False  # the last chunk ended in CR: a leading LF now ends nothing
        self._tail: list[str] = []  # pieces of the current, not yet terminated, line
        self._tail_size = 0  # characters in _tail, kept as a count so checking it is O(1)
        self._data: list[str] = []
        self._data_size = 0  # characters in _data
        self._event = ""
        self._last_id = ""
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode one chunk of bytes; return the events it completed (often none)."""
        # Fast path: at an event boundary (nothing pending, not even part of a character), a
        # read holding whole `data:` events, which is what a chat server writes per token, is
        # cut up with C-speed calls alone. It cannot end inside a character: it ends in LF.
        if self._clean and chunk.endswith(b"\n\n"):
            text = chunk.decode("utf-8", "replace")
            if "\r" not in text:
                end = len(text) - 2
                if text.find("\n") == end and text.startswith("data: "):
                    return [ServerSentEvent("message", text[6:end], self._last_id)]
                datas = _data_run(text, end + 2)
                if datas is not None:
                    last_id = self._last_id
                    return [ServerSentEvent("message", data, last_id) for data in datas]
        return self._feed_text(self._decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        """Signal end of stream: an unterminated event is discarded (per spec); then reset."""
        self._reset()
        return []

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        """The general path: BOM, CR handling, partial lines, then line-by-line interpretation."""
        if not text:
            self._clean = False  # the decoder may now hold part of a character
            return []
        if not self._started:
            self._started = True
            if text[0] == _BOM:
                text = text[1:]
                if not text:
                    return []
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if "\r" in text:
            # A CR closing the chunk is a line end now; the LF that may follow is skipped later.
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        tail = self._tail
        events: list[ServerSentEvent] = []
        if "\n" not in text:
            # No line end yet: keep pieces in a list so a huge line in tiny chunks stays linear.
            tail.append(text)
            self._tail_size += len(text)
        else:
            if tail:
                tail.append(text)
                text = "".join(tail)
                tail.clear()
            self._tail_size = 0
            pending = bool(self._data or self._event or self._retry is not None)
            if not pending:
                # A leading run of whole `data:` events skips the line-by-line loop.
                end = text.rfind("\n\n") + 2
                datas = _data_run(text, end)
                if datas is not None:
                    last_id = self._last_id
                    events = [ServerSentEvent("message", data, last_id) for data in datas]
                    text = text[end:]
            # Then block by block (a block ends in a blank line): a lone `data:` line is an
            # event at once; anything else (comments, ids, several lines) goes line by line.
            blocks = text.split("\n\n")
            lines = blocks.pop().split("\n")
            for block in blocks:
                if not pending and block.startswith("data: ") and "\n" not in block:
                    events.append(ServerSentEvent("message", block[6:], self._last_id))
                else:
                    self._lines([*block.split("\n"), ""], events)
                    pending = False  # the blank line closing the block reset the event state
            last = lines.pop()
            if last:
                tail.append(last)
                self._tail_size = len(last)
            if lines:
                self._lines(lines, events)
        if self._tail_size + self._data_size > self._max:
            raise EventTooLarge(self._max)
        self._clean = not (
            self._skip_lf
            or tail
            or self._data
            or self._event
            or self._retry is not None
            or self._decoder.getstate()[0]
        )
        return events

    def _lines(self, lines: list[str], events: list[ServerSentEvent]) -> None:
        """Interpret complete lines one by one (the general path), appending dispatched events."""
        data = self._data
        size = self._data_size
        event = self._event
        retry = self._retry
        for line in lines:
            if not line:
                if data:
                    events.append(
                        ServerSentEvent(event or "message", "\n".join(data), self._last_id, retry)
                    )
                    data = []
                    size = 0
                event = ""
                retry = None
            elif line.startswith("data: "):
                data.append(line[6:])
                size += len(line)
            else:
                colon = line.find(":")
                if colon == 0:
                    continue  # comment, e.g. a keep-alive
                if colon < 0:
                    name, value = line, ""
                else:
                    name = line[:colon]
                    value = line[colon + 1 :]
                    if value[:1] == " ":
                        value = value[1:]
                if name == "data":
                    data.append(value)
                    size += len(value) + 1
                elif name == "event":
                    event = value
                elif name == "id":
                    if "\0" not in value:
                        self._last_id = value
                elif name == "retry" and value.isascii() and value.isdigit():
                    retry = int(value)
                # Any other field name is ignored, as the spec requires.
        self._data = data
        self._data_size = size
        self._event = event
        self._retry = retry
