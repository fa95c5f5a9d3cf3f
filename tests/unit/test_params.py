"""The 44 request parameters: table, validation, assignments and request building."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import pytest

from baseten_magic.core.catalog import default_catalog
from baseten_magic.core.errors import BasetenWarning, ParameterError
from baseten_magic.core.params import PARAMETERS, build_request, parse_assignment, validate_params

EXPECTED_NAMES = [
    "model",
    "messages",
    "max_tokens",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "seed",
    "stop",
    "n",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
    "reasoning_effort",
    "top_k",
    "min_p",
    "repetition_penalty",
    "length_penalty",
    "early_stopping",
    "best_of",
    "min_tokens",
    "ignore_eos",
    "stop_token_ids",
    "include_stop_str_in_output",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "truncate_prompt_tokens",
    "echo",
    "add_generation_prompt",
    "add_special_tokens",
    "documents",
    "chat_template",
    "chat_template_args",
    "bad",
    "bad_token_ids",
    "top_p_min",
    "disaggregated_params",
]

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
BOOLEANS = [
    "logprobs",
    "stream",
    "parallel_tool_calls",
    "ignore_eos",
    "include_stop_str_in_output",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "echo",
    "add_generation_prompt",
    "add_special_tokens",
]

# name → (good values, bad values); every parameter has at least one of each.
CASES: dict[str, tuple[list[Any], list[Any]]] = {
    "model": (["gpt-oss", "openai/gpt-oss-120b"], ["", 3, None]),
    "messages": (
        [
            "hello",
            [{"role": "user", "content": "hi"}],
            [{"role": "developer", "content": [{"type": "text", "text": "x"}]}],
            [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}],
            [{"role": "tool", "content": "42", "tool_call_id": "1"}],
        ],
        [
            [],
            [{"role": "robot", "content": "hi"}],
            [{"role": "user", "content": None}],
            [{"role": "assistant"}],
            [{"role": "user", "content": 5}],
            ["just a string in a list"],
            {"role": "user", "content": "hi"},
        ],
    ),
    "max_tokens": ([1, 4096, 10.0], [0, -5, 1.5, True, "100", float("nan")]),
    "temperature": ([0, 0.7, 4, 2], [-0.1, 4.01, 7, "0.7", True, float("nan"), float("inf")]),
    "top_p": ([1, 0.01, 0.5], [0, -0.1, 1.1, False]),
    "presence_penalty": ([-2, 0, 2, 1.5], [-2.1, 2.5, "1"]),
    "frequency_penalty": ([-2, 0, 2], [3, -3, None]),
    "logit_bias": (
        [{"1234": -100}, {50256: 100, "7": 0.5}, {}, {"12": 101}, {"12": -100.5}],
        [{"abc": 1}, {"12": True}, [1, 2], {"-3": 1}, {"12": float("inf")}],
    ),
    "logprobs": ([True, False], [1, 0, "true", None]),
    "top_logprobs": ([0, 5, 20], [21, -1, 2.5, True]),
    "seed": ([0, 42, -7, 2**40, 2**63 - 1, -(2**63)], [1.5, "42", True, 2**63, -(2**63) - 1]),
    "stop": (
        ["###", ["a", "b"], ["x"] * 32, []],
        ["", ["x"] * 33, ["ok", 3], [""], 5, {"a": 1}],
    ),
    "n": ([1, 3], [0, -1, 1.2]),
    "stream": ([True, False], ["yes", 1]),
    "stream_options": (
        [{"include_usage": True}, {"continuous_usage_stats": False}, {}],
        [{"include_usage": "yes"}, True, "include_usage"],
    ),
    "tools": (
        [[TOOL], [], [{"type": "function", "function": {"name": "f"}}]],
        [
            TOOL,
            [{"type": "retrieval"}],
            [{"type": "function", "function": {"name": ""}}],
            [{"type": "function", "function": {"name": "f", "parameters": []}}],
        ],
    ),
    "tool_choice": (
        ["none", "auto", "required", {"type": "function", "function": {"name": "f"}}],
        ["always", {"type": "function"}, {"type": "function", "function": {}}, 1],
    ),
    "parallel_tool_calls": ([True, False], [0, "false"]),
    "response_format": (
        [
            {"type": "text"},
            {"type": "json_object"},
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        ],
        [
            {"type": "xml"},
            "json_object",
            {"type": "json_schema"},
            {"type": "json_schema", "json_schema": {"schema": {}}},
            {"type": "json_schema", "json_schema": {"name": "x", "schema": "object"}},
        ],
    ),
    "user": (["analyst-42"], [42, ""]),
    "reasoning_effort": (["low", "medium", "high", "HIGH"], ["max", "", 2]),
    "top_k": ([-1, 0, 1, 50], [-2, 2.5, True]),
    "min_p": ([0, 0.05, 1], [-0.01, 1.01, "0.1"]),
    "repetition_penalty": ([1, 0.5, 1.2, 3], [0, -1, "1"]),
    "length_penalty": ([1.0, -0.5, 0], ["long", float("inf"), True]),
    "early_stopping": ([True, False, "never"], ["sometimes", 1]),
    "best_of": ([1, 4], [0, 2.5]),
    "min_tokens": ([0, 16], [-1, 0.5]),
    "ignore_eos": ([True], [1]),
    "stop_token_ids": ([[128001, 0], []], [[-1], ["12"], 12, [True]]),
    "include_stop_str_in_output": ([False], ["no"]),
    "skip_special_tokens": ([False], [0]),
    "spaces_between_special_tokens": ([True], [None]),
    "truncate_prompt_tokens": ([1, 8192], [0, -1, 1.5]),
    "echo": ([True], ["true"]),
    "add_generation_prompt": ([False], [[]]),
    "add_special_tokens": ([True], [{}]),
    "documents": (
        [
            [{"title": "Notes", "text": "abc"}],
            [],
            [{"title": "Notes"}],
            [{"url": "u", "body": "b"}],
        ],
        [[{"title": 1, "text": "x"}], {"title": "a", "text": "b"}, ["text"]],
    ),
    "chat_template": (["{{ messages }}"], ["", 3]),
    "chat_template_args": ([{"enable_thinking": True}, {}], [["enable_thinking"], {1: 2}]),
    "bad": (["word", ["a", "b"]], [3, ["a", 1], ""]),
    "bad_token_ids": ([[1, 2]], [[1.5], "1,2"]),
    "top_p_min": ([0, 1e-6, 1], [-0.1, 1.5, "0.1"]),
    "disaggregated_params": ([{"ctx": 1}], ["x", [1]]),
}

GOOD = [(name, value) for name, (good, _) in CASES.items() for value in good]
BAD = [(name, value) for name, (_, bad) in CASES.items() for value in bad]


def test_table_has_exactly_the_44_parameters_in_order() -> None:
    assert list(PARAMETERS) == EXPECTED_NAMES
    assert len(PARAMETERS) == 44


def test_every_parameter_has_a_good_and_a_bad_case() -> None:
    assert set(CASES) == set(PARAMETERS)
    for name, (good, bad) in CASES.items():
        assert good, name
        assert bad, name


def test_every_spec_is_described() -> None:
    for name, spec in PARAMETERS.items():
        assert spec.name == name
        assert spec.help and "\n" not in spec.help
        assert spec.kind in ("number", "integer", "boolean", "string", "choice", "json")
        assert spec.hint
        assert spec.constraint
    assert all(PARAMETERS[name].kind == "boolean" for name in BOOLEANS)


@pytest.mark.filterwarnings("ignore::baseten_magic.core.errors.BasetenWarning")
@pytest.mark.parametrize(("name", "value"), GOOD)
def test_good_values_pass(name: str, value: Any) -> None:
    PARAMETERS[name].validate(value)


@pytest.mark.parametrize(("name", "value"), BAD)
def test_bad_values_raise_one_line_errors(name: str, value: Any) -> None:
    with pytest.raises(ParameterError) as info:
        PARAMETERS[name].validate(value)
    message = str(info.value)
    assert "\n" not in message
    assert name in message
    assert "got" in message


def test_error_text_says_expected_got_and_what_to_pass() -> None:
    with pytest.raises(ParameterError) as info:
        validate_params({"temperature": 7})
    assert str(info.value) == (
        "temperature must be a number from 0 to 4, got 7 (Baseten's range); "
        "pass e.g. --temperature 0.7"
    )


def test_error_names_the_wrong_type() -> None:
    with pytest.raises(ParameterError, match=r'got "0.7" \(a string\)'):
        validate_params({"top_p": "0.7"})


def test_normalization() -> None:
    out = validate_params(
        {
            "max_tokens": 10.0,
            "temperature": 1,
            "logit_bias": {50256: -100},
            "reasoning_effort": "HIGH",
            "tool_choice": "Auto",
            "stop": ("a", "b"),
            "messages": "hi",
        }
    )
    assert out["max_tokens"] == 10
    assert type(out["max_tokens"]) is int
    assert type(out["temperature"]) is float
    assert out["logit_bias"] == {"50256": -100}
    assert out["reasoning_effort"] == "high"
    assert out["tool_choice"] == "auto"
    assert out["stop"] == ["a", "b"]
    assert out["messages"] == [{"role": "user", "content": "hi"}]


def test_none_means_not_set_and_dashes_are_accepted() -> None:
    assert validate_params({"temperature": None, "top-p": 0.5}) == {"top_p": 0.5}


def test_same_parameter_twice_is_an_error() -> None:
    with pytest.raises(ParameterError, match="given twice"):
        validate_params({"top_p": 0.5, "top-p": 0.6})


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ParameterError) as info:
        validate_params({"temprature": 0.5})
    message = str(info.value)
    assert "did you mean 'temperature'?" in message
    assert "%baseten help params" in message
    assert "\n" not in message


def test_unknown_name_without_close_match() -> None:
    with pytest.raises(ParameterError) as info:
        validate_params({"zzzzzz": 1})
    assert "did you mean" not in str(info.value)
    assert "%baseten help params" in str(info.value)


def test_disaggregated_params_warns_but_passes() -> None:
    with pytest.warns(BasetenWarning, match="disaggregated_params"):
        out = validate_params({"disaggregated_params": {"request_type": "context_only"}})
    assert out == {"disaggregated_params": {"request_type": "context_only"}}


def test_top_logprobs_needs_logprobs() -> None:
    with pytest.raises(ParameterError, match="logprobs=true"):
        validate_params({"top_logprobs": 5})
    with pytest.raises(ParameterError, match="logprobs=true"):
        validate_params({"top_logprobs": 5, "logprobs": False})
    assert validate_params({"top_logprobs": 5, "logprobs": True})["top_logprobs"] == 5


def test_min_tokens_at_most_max_tokens() -> None:
    with pytest.raises(ParameterError, match="min_tokens must be at most max_tokens"):
        validate_params({"min_tokens": 100, "max_tokens": 10})
    assert validate_params({"min_tokens": 10, "max_tokens": 10})["min_tokens"] == 10
    assert validate_params({"min_tokens": 10_000})["min_tokens"] == 10_000


def test_best_of_at_least_n() -> None:
    with pytest.raises(ParameterError, match="best_of must be at least n"):
        validate_params({"n": 3, "best_of": 2})
    assert validate_params({"n": 2, "best_of": 2})["best_of"] == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("temperature=0.7", ("temperature", 0.7)),
        ("top-p=1", ("top_p", 1)),
        ("stop=###", ("stop", "###")),
        ('stop=["a", "b"]', ("stop", ["a", "b"])),
        ("logprobs=true", ("logprobs", True)),
        ("user=null", ("user", None)),
        (
            'chat_template_args={"enable_thinking": true}',
            ("chat_template_args", {"enable_thinking": True}),
        ),
        ("stop=a=b", ("stop", "a=b")),
        ("stop=", ("stop", "")),
        ("temperature=NaN", ("temperature", "NaN")),
        (" seed = 42", ("seed", 42)),
    ],
)
def test_parse_assignment(text: str, expected: tuple[str, Any]) -> None:
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["temperature", "=1", ""])
def test_parse_assignment_rejects_malformed(text: str) -> None:
    with pytest.raises(ParameterError, match="NAME=VALUE"):
        parse_assignment(text)


def test_parsed_nan_fails_validation() -> None:
    name, value = parse_assignment("temperature=NaN")
    with pytest.raises(ParameterError):
        validate_params({name: value})
    assert not isinstance(value, float) or not math.isnan(value)


# --- build_request ---------------------------------------------------------------------------


def test_build_request_resolves_alias_and_forces_include_usage() -> None:
    body = build_request(
        "hi",
        model="gpt-oss",
        stream=True,
        params={"temperature": 0.2, "stream_options": {"continuous_usage_stats": True}},
        catalog=default_catalog(),
    )
    assert body["model"] == "openai/gpt-oss-120b"
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["stream"] is True
    assert body["stream_options"] == {"continuous_usage_stats": True, "include_usage": True}
    assert body["temperature"] == 0.2


def test_build_request_overrides_include_usage_false() -> None:
    body = build_request(
        [{"role": "user", "content": "hi"}],
        model="glm",
        stream=True,
        params={"stream_options": {"include_usage": False}},
        catalog=default_catalog(),
    )
    assert body["stream_options"] == {"include_usage": True}


def test_build_request_without_stream_drops_stream_options() -> None:
    body = build_request(
        "hi",
        model="glm",
        stream=False,
        params={"stream_options": {"include_usage": True}},
        catalog=default_catalog(),
    )
    assert body["stream"] is False
    assert "stream_options" not in body


def test_build_request_validates_params() -> None:
    with pytest.raises(ParameterError, match="temperature"):
        build_request(
            "hi", model="glm", stream=True, params={"temperature": 9}, catalog=default_catalog()
        )


def test_build_request_rejects_reserved_keys_in_params() -> None:
    with pytest.raises(ParameterError, match="-m MODEL"):
        build_request(
            "hi", model="glm", stream=True, params={"model": "kimi"}, catalog=default_catalog()
        )


def test_build_request_refuses_a_retired_model_by_its_date() -> None:
    with pytest.raises(ParameterError) as info:
        build_request(
            "hi",
            model="glm-4.6",
            stream=True,
            params={},
            catalog=default_catalog(),
            today=date(2026, 12, 1),
        )
    assert str(info.value) == (
        "glm-4.6 (zai-org/GLM-4.6) was retired on 2026-05-01; use glm (zai-org/GLM-4.7)"
    )
    body = build_request(
        "hi",
        model="glm-4.6",
        stream=True,
        params={},
        catalog=default_catalog(),
        today=date(2026, 4, 30),
    )
    assert body["model"] == "zai-org/GLM-4.6"


def test_model_lists_in_errors_leave_retired_models_out() -> None:
    with pytest.raises(ParameterError) as info:
        build_request(
            "hi",
            model="kimi-thinking",
            stream=True,
            params={},
            catalog=default_catalog(),
            thinking=True,
            today=date(2026, 12, 1),
        )
    assert "zai-org/GLM-4.7" in str(info.value)
    assert "GLM-4.6" not in str(info.value)


@pytest.mark.parametrize("thinking", [True, False])
def test_thinking_merges_into_chat_template_args(thinking: bool) -> None:
    body = build_request(
        "hi",
        model="kimi",
        stream=True,
        params={"chat_template_args": {"enable_thinking": not thinking, "other": 1}},
        catalog=default_catalog(),
        thinking=thinking,
    )
    assert body["model"] == "moonshotai/Kimi-K2.5"
    assert body["chat_template_args"] == {"enable_thinking": thinking, "other": 1}


def test_thinking_none_leaves_template_args_alone() -> None:
    body = build_request("hi", model="glm", stream=True, params={}, catalog=default_catalog())
    assert "chat_template_args" not in body


@pytest.mark.parametrize("model", ["kimi-thinking", "kimi-k2", "gpt-oss"])
def test_thinking_on_untoggleable_model_is_an_error(model: str) -> None:
    with pytest.raises(ParameterError) as info:
        build_request(
            "hi", model=model, stream=True, params={}, catalog=default_catalog(), thinking=True
        )
    message = str(info.value)
    assert "cannot be switched" in message
    assert "zai-org/GLM-4.7" in message


def test_thinking_on_unknown_slug_is_passed_through() -> None:
    body = build_request(
        "hi",
        model="acme/new-model",
        stream=False,
        params={},
        catalog=default_catalog(),
        thinking=True,
    )
    assert body["model"] == "acme/new-model"
    assert body["chat_template_args"] == {"enable_thinking": True}


def test_reasoning_effort_on_unsupported_model_names_the_ones_that_do() -> None:
    with pytest.raises(ParameterError) as info:
        build_request(
            "hi",
            model="glm",
            stream=True,
            params={"reasoning_effort": "high"},
            catalog=default_catalog(),
        )
    message = str(info.value)
    assert "zai-org/GLM-4.7" in message
    assert "openai/gpt-oss-120b" in message


def test_reasoning_effort_on_gpt_oss() -> None:
    body = build_request(
        "hi",
        model="gpt-oss",
        stream=True,
        params={"reasoning_effort": "low"},
        catalog=default_catalog(),
    )
    assert body["reasoning_effort"] == "low"


def test_build_request_unknown_alias() -> None:
    with pytest.raises(ParameterError, match="did you mean 'kimi'"):
        build_request("hi", model="kimmi", stream=True, params={}, catalog=default_catalog())


def test_build_request_ignores_reserved_keys_set_to_none() -> None:
    body = build_request(
        "hi",
        model="glm",
        stream=False,
        params={"model": None, "stream": None},
        catalog=default_catalog(),
    )
    assert body["model"] == "zai-org/GLM-4.7"
    assert body["stream"] is False


def test_never_stricter_than_the_server() -> None:
    """Values vLLM or Baseten accept are accepted: the validator is never stricter than they are."""
    assert validate_params({"top_k": 0})["top_k"] == 0
    assert validate_params({"top_p_min": 0})["top_p_min"] == 0
    assert validate_params({"top_logprobs": 0}) == {"top_logprobs": 0}
    for kind in ("structural_tag", "grammar"):
        fmt = {"type": kind, "structures": [], "triggers": []}
        assert validate_params({"response_format": fmt})["response_format"] == fmt
    # The server clamps a bias; so does the validator.
    assert validate_params({"logit_bias": {"5": 250, "6": -1e9}})["logit_bias"] == {
        "5": 100,
        "6": -100,
    }


def test_max_completion_tokens_is_max_tokens() -> None:
    assert validate_params({"max_completion_tokens": 64}) == {"max_tokens": 64}
    with pytest.raises(ParameterError, match="given twice"):
        validate_params({"max_tokens": 1, "max_completion_tokens": 2})


def test_real_typos_still_get_did_you_mean() -> None:
    with pytest.raises(ParameterError, match="did you mean 'temperature'"):
        validate_params({"temprature": 0.5})


def test_a_seed_outside_64_bits_is_refused() -> None:
    with pytest.raises(ParameterError, match="signed 64 bits"):
        validate_params({"seed": 2**64})
