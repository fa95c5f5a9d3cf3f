"""StreamState: deltas in, one answer out, with every Baseten streaming quirk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from baseten_magic.core.errors import StreamError
from baseten_magic.core.result import ChatResult, Choice, TokenLogprob, Usage
from baseten_magic.core.sse import SSEDecoder
from baseten_magic.core.stream import NO_DELTA, Delta, StreamState, split_harmony

STREAMS = Path(__file__).parents[1] / "fixtures" / "streams"


class FakeClock:
    """A clock that advances one second per reading."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def replay(name: str, state: StreamState | None = None) -> tuple[StreamState, list[Delta]]:
    state = state or StreamState(clock=FakeClock(), started_at=100.0)
    decoder = SSEDecoder()
    deltas = [state.feed_data(event.data) for event in decoder.feed((STREAMS / name).read_bytes())]
    assert decoder.close() == []
    return state, deltas


def chunk(*choices: dict[str, Any], usage: Any = "absent", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": list(choices),
        **extra,
    }
    if usage != "absent":
        body["usage"] = usage
    return body


def choice(index: int = 0, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


# -- content and reasoning ------------------------------------------------------------------


def test_content_stream_with_cumulative_usage_and_trailing_chunk() -> None:
    state, deltas = replay("content_usage.sse")
    assert state.content == (
        "Bonjour — 日本語 🎉 line one\u2028line two\u2029para\u0085end\n\n```python\nprint(1)\n```"
    )
    assert state.reasoning == ""
    assert [d.content for d in deltas if d is not NO_DELTA] == [
        "Bonjour",
        " — 日本語 🎉",
        " line one\u2028line two\u2029para\u0085end",
        "\n\n```python\nprint(1)\n```",
    ]
    # The role-only opening delta, the empty finish delta, the trailing usage chunk and
    # [DONE] all yield NO_DELTA.
    assert deltas[0] is NO_DELTA
    assert deltas[-3:] == [NO_DELTA, NO_DELTA, NO_DELTA]
    assert state.finish_reason == "stop"
    assert state.done
    assert state.error is None
    # Usage is the trailing chunk's totals, not a sum; `usage: null` on the finish is skipped.
    assert state.usage == Usage(prompt_tokens=14, completion_tokens=16, cached_tokens=8)
    assert state.model == "deepseek-ai/DeepSeek-V3.1"
    assert state.request_id == "chatcmpl-7f3a"
    assert state.output_tokens == 16


def test_reasoning_content_then_content() -> None:
    state, deltas = replay("reasoning_content.sse")
    assert state.reasoning == "The user asks 2+2. That is 4."
    assert state.content == "2 + 2 = **4**"
    assert [(d.content, d.reasoning) for d in deltas if d is not NO_DELTA] == [
        ("", "The user asks 2+2."),
        ("", " That is 4."),
        ("2 + 2 = **4**", ""),
    ]
    assert state.usage == Usage(prompt_tokens=20, completion_tokens=18, reasoning_tokens=10)


def test_reasoning_field_from_newer_vllm_and_length_finish() -> None:
    state, _ = replay("reasoning_vllm.sse")
    assert state.reasoning == "Need a haiku about tea."
    assert state.content == "Steam curls, slow\nleaves unfold in amber\u2029calm"
    assert state.finish_reason == "length"
    assert state.usage is None
    assert state.output_tokens == 4  # no usage: the non-empty deltas are counted


def test_both_reasoning_fields_are_not_doubled() -> None:
    state = StreamState()
    delta = state.feed(chunk(choice(reasoning_content="think", reasoning="think")))
    assert delta == Delta(reasoning="think")
    assert state.reasoning == "think"


def test_null_content_and_empty_deltas_are_no_delta() -> None:
    state = StreamState()
    assert state.feed(chunk(choice(role="assistant", content=""))) is NO_DELTA
    assert state.feed(chunk(choice(content=None))) is NO_DELTA
    assert state.feed(chunk({"index": 0, "delta": None, "finish_reason": None})) is NO_DELTA
    assert state.feed(chunk()) is NO_DELTA
    assert state.first_token_at is None
    assert state.output_tokens == 0


def test_content_as_a_list_of_parts_is_text() -> None:
    state = StreamState()
    parts = [{"type": "text", "text": "a"}, "b", {"type": "image_url"}]
    assert state.feed(chunk(choice(content=parts))) == Delta(content="ab")
    state.feed(chunk(choice(reasoning_content=[{"type": "text", "text": "r"}])))
    assert (state.content, state.reasoning) == ("ab", "r")


def test_first_token_at_is_the_first_non_empty_delta() -> None:
    clock = FakeClock()
    state = StreamState(clock=clock, started_at=50.0)
    state.feed(chunk(choice(role="assistant", content="")))
    assert state.first_token_at is None
    state.feed(chunk(choice(content="a")))
    first = state.first_token_at
    assert first == clock.now
    state.feed(chunk(choice(content="b")))
    assert state.first_token_at == first
    assert state.result(status="ok", latency_s=9.0).ttft_s == first - 50.0


def test_started_at_defaults_to_the_clock() -> None:
    clock = FakeClock()
    state = StreamState(clock=clock)
    assert state.started_at == 101.0


def test_output_tokens_takes_the_larger_of_count_and_usage() -> None:
    state = StreamState()
    for text in ("a", "b", "c"):
        state.feed(chunk(choice(content=text), usage={"prompt_tokens": 1, "completion_tokens": 1}))
    assert state.output_tokens == 3  # usage lags behind the deltas
    state.feed(chunk(usage={"prompt_tokens": 1, "completion_tokens": 7}))
    assert state.output_tokens == 7


def test_long_answer_is_joined_lazily_and_correctly() -> None:
    state = StreamState()
    pieces = [f"{i % 10}" for i in range(200_000)]
    for i, piece in enumerate(pieces):
        state.feed(chunk(choice(content=piece)))
        if i == 1000:
            assert state.content == "".join(pieces[:1001])  # reading mid-stream is fine
    assert state.content == "".join(pieces)
    assert state.content is state.content  # the join is cached


# -- usage ----------------------------------------------------------------------------------


def test_usage_is_never_added_up() -> None:
    state = StreamState()
    state.feed(chunk(choice(content="a"), usage={"prompt_tokens": 5, "completion_tokens": 1}))
    state.feed(chunk(choice(content="b"), usage={"prompt_tokens": 5, "completion_tokens": 2}))
    state.feed(chunk(choice(finish="stop"), usage=None))
    assert state.usage == Usage(prompt_tokens=5, completion_tokens=2)
    state.feed(
        chunk(
            usage={
                "prompt_tokens": 5,
                "completion_tokens": 3,
                "completion_tokens_details": {"reasoning_tokens": 1},
                "prompt_tokens_details": {"cached_tokens": 4},
            }
        )
    )
    assert state.usage == Usage(
        prompt_tokens=5, completion_tokens=3, reasoning_tokens=1, cached_tokens=4
    )


def test_no_usage_at_all() -> None:
    state, _ = replay("no_usage.sse")
    assert state.usage is None
    assert state.content == "Hi there!"
    assert state.finish_reason == "stop"
    result = state.result(status="ok")
    assert result.usage is None


# -- tool calls -----------------------------------------------------------------------------


def test_tool_calls_with_baseten_quirks_and_kimi_ids() -> None:
    state, deltas = replay("tool_calls_quirks.sse")
    assert state.content == "Let me check."
    assert state.tool_calls == [
        {
            "id": "functions.get_weather:0",
            "name": "get_weather",
            "arguments": '{"city": "Paris", "unit": "°C"}',
        },
        {"id": "functions.get_time:1", "name": "get_time", "arguments": '{"tz": "Europe/Paris"}'},
    ]
    assert json.loads(state.tool_calls[0]["arguments"]) == {"city": "Paris", "unit": "°C"}
    assert state.finish_reason == "tool_calls"
    assert sum(d.tool_calls_changed for d in deltas) == 5
    assert state.usage is not None
    assert state.usage.completion_tokens == 30


def test_several_fragments_for_one_index_in_one_event() -> None:
    state = StreamState()
    delta = state.feed(
        chunk(
            choice(
                tool_calls=[
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}},
                    {"index": 0, "id": "call_2", "function": {"arguments": '{"x"'}},
                    {"index": 0, "id": "call_3", "function": {"arguments": ": 1}"}},
                    {"index": 1, "id": "call_9", "function": {"name": "g", "arguments": "{}"}},
                ]
            )
        )
    )
    assert delta == Delta(tool_calls_changed=True)
    assert state.tool_calls == [
        {"id": "call_1", "name": "f", "arguments": '{"x": 1}'},
        {"id": "call_9", "name": "g", "arguments": "{}"},
    ]


def test_tool_call_first_fragment_without_id_takes_a_later_one() -> None:
    state = StreamState()
    state.feed(chunk(choice(tool_calls=[{"index": 0, "function": {"arguments": "{"}}])))
    state.feed(
        chunk(
            choice(
                tool_calls=[{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "}"}}]
            )
        )
    )
    assert state.tool_calls == [{"id": "c1", "name": "f", "arguments": "{}"}]


def test_tool_calls_ordered_by_index_even_if_they_arrive_out_of_order() -> None:
    state = StreamState()
    state.feed(chunk(choice(tool_calls=[{"index": 1, "id": "b", "function": {"name": "g"}}])))
    state.feed(chunk(choice(tool_calls=[{"index": 0, "id": "a", "function": {"name": "f"}}])))
    assert [call["id"] for call in state.tool_calls] == ["a", "b"]


# -- finish, errors, [DONE] -----------------------------------------------------------------


@pytest.mark.parametrize("reason", ["stop", "length", "tool_calls", "abort"])
def test_finish_reasons(reason: str) -> None:
    state = StreamState()
    state.feed(chunk(choice(content="x")))
    assert state.finish_reason is None
    state.feed(chunk(choice(finish=reason)))
    assert state.finish_reason == reason
    assert state.result(status="ok").finish_reason == reason


def test_done_only_after_done_marker() -> None:
    state = StreamState()
    state.feed_data(json.dumps(chunk(choice(content="x", finish="stop"))))
    assert not state.done
    assert state.feed_data("[DONE]") is NO_DELTA
    assert state.done


def test_mid_stream_error_is_recorded_not_raised() -> None:
    state, deltas = replay("midstream_error.sse")
    assert state.error == {
        "message": "upstream worker crashed",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    }
    assert state.content == "Partial ans"
    assert state.done
    assert deltas[1] is NO_DELTA
    result = state.result(status="error")
    assert result.error == "upstream worker crashed"
    assert result.content == "Partial ans"
    assert result.finish_reason is None
    assert result.truncated


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"error": "quota exceeded"}, "quota exceeded"),
        (
            {"object": "error", "message": "bad", "type": "BadRequestError", "code": 400},
            {"object": "error", "message": "bad", "type": "BadRequestError", "code": 400},
        ),
    ],
)
def test_other_error_shapes(payload: dict[str, Any], expected: Any) -> None:
    state = StreamState()
    assert state.feed_data(json.dumps(payload)) is NO_DELTA
    assert state.error == expected
    assert state.result(status="error").error in ("quota exceeded", "bad")


def test_explicit_error_message_wins() -> None:
    state, _ = replay("midstream_error.sse")
    assert state.result(status="error", error="stream cut").error == "stream cut"


@pytest.mark.parametrize("padding", ["", " ", "\n", " \t\r\n "])
def test_json_with_whitespace_around_it(padding: str) -> None:
    state = StreamState()
    data = padding + json.dumps(chunk(choice(content="hi"))) + padding
    assert state.feed_data(data) == Delta(content="hi")
    assert state.feed_data(padding + "[DONE]" + padding) is NO_DELTA
    assert state.done


@pytest.mark.parametrize("data", ["", "   ", "\n"])
def test_empty_data_is_ignored(data: str) -> None:
    state = StreamState()
    assert state.feed_data(data) is NO_DELTA
    assert state.error is None


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        "[1, 2]",
        "42",
        '{"choices": 7}',
        '{"choices": ["x"]}',
        '{"choices": []} x',
        '{"choices": []}{}',
        "[DONE",
    ],
)
def test_malformed_event_raises_a_stream_error_with_the_partial(data: str) -> None:
    state = StreamState()
    state.feed(chunk(choice(content="kept")))
    with pytest.raises(StreamError, match=r"expected a JSON chat\.completion\.chunk") as caught:
        state.feed_data(data)
    assert caught.value.partial is not None
    assert caught.value.partial.content == "kept"
    assert "\n" not in str(caught.value)


# -- several choices, logprobs --------------------------------------------------------------


def test_n2_choices() -> None:
    state, deltas = replay("n2_choices.sse")
    assert state.content == "Red apple"
    assert state.finish_reason == "stop"
    assert [d.content for d in deltas if d is not NO_DELTA] == ["Red", " apple"]
    assert state.choices == (
        Choice(index=0, content="Red apple", finish_reason="stop"),
        Choice(index=1, content="Blue sky", finish_reason="length"),
    )
    assert state.output_tokens == 4
    assert state.result(status="ok").choices == state.choices


def test_logprobs_accumulate() -> None:
    state, _ = replay("logprobs.sse")
    expected = (
        TokenLogprob("Yes", -0.01, (("Yes", -0.01), ("No", -4.6))),
        TokenLogprob(".", -0.5, ((".", -0.5), ("!", -1.2))),
    )
    assert state.logprobs == expected
    assert state.result(status="ok").logprobs == expected
    assert state.choices[0].logprobs == expected


def test_logprobs_none_when_absent() -> None:
    state, _ = replay("content_usage.sse")
    assert state.logprobs is None
    assert state.result(status="ok").logprobs is None


# -- non-streaming --------------------------------------------------------------------------


def test_load_completion() -> None:
    clock = FakeClock()
    state = StreamState(clock=clock, started_at=100.0)
    state.load_completion(
        {
            "id": "chatcmpl-ns",
            "object": "chat.completion",
            "model": "moonshotai/Kimi-K2-Thinking",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "It is sunny.",
                        "reasoning_content": "Check the weather.",
                        "tool_calls": [
                            {
                                "id": "functions.get_weather:0",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                            },
                            {
                                "id": "functions.get_time:1",
                                "type": "function",
                                "function": {"name": "get_time", "arguments": {"tz": "UTC"}},
                            },
                        ],
                    },
                    "logprobs": None,
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {
                "prompt_tokens": 50,
                "completion_tokens": 20,
                "completion_tokens_details": {"reasoning_tokens": 5},
            },
        }
    )
    assert state.done
    assert state.content == "It is sunny."
    assert state.reasoning == "Check the weather."
    assert state.tool_calls == [
        {"id": "functions.get_weather:0", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"id": "functions.get_time:1", "name": "get_time", "arguments": '{"tz": "UTC"}'},
    ]
    assert state.finish_reason == "tool_calls"
    assert state.usage == Usage(prompt_tokens=50, completion_tokens=20, reasoning_tokens=5)
    assert state.model == "moonshotai/Kimi-K2-Thinking"
    assert state.request_id == "chatcmpl-ns"
    assert state.output_tokens == 20
    assert state.first_token_at is not None


def test_load_completion_error_body() -> None:
    state = StreamState()
    state.load_completion({"error": {"message": "model retired", "code": 404}})
    assert state.error == {"message": "model retired", "code": 404}
    assert state.content == ""


# -- harmony --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain answer", ("", "plain answer")),
        ("  <|channel|>analysis<|message|>x", ("", "  <|channel|>analysis<|message|>x")),
        (
            "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final"
            "<|message|>Answer.<|return|>",
            ("Think.", "Answer."),
        ),
        ("<|channel|>analysis<|message|>still thinking", ("still thinking", "")),
        ("<|channel|>analysis<|message|>a<|end|>Tail text", ("a", "Tail text")),
        (
            "<|channel|>analysis<|message|>one<|end|><|start|>assistant<|channel|>commentary "
            "to=functions.f <|constrain|>json<|message|>{}<|call|>",
            ("one\n{}", ""),
        ),
        ("<|channel|>final<|message|>Only <b>final</b><|end|>", ("", "Only <b>final</b>")),
    ],
)
def test_split_harmony(text: str, expected: tuple[str, str]) -> None:
    assert split_harmony(text) == expected


def test_harmony_markers_are_split_in_the_result_only() -> None:
    state, _ = replay("harmony.sse")
    assert state.content.startswith("<|channel|>analysis")  # stripped nothing while streaming
    result = state.result(status="ok")
    assert result.reasoning == "User wants a greeting."
    assert result.content == "Hello!"
    assert result.choices[0].content == "Hello!"


def test_harmony_reasoning_is_appended_to_streamed_reasoning() -> None:
    state = StreamState()
    state.feed(chunk(choice(reasoning_content="Real reasoning.")))
    state.feed(chunk(choice(content="<|channel|>analysis<|message|>Leaked.<|end|>Done")))
    result = state.result(status="ok")
    assert result.reasoning == "Real reasoning.\nLeaked."
    assert result.content == "Done"


# -- result ---------------------------------------------------------------------------------


def test_result_fields() -> None:
    state, _ = replay("reasoning_content.sse")
    result = state.result(
        status="ok", cost=Decimal("0.0000517"), latency_s=2.5, parsed={"x": 1}, request_id="req-9"
    )
    assert isinstance(result, ChatResult)
    assert result.content == "2 + 2 = **4**"
    assert result.reasoning == "The user asks 2+2. That is 4."
    assert result.tool_calls == []
    assert result.finish_reason == "stop"
    assert result.model == "zai-org/GLM-4.7"
    assert result.usage == Usage(prompt_tokens=20, completion_tokens=18, reasoning_tokens=10)
    assert result.cost == Decimal("0.0000517")
    assert result.parsed == {"x": 1}
    assert result.status == "ok"
    assert result.error is None
    assert result.latency_s == 2.5
    assert result.ttft_s is not None
    assert result.ttft_s > 0
    assert result.request_id == "req-9"
    assert len(result.choices) == 1


def test_result_defaults() -> None:
    clock = FakeClock()
    state = StreamState(clock=clock, started_at=100.0)
    result = state.result(status="interrupted")
    assert result.cost == Decimal(0)
    assert result.latency_s == clock.now - 100.0
    assert result.ttft_s is None
    assert result.request_id is None
    assert result.status == "interrupted"
    assert result.choices == (Choice(index=0, content=""),)


def test_result_is_a_snapshot() -> None:
    state = StreamState()
    state.feed(chunk(choice(tool_calls=[{"index": 0, "id": "a", "function": {"name": "f"}}])))
    result = state.result(status="ok")
    state.feed(
        chunk(choice(content="more", tool_calls=[{"index": 0, "function": {"arguments": "{}"}}]))
    )
    assert result.content == ""
    assert result.tool_calls == [{"id": "a", "name": "f", "arguments": ""}]


def test_delta_is_a_frozen_value() -> None:
    assert Delta() == NO_DELTA
    assert Delta("a") == Delta(content="a", reasoning="", tool_calls_changed=False)
    with pytest.raises(AttributeError):
        NO_DELTA.content = "x"  # type: ignore[misc]
    assert not hasattr(NO_DELTA, "__dict__")


def _events(wire: bytes) -> Iterator[str]:
    decoder = SSEDecoder()
    for event in decoder.feed(wire):
        yield event.data


def test_state_matches_a_plain_reference_accumulation() -> None:
    """Every fixture, fed chunk by chunk, gives the text a naive loop over the JSON gives."""
    for path in sorted(STREAMS.glob("*.sse")):
        state = StreamState()
        content: list[str] = []
        for data in _events(path.read_bytes()):
            state.feed_data(data)
            if data.startswith("{"):
                for item in json.loads(data).get("choices", []):
                    if item.get("index", 0) == 0:
                        content.append((item.get("delta") or {}).get("content") or "")
        assert state.content == "".join(content), path.name
