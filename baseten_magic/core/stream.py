"""Stream state: `chat.completion.chunk` payloads in, one growing answer out.

Rule: no I/O, and a well-formed event never raises (only a malformed one does). The state
accumulates deltas (content, reasoning, tool calls, logprobs, finish reasons) per choice,
keeps the LAST non-null usage (Baseten repeats cumulative totals on every chunk and in a
trailing `choices: []` chunk, so usage is never added up), and records a mid-stream error
event for the caller to raise.

Tool-call fragments are merged by `index`, keeping the first id and name seen: Baseten may send
several fragments for one index in one event and a fresh id on every fragment, and Kimi's ids
(`functions.get_weather:0`) must be kept verbatim.

Text is kept as lists of pieces and joined only when read (the join is cached), so a very long
answer costs linear time. Choice 0 feeds the main fields; `choices` holds every index.
"""

from __future__ import annotations

import json
import json.scanner
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, cast

from baseten_magic.core.errors import StreamError
from baseten_magic.core.result import ChatResult, Choice, Status, TokenLogprob, ToolCall, Usage

__all__ = ["NO_DELTA", "Delta", "StreamState", "split_harmony"]


@dataclass(frozen=True, slots=True)
class Delta:
    """What one chunk added to choice 0: new content, new reasoning, whether tool calls grew."""

    content: str = ""
    reasoning: str = ""
    tool_calls_changed: bool = False


NO_DELTA: Final = Delta()

# Choice indices beyond this are not choices a client asked for (`n` is small): a hostile index
# is read as 0, so its text stays in the answer instead of raising in the final step.
_MAX_CHOICE_INDEX: Final = 1024

# json.loads is a Python wrapper (two regex matches, two calls) around the C scanner built here.
# With one chunk per token the wrapper costs about a tenth of decoding, so the scanner is called
# directly; payloads it does not consume whole (whitespace around JSON, junk) take the slow path.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    cast(Any, json.JSONDecoder())  # typeshed mistypes the argument; any JSONDecoder will do
)

# A frozen dataclass's __init__ pays for object.__setattr__ on every field; one Delta is built
# per chunk on the hot path, so it fills the slots directly (same object, about twice as fast).
_slots: Any = vars(Delta)
_new_object = object.__new__
_set_content: Callable[[object, str], None] = _slots["content"].__set__
_set_reasoning: Callable[[object, str], None] = _slots["reasoning"].__set__
_set_tools: Callable[[object, bool], None] = _slots["tool_calls_changed"].__set__
del _slots


def _unchanged(text: str) -> str:
    return text


def _joined(parts: list[str]) -> str:
    """Join text pieces once and keep the join as the only piece (the cache)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return ""
    text = "".join(parts)
    parts[:] = [text]
    return text


class _ToolCallParts:
    __slots__ = ("arguments", "id", "name")

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.arguments: list[str] = []

    def value(self) -> ToolCall:
        return {"id": self.id, "name": self.name, "arguments": _joined(self.arguments)}


class _Text:
    """Text that arrives in pieces: every 512 pieces are merged into one chunk, so a long answer
    holds about its own size in memory instead of one small string object per token."""

    __slots__ = ("_chunks", "_pieces")

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._pieces: list[str] = []

    def append(self, piece: str) -> None:
        pieces = self._pieces
        pieces.append(piece)
        if len(pieces) >= 512:
            self._chunks.append("".join(pieces))
            pieces.clear()

    def __bool__(self) -> bool:
        return bool(self._chunks or self._pieces)

    def text(self) -> str:
        """The whole text; the join is kept, so reading twice costs nothing."""
        if self._pieces or len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks) + "".join(self._pieces)]
            self._pieces = []
        return self._chunks[0] if self._chunks else ""


class _ChoiceParts:
    """Everything received so far for one choice index."""

    __slots__ = ("content", "finish_reason", "index", "logprobs", "reasoning", "tools")

    def __init__(self, index: int) -> None:
        self.index = index
        self.content = _Text()
        self.reasoning = _Text()
        self.tools: dict[int, _ToolCallParts] = {}
        self.finish_reason: str | None = None
        self.logprobs: list[TokenLogprob] | None = None

    def merge_tool_calls(self, fragments: list[Any]) -> bool:
        """Merge streamed tool-call fragments by index; True if anything arrived."""
        changed = False
        tools = self.tools
        for position, fragment in enumerate(fragments):
            if not isinstance(fragment, Mapping):
                continue
            index = fragment.get("index")
            if not isinstance(index, int):
                index = position  # servers that omit the index send calls in order
            function = fragment.get("function") or {}
            call = tools.get(index)
            if call is None:
                call = tools[index] = _ToolCallParts(
                    str(fragment.get("id") or ""), str(function.get("name") or "")
                )
                changed = True
            else:
                # Keep the FIRST id and name: later fragments may carry fresh ids (Baseten).
                if not call.id and fragment.get("id"):
                    call.id = str(fragment["id"])
                    changed = True
                if not call.name and function.get("name"):
                    call.name = str(function["name"])
                    changed = True
            arguments = function.get("arguments")
            if arguments:
                if not isinstance(arguments, str):
                    arguments = json.dumps(arguments)
                call.arguments.append(arguments)
                changed = True
        return changed

    def add_logprobs(self, logprobs: Any) -> None:
        items = logprobs.get("content") if isinstance(logprobs, Mapping) else None
        if self.logprobs is None:
            self.logprobs = []
        if items:
            self.logprobs.extend(_token_logprob(item) for item in items)

    def tool_calls(self) -> list[ToolCall]:
        return [self.tools[index].value() for index in sorted(self.tools)]

    def choice(self, *, clean: bool) -> Choice:
        content = self.content.text()
        reasoning = self.reasoning.text()
        if clean:
            reasoning, content = _clean(reasoning, content)
        return Choice(
            index=self.index,
            content=content,
            reasoning=reasoning,
            tool_calls=tuple(self.tool_calls()),
            finish_reason=self.finish_reason,
            logprobs=None if self.logprobs is None else tuple(self.logprobs),
        )


def _as_text(value: Any) -> str:
    """Text of a content value: a string, None, or a list of OpenAI content parts."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            part if isinstance(part, str) else str(part.get("text") or "")
            for part in value
            if isinstance(part, str | Mapping)
        )
    return str(value)


def _token_logprob(item: Mapping[str, Any]) -> TokenLogprob:
    top = item.get("top_logprobs") or ()
    return TokenLogprob(
        token=str(item.get("token", "")),
        logprob=float(item.get("logprob", 0.0)),
        top=tuple((str(alt.get("token", "")), float(alt.get("logprob", 0.0))) for alt in top),
    )


class StreamState:
    """Accumulates one chat completion from streamed chunks (or one non-streaming body)."""

    __slots__ = (
        "_clock",
        "_deltas",
        "_done",
        "_error",
        "_first_token_at",
        "_main",
        "_model",
        "_others",
        "_request_id",
        "_scrub",
        "_started_at",
        "_usage",
        "_usage_parsed_from",
        "_usage_wire",
    )

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        started_at: float | None = None,
        scrub: Callable[[str], str] | None = None,
    ) -> None:
        self._clock = clock
        # Text the server chose (model, id, error messages) may echo the key: `scrub` (the
        # client's redaction, which knows the key actually sent) runs on it before it is kept.
        self._scrub: Callable[[str], str] = scrub or _unchanged
        self._started_at = clock() if started_at is None else started_at
        self._main = _ChoiceParts(0)
        self._others: dict[int, _ChoiceParts] = {}
        self._usage_wire: Mapping[str, Any] | None = None
        self._usage: Usage | None = None
        self._usage_parsed_from: Mapping[str, Any] | None = None
        self._model = ""
        self._request_id: str | None = None
        self._done = False
        self._error: Any = None
        self._first_token_at: float | None = None
        self._deltas = 0

    # -- input ------------------------------------------------------------------------------

    def feed_data(self, data: str) -> Delta:
        """Take one SSE `data` payload: a JSON chunk, or `[DONE]`."""
        try:
            chunk, end = _scan_json(data, 0)
        except (StopIteration, ValueError):
            chunk, end = None, -1
        if end != len(data):
            return self._feed_other(data)  # `[DONE]`, blank, JSON inside whitespace, or junk
        if type(chunk) is dict:
            try:
                return self.feed(chunk)
            except (AttributeError, TypeError, ValueError):
                pass  # a chunk of the wrong shape: reported like invalid JSON
        raise self._malformed(data)

    def _feed_other(self, data: str) -> Delta:
        text = data.strip()
        if text.startswith("[DONE]"):
            self._done = True
            return NO_DELTA
        if not text:
            return NO_DELTA  # an empty event (e.g. a bare `data:` keep-alive) carries nothing
        if text != data:
            return self.feed_data(text)
        raise self._malformed(data)

    def _malformed(self, data: str) -> StreamError:
        # Redacted before the cut, so no part of a key survives at the edge.
        preview = self._scrub(data)
        preview = preview if len(preview) <= 80 else preview[:77] + "..."
        message = (
            f"expected a JSON chat.completion.chunk in the event stream, got {preview!r}; "
            "the server sent a malformed event — retry, or check the base URL"
        )
        return StreamError(message, partial=self.result(status="error", error=message))

    def feed(self, chunk: Mapping[str, Any]) -> Delta:
        """Take one decoded `chat.completion.chunk`; return what it added to choice 0."""
        usage = chunk.get("usage")
        if usage and (type(usage) is dict or isinstance(usage, Mapping)):
            self._usage_wire = usage
        if not self._model:
            self._identify(chunk)
        choices = chunk.get("choices")
        if not choices:
            self._check_error(chunk)
            return NO_DELTA
        result = NO_DELTA
        for choice in choices:
            index = choice.get("index")
            if index and (type(index) is not int or not 0 < index <= _MAX_CHOICE_INDEX):
                index = 0  # a hostile or broken index: the text still belongs to the answer
            parts = self._choice_parts(index) if index else self._main
            finish_reason = choice.get("finish_reason")
            if finish_reason:
                parts.finish_reason = finish_reason
            if choice.get("logprobs"):
                parts.add_logprobs(choice["logprobs"])
            delta = choice.get("delta")
            if not delta:
                continue
            content = delta.get("content")
            if content and len(delta) == 1:
                # Most chunks are {"content": "..."} alone: skip looking for other fields.
                reasoning = None
                tools_changed = False
            else:
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                tool_calls = delta.get("tool_calls")
                tools_changed = parts.merge_tool_calls(tool_calls) if tool_calls else False
            if not (content or reasoning or tools_changed):
                continue  # e.g. the opening {"role": "assistant", "content": ""}
            if content:
                if type(content) is not str:
                    content = _as_text(content)
                parts.content.append(content)
            else:
                content = ""
            if reasoning:
                if type(reasoning) is not str:
                    reasoning = _as_text(reasoning)
                parts.reasoning.append(reasoning)
            else:
                reasoning = ""
            self._deltas += 1
            if self._first_token_at is None:
                self._first_token_at = self._clock()
            if not index:
                # Slots filled directly (see above): this runs once per token of every answer.
                result = _new_object(Delta)
                _set_content(result, content)
                _set_reasoning(result, reasoning)
                _set_tools(result, tools_changed)
        return result

    def load_completion(self, body: Mapping[str, Any]) -> None:
        """Take a whole non-streaming `chat.completion` body."""
        usage = body.get("usage")
        if usage and isinstance(usage, Mapping):
            self._usage_wire = usage
        self._identify(body)
        choices = body.get("choices")
        if not choices:
            self._check_error(body)
        for choice in choices or ():
            index = choice.get("index", 0)
            if index and (type(index) is not int or not 0 < index <= _MAX_CHOICE_INDEX):
                index = 0
            parts = self._main if not index else self._choice_parts(index)
            message = choice.get("message") or {}
            content = _as_text(message.get("content"))
            reasoning = _as_text(message.get("reasoning_content") or message.get("reasoning"))
            if content:
                parts.content.append(content)
            if reasoning:
                parts.reasoning.append(reasoning)
            calls = [
                {**call, "index": position}
                for position, call in enumerate(message.get("tool_calls") or ())
                if isinstance(call, Mapping)
            ]
            tools_changed = parts.merge_tool_calls(calls)
            if (content or reasoning or tools_changed) and self._first_token_at is None:
                self._first_token_at = self._clock()
            parts.finish_reason = choice.get("finish_reason") or parts.finish_reason
            if choice.get("logprobs"):
                parts.add_logprobs(choice["logprobs"])
        self._done = True

    def _identify(self, chunk: Mapping[str, Any]) -> None:
        model = chunk.get("model")
        if model and not self._model:
            self._model = self._scrub(str(model))
        chunk_id = chunk.get("id")
        if chunk_id and self._request_id is None:
            self._request_id = self._scrub(str(chunk_id))

    def _check_error(self, chunk: Mapping[str, Any]) -> None:
        # Three shapes: {"error": {...}}, {"error": "msg"}, and the flat {"object": "error", ...}.
        error = chunk.get("error")
        if error:
            self._error = error
        elif chunk.get("object") == "error":
            self._error = dict(chunk)

    def _choice_parts(self, index: int) -> _ChoiceParts:
        parts = self._others.get(index)
        if parts is None:
            parts = self._others[index] = _ChoiceParts(index)
        return parts

    # -- read-only view ---------------------------------------------------------------------

    @property
    def content(self) -> str:
        """Answer text of choice 0 so far, exactly as streamed."""
        return self._main.content.text()

    @property
    def reasoning(self) -> str:
        """Reasoning text of choice 0 so far (`reasoning_content` or `reasoning`)."""
        return self._main.reasoning.text()

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Tool calls of choice 0 so far, ordered by index; arguments are raw JSON text."""
        return self._main.tool_calls()

    @property
    def usage(self) -> Usage | None:
        """The last non-null usage the server sent, or None if it sent none (a usage object
        without one valid token count counts as none: it keeps the last valid one, if any)."""
        wire = self._usage_wire
        if wire is None:
            return None
        if self._usage_parsed_from is not wire:
            if Usage.is_reported(wire):
                self._usage = Usage.from_wire(wire)
            self._usage_parsed_from = wire
        return self._usage

    @property
    def finish_reason(self) -> str | None:
        """Finish reason of choice 0 (`stop`, `length`, `tool_calls`, `abort`), None if none yet."""
        return self._main.finish_reason

    @property
    def model(self) -> str:
        """Model name the server reported ("" until the first chunk)."""
        return self._model

    @property
    def request_id(self) -> str | None:
        """The completion id the server reported (`chatcmpl-...`), if any."""
        return self._request_id

    @property
    def done(self) -> bool:
        """True once `[DONE]` arrived (or a whole non-streaming body was loaded)."""
        return self._done

    @property
    def error(self) -> Any:
        """The mid-stream error (the value of `error`, or the flat error body), else None."""
        return self._error

    @property
    def started_at(self) -> float:
        """Clock value when the request started."""
        return self._started_at

    @property
    def first_token_at(self) -> float | None:
        """Clock value at the first non-empty content, reasoning or tool-call delta."""
        return self._first_token_at

    @property
    def output_tokens(self) -> int:
        """Output tokens so far: non-empty deltas counted, or the usage figure when larger."""
        usage = self.usage
        if usage is None:
            return self._deltas
        return max(self._deltas, usage.completion_tokens)

    @property
    def logprobs(self) -> tuple[TokenLogprob, ...] | None:
        """Token log probabilities of choice 0, or None if the server sent none."""
        logprobs = self._main.logprobs
        return None if logprobs is None else tuple(logprobs)

    @property
    def choices(self) -> tuple[Choice, ...]:
        """Every choice received, ordered by index (text as streamed)."""
        return tuple(parts.choice(clean=False) for parts in self._all_choices())

    def _all_choices(self) -> list[_ChoiceParts]:
        parts = [self._others[index] for index in sorted(self._others)]
        main = self._main
        if main.content or main.reasoning or main.tools or main.finish_reason or not parts:
            parts.insert(0, main)
        return parts

    # -- the result -------------------------------------------------------------------------

    def result(
        self,
        *,
        status: Status = "ok",
        cost: Decimal = Decimal(0),
        error: str | None = None,
        latency_s: float | None = None,
        parsed: Any = None,
        request_id: str | None = None,
    ) -> ChatResult:
        """Freeze what arrived into a ChatResult (harmony markers split out of the content)."""
        reasoning, content = _clean(self.reasoning, self.content)
        if error is None and self._error is not None:
            found = self._error
            error = self._scrub(
                error_text(found) or ("unknown error" if isinstance(found, Mapping) else str(found))
            )
        if latency_s is None:
            latency_s = self._clock() - self._started_at
        first = self._first_token_at
        return ChatResult(
            content=content,
            reasoning=reasoning,
            tool_calls=self.tool_calls,
            finish_reason=self.finish_reason,
            model=self._model,
            usage=self.usage,
            cost=cost,
            parsed=parsed,
            status=status,
            error=error,
            ttft_s=None if first is None else first - self._started_at,
            latency_s=latency_s,
            request_id=request_id if request_id is not None else self._request_id,
            logprobs=self.logprobs,
            choices=tuple(parts.choice(clean=True) for parts in self._all_choices()),
        )


def error_text(body: Any) -> str:
    """The message of an error body in any of Baseten's shapes (`{"error": "msg"}`,
    `{"error": {"message": ...}}`, the flat `{"object": "error", "message": ...}`, a bare error
    object or string); "" when there is none."""
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, str):
            return inner
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])
        return str(body.get("message") or body.get("detail") or "")
    return body if isinstance(body, str) else ""


# -- gpt-oss harmony markers ----------------------------------------------------------------

_HARMONY_PREFIX: Final = "<|channel|>"
_HARMONY_TOKEN = re.compile(r"<\|(start|channel|message|end|return|call|constrain)\|>")


def _clean(reasoning: str, content: str) -> tuple[str, str]:
    if not content.startswith(_HARMONY_PREFIX):
        return reasoning, content
    leaked, content = split_harmony(content)
    if leaked:
        reasoning = f"{reasoning}\n{leaked}" if reasoning else leaked
    return reasoning, content


def split_harmony(text: str) -> tuple[str, str]:
    """Split gpt-oss harmony text into (reasoning, content); `final` channel text is content.

    Used only when markers such as `<|channel|>analysis<|message|>...<|end|>` leaked into the
    content. Text that does not start with `<|channel|>` is returned as content, untouched.
    """
    if not text.startswith(_HARMONY_PREFIX):
        return "", text
    reasoning: list[str] = []
    content: list[str] = []
    pieces = _HARMONY_TOKEN.split(text)
    # split() with one group alternates text and token names: [text, name, text, name, ...].
    mode = "outside"  # outside | role | header | body
    header: list[str] = []
    target = reasoning
    for position, piece in enumerate(pieces):
        if position % 2:
            if piece in ("channel", "constrain"):
                if mode != "header":
                    header = []
                mode = "header"
            elif piece == "message":
                channel = "".join(header).split()
                target = content if channel and channel[0] == "final" else reasoning
                target.append("")  # a new segment starts
                mode = "body"
            elif piece == "start":
                mode = "role"  # the role name after <|start|> is not text
            else:  # end, return, call
                mode = "outside"
        elif mode == "header":
            header.append(piece)
        elif mode == "body":
            target[-1] += piece
        elif mode == "outside" and piece:
            content.append(piece)  # text after the last marker is what the user was meant to see
    return "\n".join(part for part in reasoning if part), "".join(content)
