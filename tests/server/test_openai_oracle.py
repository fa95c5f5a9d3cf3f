"""The official `openai` package's stream decoding as an oracle for SSEDecoder + StreamState.

The same recorded-style bytes go through both; content, reasoning, tool calls, finish reason
and usage must agree. `openai` is only an oracle here: nothing in the package imports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from baseten_magic.core.result import ToolCall, Usage
from baseten_magic.core.sse import SSEDecoder
from baseten_magic.core.stream import StreamState

openai = pytest.importorskip("openai")
chat_types = pytest.importorskip("openai.types.chat")

STREAMS = Path(__file__).parents[1] / "fixtures" / "streams"
ORACLE_FIXTURES = [
    "content_usage.sse",
    "reasoning_content.sse",
    "reasoning_vllm.sse",
    "tool_calls_quirks.sse",
    "no_usage.sse",
    "logprobs.sse",
    "harmony.sse",
    "n2_choices.sse",
]
LINE_ENDS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


def _pieces(wire: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(wire), size):
        yield wire[start : start + size]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # Building an SDK client is slow (TLS setup); one serves every test. Nothing is sent.
    with openai.OpenAI(api_key="x", base_url="http://127.0.0.1:9/v1", max_retries=0) as sdk:
        yield sdk


def _openai_chunks(client: Any, wire: bytes, size: int) -> Iterator[Any]:
    """Decode `wire` with openai.Stream, exactly as the SDK does for a live response."""
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx.Response(200, content=_pieces(wire, size), request=request)
    yield from openai.Stream(
        cast_to=chat_types.ChatCompletionChunk, response=response, client=client
    )


def _extra(delta: Any, name: str) -> Any:
    value = getattr(delta, name, None)
    if value is None:
        value = (delta.model_extra or {}).get(name)
    return value


def _oracle(client: Any, wire: bytes, size: int) -> dict[str, Any]:
    """Accumulate choice 0 from the SDK's chunks: text, tool calls by index, last usage."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason = None
    usage = None
    model = ""
    for chunk in _openai_chunks(client, wire, size):
        model = model or chunk.model
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            content.append(delta.content or "")
            reasoning.append(_extra(delta, "reasoning_content") or _extra(delta, "reasoning") or "")
            for call in delta.tool_calls or ():
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] = entry["id"] or call.id or ""  # Baseten: keep the first id
                if call.function is not None:
                    entry["name"] = entry["name"] or call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
            if choice.finish_reason:
                finish_reason = choice.finish_reason
    return {
        "content": "".join(content),
        "reasoning": "".join(reasoning),
        "tool_calls": [calls[index] for index in sorted(calls)],
        "finish_reason": finish_reason,
        "usage": None if usage is None else Usage.from_wire(usage.model_dump()),
        "model": model,
    }


def _ours(wire: bytes, size: int) -> dict[str, Any]:
    state = StreamState()
    decoder = SSEDecoder()
    for piece in _pieces(wire, size):
        for event in decoder.feed(piece):
            state.feed_data(event.data)
    for event in decoder.close():
        state.feed_data(event.data)
    assert state.done
    tool_calls: list[ToolCall] = state.tool_calls
    return {
        "content": state.content,
        "reasoning": state.reasoning,
        "tool_calls": tool_calls,
        "finish_reason": state.finish_reason,
        "usage": state.usage,
        "model": state.model,
    }


@pytest.mark.parametrize("line_end", LINE_ENDS.values(), ids=LINE_ENDS.keys())
@pytest.mark.parametrize("size", [1 << 20, 7], ids=["whole", "7-byte pieces"])
@pytest.mark.parametrize("name", ORACLE_FIXTURES)
def test_same_answer_as_the_openai_sdk(client: Any, name: str, size: int, line_end: bytes) -> None:
    wire = (STREAMS / name).read_bytes().replace(b"\n", line_end)
    expected = _oracle(client, wire, size)
    assert expected["content"] or expected["reasoning"] or expected["tool_calls"]
    assert _ours(wire, size) == expected


def test_fixtures_exercise_what_they_claim(client: Any) -> None:
    """Guard the oracle's coverage: the fixtures hold the quirks the comparison relies on."""
    tools = _oracle(client, (STREAMS / "tool_calls_quirks.sse").read_bytes(), 1 << 20)
    assert tools["tool_calls"][0]["id"] == "functions.get_weather:0"
    assert len(tools["tool_calls"]) == 2
    reasoning = _oracle(client, (STREAMS / "reasoning_content.sse").read_bytes(), 1 << 20)
    assert reasoning["reasoning"] == "The user asks 2+2. That is 4."
    assert reasoning["usage"] == Usage(prompt_tokens=20, completion_tokens=18, reasoning_tokens=10)
    vllm = _oracle(client, (STREAMS / "reasoning_vllm.sse").read_bytes(), 1 << 20)
    assert vllm["reasoning"] == "Need a haiku about tea."
    usage = _oracle(client, (STREAMS / "content_usage.sse").read_bytes(), 1 << 20)
    assert usage["usage"] == Usage(prompt_tokens=14, completion_tokens=16, cached_tokens=8)
    assert "\u2028" in usage["content"]


def test_mid_stream_error_agrees_with_the_sdk(client: Any) -> None:
    wire = (STREAMS / "midstream_error.sse").read_bytes()
    with pytest.raises(openai.APIError) as caught:
        _oracle(client, wire, 1 << 20)
    state = StreamState()
    for event in SSEDecoder().feed(wire):
        state.feed_data(event.data)
    assert state.error == caught.value.body
    assert state.result(status="error").error == caught.value.message
    assert state.content == "Partial ans"
