"""The local server's `openai` profile against the real `openai` SDK: `chat.completions.stream()`
assembles tool calls (one id each, whole arguments) and usage (once, not added up) correctly;
the default `baseten` profile keeps Baseten's quirks, which is what the SDK cannot merge."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from baseten_magic.io.client import Client
from baseten_magic.server import LocalServer

openai = pytest.importorskip("openai")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ONE_ID = re.compile(r"^(call_[0-9a-f]+|functions\.\w+:\d+)$")
REQUEST: dict[str, Any] = {
    "model": "openai/gpt-oss-120b",
    "messages": [{"role": "user", "content": "Weather and time in Rome and in Paris"}],
    "tools": [WEATHER, TIME],
    "tool_choice": "required",
}


@pytest.fixture(scope="module", params=["baseten", "openai"])
def server(request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    with LocalServer(profile=request.param) as s:
        yield s


@pytest.fixture(scope="module")
def sdk(server: LocalServer) -> Iterator[Any]:
    with openai.OpenAI(api_key=server.api_key, base_url=server.url, max_retries=0) as client:
        yield client


def _chunks(sdk: Any, **extra: Any) -> list[Any]:
    return list(sdk.chat.completions.create(**REQUEST, stream=True, **extra))


def test_sdk_stream_helper_assembles_tool_calls_and_usage(server: LocalServer, sdk: Any) -> None:
    options = {"include_usage": True}
    with sdk.chat.completions.stream(**REQUEST, stream_options=options) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls and len(calls) >= 2
    ids_ok = all(ONE_ID.match(call.id) for call in calls)
    if server.profile == "openai":
        assert ids_ok, [call.id for call in calls]
        for call in calls:
            assert isinstance(json.loads(call.function.arguments), dict)
        assert final.usage is not None and final.usage.completion_tokens > 0
    else:
        # Baseten's fresh id per fragment: the SDK concatenates them (why the profile exists).
        assert not ids_ok


def test_usage_only_in_the_trailing_chunk_unless_continuous(server: LocalServer, sdk: Any) -> None:
    chunks = _chunks(sdk, stream_options={"include_usage": True})
    with_usage = [c for c in chunks if c.usage is not None]
    if server.profile == "openai":
        assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
        assert chunks[-1].choices == []
        # A client that adds usage up (LangChain) gets the right totals.
        total = sum(c.usage.completion_tokens for c in with_usage)
        assert total == chunks[-1].usage.completion_tokens
        continuous = _chunks(
            sdk, stream_options={"include_usage": True, "continuous_usage_stats": True}
        )
        assert sum(c.usage is not None for c in continuous) > len(continuous) // 2
    else:
        assert len(with_usage) > 2  # cumulative usage on every content chunk


def test_one_id_per_tool_call_on_the_first_fragment(server: LocalServer, sdk: Any) -> None:
    ids: dict[int, list[str]] = {}
    for chunk in _chunks(sdk):
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                if call.id:
                    ids.setdefault(call.index, []).append(call.id)
    assert ids
    if server.profile == "openai":
        assert all(len(found) == 1 for found in ids.values())
    else:
        assert any(len(found) > 1 for found in ids.values())


def test_this_librarys_client_reads_both_profiles(server: LocalServer) -> None:
    with Client(base_url=server.url, api_key=server.api_key) as client:
        stream = client.stream(
            {**REQUEST, "stream": True, "stream_options": {"include_usage": True}}
        )
        list(stream)
    calls = stream.state.tool_calls
    assert len(calls) >= 2 and all(ONE_ID.match(call["id"]) for call in calls)
    assert all(isinstance(json.loads(call["arguments"]), dict) for call in calls)
    assert stream.state.usage is not None and stream.state.usage.completion_tokens > 0


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="profile must be one of baseten, openai"):
        LocalServer(profile="vllm")
