"""Throttled live painting of a streaming answer onto a `Surface`.

Rule: data arrives as fast as it likes; painting happens at a bounded rate, and the bytes sent
stay linear in the answer's length. Concretely:

- The first token is painted at once; after that at most one paint per `interval` (leading
  edge: a delta arriving after the interval has elapsed paints immediately; otherwise `tick()`
  paints it when due; callers with a wait loop call `tick()` at `next_deadline()`). With the
  default 90 ms interval and a caller that ticks on time, no token waits more than 100 ms.
- Finished Markdown blocks are frozen: a blank line outside code fences ends a block; a long
  fenced code block is cut every ~40 lines (the fence is reopened with the same info string);
  a tail longer than `tail_limit` is cut at its last line break (or, for a single huge line,
  after its last sentence). Only the live tail is ever repainted, so a paint costs at most one
  freeze (the live output gets its final HTML, a new one is opened) and one repaint.
- Messages: at most `MAX_MESSAGES_PER_SECOND` in any one-second window while streaming; freezes
  are postponed (the tail keeps growing) when the window leaves room only for the repaints, so
  the cap does not make tokens wait. `finish()` adds at most three, so every second stays
  within 20 and far below Jupyter's IOPub limit of 1,000 messages per second.
- Repaints of the live tail are cheap previews (code not yet highlighted, plain part left
  out); a frozen segment and the final paint carry the full bundle.
- Bytes: tails are capped in size and repainted at a bounded rate, so traffic is linear in
  streaming time. A byte budget is the safety net (a deliberate throttle: a repaint that would
  break it is deferred): `budget_factor` x (bytes of what the final output would be now) +
  `slack_bytes`, but never less than `RATE_ALLOWANCE` bytes per second of streaming. Fast
  streams stay near 1.1-1.6x their final output; slow ones (100 tokens/s and below) resend
  their short tails every interval, a few times the final output at a few KB/s, which keeps
  paragraphs whole instead of cutting them to save bytes.
- Reasoning streams into an open block under the same throttle and gets its final (closed)
  paint when the first answer text is painted.

Bytes are measured by `bundle_size` (JSON-encoded bundle), for both statistics and budget;
the budget also counts each message's envelope (`MESSAGE_OVERHEAD`).
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from baseten_magic.core.result import ChatResult
from baseten_magic.core.stream import Delta
from baseten_magic.render.bundle import (
    Bundle,
    answer_bundle,
    bundle_size,
    footer_bundle,
    reasoning_final_bundle,
    reasoning_live_bundle,
)
from baseten_magic.render.surfaces import SlotId, Surface

__all__ = [
    "FENCE_SPLIT_LINES",
    "MAX_MESSAGES_PER_SECOND",
    "MESSAGE_OVERHEAD",
    "RATE_ALLOWANCE",
    "PaintStats",
    "Painter",
]

#: A long fenced code block is cut after about this many lines (closing and reopening the fence).
FENCE_SPLIT_LINES = 40

#: Bytes a display message carries besides its bundle (metadata, transient display id, keys);
#: an output kept in the notebook carries about as much, so the budget counts it on both sides.
MESSAGE_OVERHEAD = 80

#: Bytes per second of streaming that the budget always allows (3% of jupyter_server's default
#: 1 MB/s IOPub data limit); at slow speeds the ratio budget alone would make tokens wait.
RATE_ALLOWANCE = 32_768

#: At most this many messages in any one-second window while streaming; `finish()` adds at
#: most three more (reasoning, last tail, footer), which keeps every second within 20.
MAX_MESSAGES_PER_SECOND = 18


@dataclass(frozen=True)
class PaintStats:
    """What a painter has sent so far."""

    messages: int = 0
    bytes_sent: int = 0
    paints: int = 0
    freezes: int = 0
    deferred: int = 0
    max_lag_s: float = 0.0
    final_output_bytes: int = 0


class Painter:
    """Paints deltas onto a surface: throttled, frozen block by block, within a byte budget."""

    def __init__(
        self,
        surface: Surface,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.09,
        budget_factor: float = 2.5,
        slack_bytes: int = 4_096,
        tail_limit: int = 2_048,
    ) -> None:
        self._surface = surface
        self._clock = clock
        self._interval = interval
        self._budget_factor = budget_factor
        self._slack_bytes = slack_bytes
        self._tail_limit = tail_limit
        # Answer: the frozen part lives in finished outputs; only `_tail` is ever repainted.
        self._tail = ""
        self._context = _Context()
        self._live_slot: SlotId | None = None
        self._frozen_bytes = 0
        self._frozen_parts: list[str] = []
        self._answer_pending_since: float | None = None
        self._answer_seen = False
        # Reasoning: one output, open while it streams, closed once the answer starts.
        self._reasoning = ""
        self._reasoning_deltas = 0
        self._reasoning_slot: SlotId | None = None
        self._reasoning_closed = False
        self._reasoning_final_bytes: int | None = None
        self._reasoning_pending_since: float | None = None
        # Throttle and statistics.
        self._last_paint: float | None = None
        self._first_paint: float | None = None
        self._slot_bytes: dict[SlotId, int] = {}
        self._recent: deque[float] = deque()  # send times within the last second
        self._recent_freezes: deque[float] = deque()  # freeze times within the last second
        self._messages = 0
        self._bytes_sent = 0
        self._paints = 0
        self._freezes = 0
        self._deferred = 0
        self._max_lag = 0.0
        self._finished = False

    # --- public API ---------------------------------------------------------------------------

    @property
    def stats(self) -> PaintStats:
        """Messages, bytes, paints, worst lag and final output size so far."""
        return PaintStats(
            messages=self._messages,
            bytes_sent=self._bytes_sent,
            paints=self._paints,
            freezes=self._freezes,
            deferred=self._deferred,
            max_lag_s=self._max_lag,
            final_output_bytes=sum(self._slot_bytes.values()),
        )

    def add(self, delta: Delta) -> None:
        """Take one delta; paint at once if it is the first or the interval has elapsed."""
        if self._finished:
            raise RuntimeError(
                "expected deltas before finish(); got one after: create a new Painter"
            )
        if not delta.content and not delta.reasoning:
            return
        now = self._clock()
        if delta.reasoning:
            self._reasoning += delta.reasoning
            self._reasoning_deltas += 1
            if self._reasoning_pending_since is None:
                self._reasoning_pending_since = now
        if delta.content:
            self._tail += delta.content
            self._answer_seen = True
            if self._answer_pending_since is None:
                self._answer_pending_since = now
        if self._last_paint is None or now - self._last_paint >= self._interval:
            self._paint(now)

    def next_deadline(self) -> float | None:
        """Clock time at which `tick()` should run next, or None if nothing is pending."""
        if not self._pending() or self._finished:
            return None
        if self._last_paint is None:
            return self._clock()
        return self._last_paint + self._interval

    def tick(self) -> None:
        """Paint pending text if the interval has elapsed since the last paint."""
        deadline = self.next_deadline()
        if deadline is None:
            return
        now = self._clock()
        if now >= deadline:
            self._paint(now)

    def finish(
        self,
        result: ChatResult,
        *,
        pricing_mode: str,
        extra: Sequence[Mapping[str, Any]] = (),
        notes: Sequence[str] = (),
    ) -> None:
        """The final paint (always): closed reasoning, the answer's tail, `extra`, the footer."""
        if self._finished:
            return
        self._finished = True
        now = self._clock()
        self._reconcile(result, now)
        if self._reasoning and (
            not self._reasoning_closed or self._reasoning_pending_since is not None
        ):
            self._close_reasoning(result)
        if self._tail:
            self._send(self._live_slot, self._tail_bundle(self._tail))
        self._live_slot = None
        for item in extra:
            self._send(None, item)
        self._send(None, footer_bundle(result, pricing_mode=pricing_mode, notes=notes))
        self._paints += 1
        self._shown(now, answer=True, reasoning=True)

    # --- painting -----------------------------------------------------------------------------

    def _pending(self) -> bool:
        return self._answer_pending_since is not None or (
            self._reasoning_pending_since is not None and not self._reasoning_closed
        )

    def _paint(self, now: float) -> None:
        self._last_paint = now
        if self._first_paint is None:
            self._first_paint = now
        before = self._messages
        while self._recent and now - self._recent[0] >= 1.0:
            self._recent.popleft()
        # A freeze costs a second message; allow it only while the last second leaves room for
        # a repaint at every interval, so the message cap never makes a token wait.
        while self._recent_freezes and now - self._recent_freezes[0] >= 1.0:
            self._recent_freezes.popleft()
        room = min(2, MAX_MESSAGES_PER_SECOND - len(self._recent))
        if len(self._recent_freezes) >= MAX_MESSAGES_PER_SECOND - math.ceil(1 / self._interval):
            room = min(room, 1)
        if room <= 0:  # the message-rate throttle: try again at the next interval
            self._deferred += 1
            return
        if self._reasoning and self._answer_seen and not self._reasoning_closed:
            self._close_reasoning(None)
            room -= 1
        elif self._reasoning_pending_since is not None and not self._reasoning_closed:
            bundle = reasoning_live_bundle(self._reasoning, tokens=self._reasoning_deltas)
            if self._affordable(bundle_size(bundle), tail_bytes=0):
                self._reasoning_slot = self._send(self._reasoning_slot, bundle)
                self._shown(now, answer=False, reasoning=True)
                room -= 1
            else:
                self._deferred += 1
        if self._answer_pending_since is not None:
            self._paint_answer(now, room)
        if self._messages > before:
            self._paints += 1

    def _paint_answer(self, now: float, room: int) -> None:
        cut = None
        if room >= 2:
            cut = _structural_cut(self._tail, self._context, tail_limit=self._tail_limit)
        bundle = self._tail_bundle(self._tail, live=True) if cut is None else None
        if cut is not None:
            self._freeze(cut)
            room -= 1
            bundle = self._tail_bundle(self._tail, live=True) if self._tail else None
        if not self._tail.strip():
            # Nothing visible to show yet; the whitespace goes out with the next segment.
            self._shown(now, answer=True, reasoning=False)
            return
        if bundle is None or room < 1:
            return
        if self._affordable_tail(bundle):
            self._live_slot = self._send(self._live_slot, bundle)
            self._shown(now, answer=True, reasoning=False)
        else:
            self._deferred += 1

    def _freeze(self, cut: _Cut) -> None:
        head = self._tail[: cut.position]
        bundle = self._tail_bundle(head)
        slot = self._send(self._live_slot, bundle)
        self._frozen_bytes += self._slot_bytes[slot]
        self._frozen_parts.append(head)
        self._freezes += 1
        self._recent_freezes.append(self._clock())
        self._tail = self._tail[cut.position :]
        self._context = cut.context
        self._live_slot = None

    def _tail_bundle(self, text: str, *, live: bool = False) -> Bundle:
        bundle = answer_bundle(text, source=_source(text, self._context), live=live)
        if self._context.table_header is not None:
            # The repeated header only told the parser this is a table; do not show it again.
            bundle["text/html"] = _THEAD_RE.sub("", bundle["text/html"], count=1)
        return bundle

    def _close_reasoning(self, result: ChatResult | None) -> None:
        tokens: int | None = self._reasoning_deltas or None
        if result is not None and result.usage is not None and result.usage.reasoning_tokens:
            tokens = result.usage.reasoning_tokens
        bundle = reasoning_final_bundle(self._reasoning, tokens=tokens)
        self._reasoning_slot = self._send(self._reasoning_slot, bundle)
        self._reasoning_final_bytes = self._slot_bytes[self._reasoning_slot]
        self._reasoning_closed = True
        self._shown(self._clock(), answer=False, reasoning=True)

    def _reconcile(self, result: ChatResult, now: float) -> None:
        # Without streaming (or after a late chunk) the result may hold more than the deltas did;
        # show what the result holds when it extends what was streamed.
        streamed = self._reasoning
        # Reasoning goes above the answer: take it only while it can still be shown there.
        placeable = self._reasoning_slot is not None or not (self._frozen_parts or self._tail)
        if (
            placeable
            and result.reasoning.startswith(streamed)
            and len(result.reasoning) > len(streamed)
        ):
            self._reasoning = result.reasoning
            self._reasoning_pending_since = self._reasoning_pending_since or now
        streamed = "".join(self._frozen_parts) + self._tail
        if result.content.startswith(streamed) and len(result.content) > len(streamed):
            self._tail += result.content[len(streamed) :]
            self._answer_pending_since = self._answer_pending_since or now

    # --- budget and bookkeeping ---------------------------------------------------------------

    def _affordable_tail(self, bundle: Bundle) -> bool:
        # The live bundle's size stands in for the tail's final size: never larger (the final
        # one adds highlighting), so the estimate errs on the side of sending less.
        size = bundle_size(bundle)
        return self._affordable(size, tail_bytes=size)

    def _affordable(self, cost: int, *, tail_bytes: int) -> bool:
        if self._reasoning_final_bytes is not None:
            reasoning = self._reasoning_final_bytes
        else:
            # Final reasoning is at least its text twice (HTML and plain parts).
            reasoning = 2 * len(self._reasoning)
        outputs = len(self._slot_bytes) + (0 if tail_bytes == 0 or self._live_slot else 1)
        final_now = self._frozen_bytes + tail_bytes + reasoning + MESSAGE_OVERHEAD * outputs
        budget = self._budget_factor * final_now + self._slack_bytes
        spent = self._bytes_sent + MESSAGE_OVERHEAD * self._messages
        # Slow streams: an absolute allowance, so a token never waits on the ratio when the
        # traffic is a trickle anyway (linear in streaming time: tails are capped in size).
        if self._first_paint is not None:
            budget = max(budget, RATE_ALLOWANCE * (self._clock() - self._first_paint))
        return cost + MESSAGE_OVERHEAD <= budget - spent

    def _send(self, slot: SlotId | None, bundle: Mapping[str, Any]) -> SlotId:
        if slot is None:
            slot = self._surface.show(bundle)
        else:
            self._surface.update(slot, bundle)
        size = bundle_size(bundle)
        self._slot_bytes[slot] = size
        self._messages += 1
        self._bytes_sent += size
        self._recent.append(self._clock())
        return slot

    def _shown(self, now: float, *, answer: bool, reasoning: bool) -> None:
        for since in (
            self._answer_pending_since if answer else None,
            self._reasoning_pending_since if reasoning else None,
        ):
            if since is not None:
                self._max_lag = max(self._max_lag, now - since)
        if answer:
            self._answer_pending_since = None
        if reasoning:
            self._reasoning_pending_since = None


# --- where the answer may be cut ------------------------------------------------------------------
#
# Pure text logic: a cut never changes the answer's text (segments concatenate exactly); what a
# segment needs to render alone (a reopened code fence, a table's header, an escaped first
# character) is carried in a `_Context` and applied by `_source()`.

_FENCE_OPEN_RE = re.compile(r"^( *)(`{3,}|~{3,})(.*)$")
_FENCE_CLOSE_RE = re.compile(r"^ *(`{3,}|~{3,})[ \t]*$")
_TABLE_DELIM_RE = re.compile(r"^ *\|? *:?-+:? *(\| *:?-+:? *)*\|? *$")
_SENTENCE_END_RE = re.compile(r"[.!?:;][\"')\]*_]*[ \t]+")
_SPACE_RE = re.compile(r"[ \t]+")
_ORDERED_START_RE = re.compile(r"^(\d{1,9})([.)])")
_THEAD_RE = re.compile(r"<thead>.*?</thead>\s*", re.S)
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


@dataclass(frozen=True)
class _Fence:
    """An open code fence: the opening line (to reopen it) and what closes it."""

    opener: str
    char: str
    length: int


@dataclass(frozen=True)
class _Context:
    """What the text after a cut needs in order to render on its own."""

    fence: _Fence | None = None
    table_header: str | None = None
    mid_line: bool = False


@dataclass(frozen=True)
class _Cut:
    """A cut at `position` of the tail; `context` is what the remainder starts in."""

    position: int
    context: _Context


@dataclass
class _Scan:
    """Cut candidates found in one pass over the tail's complete lines."""

    block: _Cut | None = None  # latest block boundary: blank line, closed fence, long fence
    line: _Cut | None = None  # latest line boundary with no code span or math left open
    end_context: _Context = field(default_factory=_Context)


def _source(text: str, context: _Context) -> str:
    if context.fence is not None:
        return f"{context.fence.opener}\n{text}"
    if context.table_header is not None:
        return context.table_header + text
    if context.mid_line:
        return _protect_start(text)
    return text


def _protect_start(text: str) -> str:
    # A segment cut mid-line must not start a heading, list, quote or rule by accident.
    if text[:1] in _ASCII_PUNCT and text[:1]:
        return "\\" + text
    match = _ORDERED_START_RE.match(text)
    if match is not None:
        return f"{match.group(1)}\\{text[match.end(1) :]}"
    return text


def _opens_fence(line: str) -> _Fence | None:
    match = _FENCE_OPEN_RE.match(line)
    if match is None:
        return None
    indent, marker, info = match.groups()
    if marker[0] == "`" and "`" in info:
        return None
    # Reopen at most 3 spaces in, so the reopened fence is a fence even outside its list item.
    return _Fence(opener=indent[:3] + marker + info, char=marker[0], length=len(marker))


def _closes(fence: _Fence, line: str) -> bool:
    match = _FENCE_CLOSE_RE.match(line)
    if match is None:
        return False
    marker = match.group(1)
    return marker[0] == fence.char and len(marker) >= fence.length


def _scan(tail: str, context: _Context) -> _Scan:
    scan = _Scan()
    fence = context.fence
    table = context.table_header
    previous: str | None = None
    fence_lines = 0
    backticks = 0
    dollars = 0
    lines = tail.split("\n")
    complete = len(lines) - 1
    end = 0
    for index in range(complete):
        line = lines[index]
        end += len(line) + 1
        following = lines[index + 1]
        following_started = bool(following) or index + 1 < complete
        if fence is not None:
            if _closes(fence, line):
                fence = None
                previous = None
                if following_started:
                    scan.block = scan.line = _Cut(end, _Context())
                continue
            fence_lines += 1
            cut = _Cut(end, _Context(fence=fence))
            scan.line = cut
            if fence_lines >= FENCE_SPLIT_LINES:
                scan.block = cut
            continue
        opened = _opens_fence(line)
        if opened is not None:
            fence = opened
            fence_lines = 0
            table = previous = None
            continue
        backticks += line.count("`")
        dollars += line.count("$$")
        balanced = backticks % 2 == 0 and dollars % 2 == 0
        if not line.strip():
            table = previous = None
            if not balanced:
                continue
            scan.line = _Cut(end, _Context())
            # A blank line ends a block unless what follows is indented (it may continue a
            # list item) or has not arrived yet.
            if following_started and following[:1] not in (" ", "\t") and following.strip():
                scan.block = scan.line
            continue
        if table is None and previous is not None and "|" in previous:
            if _TABLE_DELIM_RE.match(line):
                table = f"{previous}\n{line}\n"
        elif table is not None and "|" not in line:
            table = None
        previous = line
        if balanced:
            scan.line = _Cut(end, _Context(table_header=table))
    scan.end_context = _Context(fence=fence, table_header=table)
    return scan


def _mid_line_cut(tail: str, scan: _Scan) -> _Cut | None:
    # Only the unfinished last line, outside code and tables, is cut inside a line: after its
    # last sentence end if there is one, else after its last run of spaces. The cut must leave
    # no code span, display math, link bracket or parenthesis open. Counts run forward in one
    # pass per pattern (a line can be tens of KB, e.g. one-line JSON, and this runs per paint).
    if scan.end_context.fence is not None or scan.end_context.table_header is not None:
        return None
    start = tail.rfind("\n") + 1
    line = tail[start:]
    before = tail[:start]
    for pattern in (_SENTENCE_END_RE, _SPACE_RE):
        best = None
        ticks, dollars, square, paren = before.count("`"), before.count("$$"), 0, 0
        position = 0
        for match in pattern.finditer(line):
            # Each piece ends in whitespace, so no "$$" straddles two pieces.
            piece = line[position : match.end()]
            position = match.end()
            ticks += piece.count("`")
            dollars += piece.count("$$")
            square += piece.count("[") - piece.count("]")
            paren += piece.count("(") - piece.count(")")
            if ticks % 2 == 0 and dollars % 2 == 0 and square == 0 and paren == 0:
                best = position
        if best is not None:
            return _Cut(start + best, _Context(mid_line=True))
    return None


def _structural_cut(tail: str, context: _Context, *, tail_limit: int) -> _Cut | None:
    """The latest cut that finishes Markdown blocks, or one forced by `tail_limit`."""
    scan = _scan(tail, context)
    if scan.block is not None:
        return scan.block
    if len(tail) <= tail_limit:
        return None
    if scan.line is not None:
        return scan.line
    return _mid_line_cut(tail, scan)
