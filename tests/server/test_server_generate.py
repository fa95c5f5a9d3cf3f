"""The local server's deterministic answers and schema sampling, without any network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from baseten_magic.server.generate import (
    GenerationRequest,
    count_prompt_tokens,
    plan,
    tokenize,
)
from baseten_magic.server.schema_sample import sample, violate


@pytest.mark.parametrize(
    "text", ["", "   ", "one", "Hello, world!\n", "  lead\n\ntrail  ", "a\tb\r\nc", "é ü 日本"]
)
def test_tokens_join_back_to_the_text(text: str) -> None:
    assert "".join(tokenize(text)) == text


def test_a_token_is_a_word_with_its_trailing_piece() -> None:
    assert tokenize("Hello, world!\n\nNext") == ["Hello, ", "world!\n\n", "Next"]


def request(text: str, **extra: Any) -> GenerationRequest:
    return GenerationRequest(model="m", messages=[{"role": "user", "content": text}], **extra)


def test_prompt_tokens_are_deterministic_and_grow_with_the_prompt() -> None:
    short = [{"role": "user", "content": "hi"}]
    longer = [{"role": "user", "content": "hi there friend"}]
    assert count_prompt_tokens(short) == count_prompt_tokens(short) == 4 + 1 + 3
    assert count_prompt_tokens(longer) == count_prompt_tokens(short) + 2
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert count_prompt_tokens(short, tools) > count_prompt_tokens(short)


def test_words_paragraphs_are_sixty_tokens() -> None:
    choice = plan(request("/words 150"))[0]
    text = "".join(choice.content)
    paragraphs = text.split("\n\n")
    assert [len(p.split()) for p in paragraphs] == [60, 60, 30]
    assert text.endswith(".")


def test_thinking_modes() -> None:
    def reasoning(mode: str, **extra: Any) -> int:
        return len(plan(request("q", reasoning_mode=mode, **extra))[0].reasoning)

    assert reasoning("none") == 0
    assert reasoning("always", enable_thinking=False) == 48
    assert reasoning("default_on") == 48
    assert reasoning("default_on", enable_thinking=False) == 0
    assert reasoning("opt_in") == 0
    assert reasoning("opt_in", enable_thinking=True, reasoning_effort="high") == 128


def test_max_tokens_cuts_tool_arguments_too() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"a": {}, "b": {}, "c": {}}},
        },
    }
    full = plan(request("Call f", tools=[tool]))[0]
    assert full.finish_reason == "tool_calls"
    cut = plan(request("Call f", tools=[tool], max_tokens=3))[0]
    assert cut.finish_reason == "length"
    assert cut.completion_tokens == 3
    assert cut.tool_calls[0].fragments == full.tool_calls[0].fragments[:2]


def test_schema_sampling_covers_common_keywords() -> None:
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date"},
            "code": {"type": "string", "minLength": 12, "maxLength": 14},
            "count": {"type": "integer", "exclusiveMinimum": 100, "multipleOf": 5},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "number", "minimum": 7}]},
            "fixed": {"const": "v1"},
            "both": {
                "allOf": [
                    {"properties": {"x": {"type": "boolean"}}},
                    {"properties": {"y": {"type": "array", "maxItems": 1, "items": {}}}},
                ]
            },
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
            "free": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    }
    value = sample(schema, ["Alpha", "Beta"])
    assert value["when"] == "2026-01-15"
    assert 12 <= len(value["code"]) <= 14
    assert value["count"] > 100
    assert value["count"] % 5 == 0
    assert value["maybe"] >= 7
    assert value["fixed"] == "v1"
    assert value["both"] == {"x": True, "y": [value["both"]["y"][0]]}
    assert isinstance(value["pair"][0], int)
    assert isinstance(value["pair"][1], str)
    assert isinstance(value["free"]["key"], int)
    json.dumps(value)


def test_violate_breaks_the_first_property_or_the_root_type() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert violate(schema, sample(schema)) == {"n": "not an integer"}
    assert isinstance(violate({"type": "array", "items": {}}, []), str)


def test_default_answer_is_a_labelled_stand_in_that_names_model_and_settings() -> None:
    ask = "How do I compute a rolling mean in pandas?"
    choice = plan(
        GenerationRequest(
            model="openai/gpt-oss-120b",
            messages=[{"role": "user", "content": ask}],
            reasoning_mode="always",
            temperature=0.71,
            seed=3,
            max_tokens=900,
            reasoning_effort="low",
        )
    )[0]
    text = "".join(choice.content)
    first = text.split("\n\n")[0]
    assert "stand-in" in first.lower()
    assert "no model ran" in first
    assert f'You asked: "{ask}"' in text
    assert "**openai/gpt-oss-120b** would have answered" in text
    for setting in ("temperature 0.7", "seed 3", "max_tokens 900", "reasoning on (effort low)"):
        assert setting in text
    # One of each Markdown feature: a list, a table (text left, numbers right), code, math.
    assert text.count("\n- ") >= 3
    assert "|---|---:|" in text
    assert f"question = {json.dumps(ask)}" in text
    assert "$e^{i\\pi}+1=0$" in text
    # No filler vocabulary: every line is about the request or the rendering.
    for salad in ("latency budget", "baseline feature", "steady useful"):
        assert salad not in text
    reasoning = "".join(choice.reasoning)
    assert len(choice.reasoning) == 16
    assert reasoning.startswith("(Stand-in reasoning, no model ran.)")
    assert "How do I" in reasoning


def test_default_answer_without_settings_says_defaults_and_is_deterministic() -> None:
    one = "".join(plan(request("What is a monad?"))[0].content)
    assert one == "".join(plan(request("What is a monad?"))[0].content)
    assert "**m** would have answered this, with the model's default settings." in one
    assert one != "".join(plan(request("What is a monad?", seed=9))[0].content)


def test_json_and_tool_answers_are_labelled_too() -> None:
    value = json.loads(
        "".join(plan(request("Q", response_format={"type": "json_object"}))[0].content)
    )
    assert "stand-in" in value["answer"]
    assert "stand-in" in value["tags"]
