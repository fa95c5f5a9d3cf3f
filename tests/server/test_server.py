"""The local Baseten-compatible server, driven with raw httpx on loopback: routes, auth, errors,
the streaming wire format and its quirks, deterministic answers, tools, faults and pacing."""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from baseten_magic.server import Fault, LocalServer, use_local_server

GPT = "openai/gpt-oss-120b"
GLM = "zai-org/GLM-4.7"
KIMI = "moonshotai/Kimi-K2-Instruct-0905"
KIMI_THINKING = "moonshotai/Kimi-K2-Thinking"
DEEPSEEK = "deepseek-ai/DeepSeek-V3.1"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(allow_n=False) as s:
        yield s


@pytest.fixture
def client(server: LocalServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as c:
        yield c


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def body(text: str = "Tell me about Paris", model: str = KIMI, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": user(text), **extra}


def stream_body(
    text: str = "Tell me about Paris", model: str = KIMI, **extra: Any
) -> dict[str, Any]:
    extra.setdefault("stream_options", {"include_usage": True})
    return body(text, model, stream=True, **extra)


class Streamed:
    """A stream split into SSE comments and decoded data payloads."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.comments: list[str] = []
        self.data: list[str] = []
        for block in raw.split("\n\n"):
            for line in block.split("\n"):
                if line.startswith(":"):
                    self.comments.append(line)
                elif line.startswith("data: "):
                    self.data.append(line[len("data: ") :])

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(d) for d in self.data if d != "[DONE]"]

    def text(self, field: str = "content") -> str:
        return "".join(
            c["choices"][0]["delta"].get(field) or "" for c in self.chunks if c.get("choices")
        )

    def finish(self) -> str | None:
        reasons = [ch["finish_reason"] for c in self.chunks for ch in c.get("choices", [])]
        return next((r for r in reasons if r), None)

    def tool_fragments(self) -> list[list[dict[str, Any]]]:
        return [
            c["choices"][0]["delta"]["tool_calls"]
            for c in self.chunks
            if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
        ]


def stream(client: httpx.Client, payload: dict[str, Any]) -> Streamed:
    with client.stream("POST", "/chat/completions", json=payload) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["transfer-encoding"] == "chunked"
        raw = b"".join(response.iter_raw())
    return Streamed(raw.decode("utf-8"))


def complete(client: httpx.Client, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/chat/completions", json=payload)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def assemble_tool_calls(streamed: Streamed) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for fragments in streamed.tool_fragments():
        for fragment in fragments:
            call = calls.setdefault(fragment["index"], {"id": fragment["id"], "arguments": ""})
            function = fragment.get("function", {})
            if "name" in function:
                call["name"] = function["name"]
            call["arguments"] += function.get("arguments", "")
    return calls


# --- routes and auth -------------------------------------------------------------------------


def test_models_list_has_catalog_items_with_per_token_prices(client: httpx.Client) -> None:
    payload = client.get("/models").json()
    assert payload["object"] == "list"
    items = {item["id"]: item for item in payload["data"]}
    glm = items[GLM]
    assert glm["object"] == "model"
    assert glm["owned_by"] == "zai-org"
    assert glm["context_length"] == 200000
    assert "max_completion_tokens" in glm
    assert "tools" in glm["supported_features"]
    assert glm["pricing"] == {
        "prompt": "0.0000006",
        "completion": "0.0000022",
        "input_cache_read": "0.00000012",
    }
    # Retired models are not offered.
    assert "deepseek-ai/DeepSeek-V3-0324" not in items


@pytest.mark.parametrize("scheme", ["Bearer", "Api-Key"])
def test_both_auth_schemes_are_accepted(server: LocalServer, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {server.api_key}"}
    assert httpx.get(server.url + "/models", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Api-Key wrong"}]
)
def test_missing_or_wrong_key_is_401_in_string_shape(
    server: LocalServer, headers: dict[str, str]
) -> None:
    response = httpx.post(server.url + "/chat/completions", json=body(), headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert isinstance(error, str)
    assert "API key" in error
    assert server.api_key not in response.text


def test_unknown_route_is_404(client: httpx.Client) -> None:
    response = client.get("/nothing-here")
    assert response.status_code == 404
    assert "Unknown route" in response.json()["error"]["message"]


def test_unknown_model_is_404_object_shape_listing_known_models(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=body(model="acme/nonexistent"))
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "acme/nonexistent" in error["message"]
    assert GLM in error["message"]


def test_retired_model_is_404_with_retired_message(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=body(model="zai-org/GLM-4.6"))
    assert response.status_code == 404
    assert "retired" in response.json()["error"]["message"]


def test_retirement_follows_the_date() -> None:
    with LocalServer(today=date(2026, 1, 1)) as early:
        headers = {"Authorization": f"Bearer {early.api_key}"}
        response = httpx.post(
            early.url + "/chat/completions", json=body(model="zai-org/GLM-4.6"), headers=headers
        )
        assert response.status_code == 200


def test_invalid_parameter_is_400_flat_shape(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=body(temperature=9))
    assert response.status_code == 400
    payload = response.json()
    assert payload["object"] == "error"
    assert "temperature" in payload["message"]
    response = client.post("/chat/completions", json=body(temprature=1))
    assert response.status_code == 400
    assert "did you mean" in response.json()["message"]


def test_bad_json_body_is_400_flat_shape(server: LocalServer, client: httpx.Client) -> None:
    response = client.post(
        "/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    payload = response.json()
    assert payload["object"] == "error"
    assert "invalid JSON" in payload["message"]
    # The connection stays usable afterwards.
    assert client.get("/models").status_code == 200


@pytest.mark.parametrize("name", ["n", "best_of"])
def test_n_above_one_is_refused_by_default(client: httpx.Client, name: str) -> None:
    response = client.post("/chat/completions", json={**body(), name: 2})
    assert response.status_code == 400
    assert f"{name} must be 1" in response.json()["message"]


def test_n_above_one_when_allowed_gives_distinct_choices() -> None:
    with LocalServer(allow_n=True) as s:
        headers = {"Authorization": f"Bearer {s.api_key}"}
        with httpx.Client(base_url=s.url, headers=headers) as c:
            result = complete(c, body(n=3))
            contents = [ch["message"]["content"] for ch in result["choices"]]
            assert [ch["index"] for ch in result["choices"]] == [0, 1, 2]
            assert len(set(contents)) == 3
            streamed = stream(c, stream_body(n=2))
            by_index: dict[int, str] = {0: "", 1: ""}
            for chunk in streamed.chunks:
                for choice in chunk["choices"]:
                    by_index[choice["index"]] += choice["delta"].get("content") or ""
            assert by_index[0] == contents[0]
            assert by_index[1] == contents[1]
            finishes = [ch for c in streamed.chunks for ch in c["choices"] if ch["finish_reason"]]
            assert sorted(ch["index"] for ch in finishes) == [0, 1]


# --- streaming wire format ---------------------------------------------------------------


def test_stream_format_usage_and_done(client: httpx.Client) -> None:
    streamed = stream(client, stream_body("/words 120"))
    chunks = streamed.chunks
    assert streamed.data[-1] == "[DONE]"
    assert streamed.comments and all(c == ": keep-alive" for c in streamed.comments)
    assert len(streamed.comments) >= 2  # one before the first event, more along the way
    first = chunks[0]
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content_chunks = [c for c in chunks if c["choices"] and "content" in c["choices"][0]["delta"]]
    counts = [c["usage"]["completion_tokens"] for c in content_chunks]
    assert counts == list(range(121))  # cumulative, never summed
    finish = chunks[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["usage"] is None
    trailing = chunks[-1]
    assert trailing["choices"] == []
    assert trailing["usage"]["completion_tokens"] == 120
    assert trailing["usage"]["total_tokens"] == trailing["usage"]["prompt_tokens"] + 120
    assert trailing["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert trailing["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert len({c["id"] for c in chunks}) == 1


def test_without_include_usage_there_is_no_usage(client: httpx.Client) -> None:
    streamed = stream(client, body(stream=True))
    assert streamed.chunks
    assert all("usage" not in c for c in streamed.chunks)
    assert all(c["choices"] for c in streamed.chunks)


def test_trailing_usage_can_be_omitted() -> None:
    with LocalServer(trailing_usage=False) as s:
        headers = {"Authorization": f"Bearer {s.api_key}"}
        with httpx.Client(base_url=s.url, headers=headers) as c:
            streamed = stream(c, stream_body())
    assert all(chunk["choices"] for chunk in streamed.chunks)
    assert streamed.chunks[-1]["usage"] is None
    assert streamed.chunks[-2]["usage"]["completion_tokens"] > 0


def test_stream_and_non_stream_say_the_same(client: httpx.Client) -> None:
    streamed = stream(client, stream_body("Explain caching", model=GPT, seed=3))
    whole = complete(client, body("Explain caching", model=GPT, seed=3))
    message = whole["choices"][0]["message"]
    assert streamed.text() == message["content"]
    assert streamed.text("reasoning_content") == message["reasoning_content"]
    assert streamed.chunks[-1]["usage"] == whole["usage"]
    assert whole["object"] == "chat.completion"


def test_default_answer_is_markdown_about_the_question(client: httpx.Client) -> None:
    content = complete(client, body("What is a monad?"))["choices"][0]["message"]["content"]
    assert content.startswith("**Local stand-in answer.**")
    assert "What is a monad?" in content
    assert "\n\n" in content
    assert "\n- " in content
    assert "```python\n" in content
    assert "|---|---:|" in content
    assert "$e^{i\\pi}+1=0$" in content
    assert 80 <= len(content.split()) <= 200


# --- reasoning ------------------------------------------------------------------------------


def reasoning_tokens(client: httpx.Client, model: str, **extra: Any) -> int:
    usage = complete(client, body(model=model, **extra))["usage"]
    return int(usage["completion_tokens_details"]["reasoning_tokens"])


@pytest.mark.parametrize(("effort", "count"), [("low", 16), ("medium", 48), ("high", 128)])
def test_gpt_oss_reasoning_follows_effort(client: httpx.Client, effort: str, count: int) -> None:
    assert reasoning_tokens(client, GPT, reasoning_effort=effort) == count


def test_reasoning_modes_per_model(client: httpx.Client) -> None:
    assert reasoning_tokens(client, GPT) == 48
    assert reasoning_tokens(client, KIMI_THINKING) > 0
    assert reasoning_tokens(client, KIMI) == 0
    assert reasoning_tokens(client, GLM) == 0
    assert reasoning_tokens(client, GLM, chat_template_args={"enable_thinking": True}) > 0
    assert reasoning_tokens(client, DEEPSEEK) > 0
    off = {"enable_thinking": False}
    assert reasoning_tokens(client, DEEPSEEK, chat_template_args=off) == 0
    assert reasoning_tokens(client, KIMI_THINKING, chat_template_args=off) > 0


def test_reasoning_streams_first_under_reasoning_content(client: httpx.Client) -> None:
    streamed = stream(client, stream_body(model=GPT, reasoning_effort="low"))
    deltas = [c["choices"][0]["delta"] for c in streamed.chunks if c["choices"]]
    kinds = [next(iter(d)) for d in deltas[1:] if d]
    assert kinds[:16] == ["reasoning_content"] * 16
    assert kinds[16] == "content"
    assert streamed.chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 16


def test_reasoning_field_can_be_renamed() -> None:
    with LocalServer(reasoning_field="reasoning") as s:
        headers = {"Authorization": f"Bearer {s.api_key}"}
        with httpx.Client(base_url=s.url, headers=headers) as c:
            streamed = stream(c, stream_body(model=GPT))
            whole = complete(c, body(model=GPT))
    assert streamed.text("reasoning")
    assert not streamed.text("reasoning_content")
    assert whole["choices"][0]["message"]["reasoning"]
    assert "reasoning_content" not in whole["choices"][0]["message"]


# --- limits and determinism ---------------------------------------------------------------


def test_max_tokens_counts_reasoning_and_ends_with_length(client: httpx.Client) -> None:
    result = complete(client, body(model=GPT, reasoning_effort="low", max_tokens=20))
    assert result["choices"][0]["finish_reason"] == "length"
    assert result["usage"]["completion_tokens"] == 20
    assert len(result["choices"][0]["message"]["content"].split()) == 4
    streamed = stream(client, stream_body("/words 50", max_tokens=10))
    assert streamed.finish() == "length"
    assert len(streamed.text().split()) == 10


def test_stop_cuts_before_the_first_occurrence(client: httpx.Client) -> None:
    text = "/echo alpha beta gamma delta"
    result = complete(client, body(text, stop=["gamma", "delta"]))
    assert result["choices"][0]["message"]["content"] == "alpha beta "
    assert result["choices"][0]["finish_reason"] == "stop"
    streamed = stream(client, stream_body(text, stop="ta g"))
    assert streamed.text() == "alpha be"


def test_seed_and_temperature_are_deterministic_and_vary(client: httpx.Client) -> None:
    def answer(**extra: Any) -> str:
        return str(complete(client, body("Hello", **extra))["choices"][0]["message"]["content"])

    assert answer(seed=1) == answer(seed=1)
    assert answer(seed=1) != answer(seed=2)
    assert answer(seed=1, temperature=0.71) == answer(seed=1, temperature=0.7)
    assert answer(seed=1, temperature=0.7) != answer(seed=1, temperature=0.2)


def test_echo_preserves_text_and_newlines(client: httpx.Client) -> None:
    text = "line one,\n\n  indented *two*\n"
    streamed = stream(client, stream_body("/echo " + text))
    assert streamed.text() == text
    content_chunks = [c for c in streamed.chunks if c["choices"] and c["choices"][0]["delta"]]
    assert len(content_chunks) - 1 == 4  # "line ", "one,\n\n  ", "indented ", "*two*\n"


def test_words_gives_exactly_n_tokens_in_paragraphs(client: httpx.Client) -> None:
    streamed = stream(client, stream_body("/words 130"))
    text = streamed.text()
    assert len(text.split()) == 130
    assert text.count("\n\n") == 2
    assert streamed.chunks[-1]["usage"]["completion_tokens"] == 130


def test_words_scales_to_a_hundred_thousand(client: httpx.Client) -> None:
    result = complete(client, body("/words 100000"))
    assert result["usage"]["completion_tokens"] == 100000
    assert len(result["choices"][0]["message"]["content"].split()) == 100000


# --- structured output ---------------------------------------------------------------------


def test_json_object_mode_and_bad_json(client: httpx.Client) -> None:
    mode = {"type": "json_object"}
    content = complete(client, body(response_format=mode))["choices"][0]["message"]["content"]
    assert isinstance(json.loads(content), dict)
    broken = complete(client, body("Reply /bad-json", response_format=mode))
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken["choices"][0]["message"]["content"])


SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "population": {"type": "integer", "minimum": 1000},
        "ratio": {"type": "number", "maximum": 1},
        "capital": {"type": "boolean"},
        "kind": {"enum": ["town", "city"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3},
        "mayor": {"$ref": "#/$defs/person"},
    },
    "required": ["city", "population"],
    "$defs": {"person": {"type": "object", "properties": {"name": {"type": "string"}}}},
}


def test_json_schema_answer_matches_the_schema(client: httpx.Client) -> None:
    mode = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}}
    content = complete(client, body("Describe Lyon", response_format=mode))["choices"][0]
    value = json.loads(content["message"]["content"])
    assert value["city"] == "Lyon"
    assert isinstance(value["population"], int)
    assert value["population"] >= 1000
    assert value["ratio"] <= 1
    assert value["capital"] is True
    assert value["kind"] == "town"
    assert len(value["tags"]) == 3
    assert isinstance(value["mayor"]["name"], str)


def test_schema_mismatch_is_valid_json_that_breaks_the_schema(client: httpx.Client) -> None:
    mode = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}}
    result = complete(client, body("Lyon /schema-mismatch", response_format=mode))
    value = json.loads(result["choices"][0]["message"]["content"])
    assert not isinstance(value["city"], str)


# --- tools ----------------------------------------------------------------------------------


def test_parallel_tools_round_zero_calls_every_tool_with_kimi_ids(client: httpx.Client) -> None:
    streamed = stream(client, stream_body("Weather in Paris and Tokyo?", tools=[WEATHER, TIME]))
    assert streamed.finish() == "tool_calls"
    calls = assemble_tool_calls(streamed)
    assert calls[0]["id"] == "functions.get_weather:0"
    assert calls[1]["id"] == "functions.get_time:1"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert json.loads(calls[1]["arguments"]) == {"city": "Tokyo"}
    fragments = streamed.tool_fragments()
    ids = [f["id"] for group in fragments for f in group]
    assert len(set(ids)) == len(ids)  # every fragment carries a new id
    assert any(len(group) > 1 for group in fragments)  # several fragments in one event
    assert all(len({f["index"] for f in group}) == 1 for group in fragments)


def test_other_models_use_call_hex_ids(client: httpx.Client) -> None:
    result = complete(client, body("Weather in Oslo", model=GLM, tools=[WEATHER]))
    call = result["choices"][0]["message"]["tool_calls"][0]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert json.loads(call["function"]["arguments"])["city"] == "Oslo"
    assert result["choices"][0]["finish_reason"] == "tool_calls"


def run_tools(
    client: httpx.Client, model: str, rounds: int, **extra: Any
) -> tuple[list[list[str]], str]:
    messages = user("Weather and time in Rome?")
    called: list[list[str]] = []
    for _ in range(rounds):
        result = complete(client, {"model": model, "messages": messages, **extra})
        message = result["choices"][0]["message"]
        if not message.get("tool_calls"):
            return called, str(message["content"])
        called.append([c["function"]["name"] for c in message["tool_calls"]])
        messages.append({key: value for key, value in message.items() if value is not None})
        for call in message["tool_calls"]:
            result_text = f"result of {call['function']['name']} #{len(called)}"
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result_text})
    return called, ""


def test_parallel_round_then_text_quoting_results(client: httpx.Client) -> None:
    called, answer = run_tools(client, KIMI, 5, tools=[WEATHER, TIME])
    assert called == [["get_weather", "get_time"]]
    assert "result of get_weather #1" in answer
    assert "result of get_time #1" in answer


def test_sequential_rounds_call_one_tool_each(client: httpx.Client) -> None:
    called, answer = run_tools(client, KIMI, 5, tools=[WEATHER, TIME], parallel_tool_calls=False)
    assert called == [["get_weather"], ["get_time"]]
    assert "result of get_weather #1" in answer
    assert "result of get_time #2" in answer


def test_tool_choice_variants(client: httpx.Client) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    called, answer = run_tools(client, KIMI, 5, tools=[WEATHER, TIME], tool_choice=named)
    assert called == [["get_time"]]
    assert answer
    called, _ = run_tools(client, KIMI, 3, tools=[WEATHER, TIME], tool_choice="required")
    assert len(called) == 3
    called, answer = run_tools(client, KIMI, 3, tools=[WEATHER], tool_choice="none")
    assert called == []
    assert "Rome" in answer


def test_reasoning_sent_back_is_required_only_as_an_opt_in_fault(
    client: httpx.Client, server: LocalServer
) -> None:
    first = complete(client, body("Weather in Rome", model=KIMI_THINKING, tools=[WEATHER]))
    message = first["choices"][0]["message"]
    assert message["reasoning_content"]
    call = message["tool_calls"][0]
    tool_reply = {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
    without = {"role": "assistant", "content": None, "tool_calls": message["tool_calls"]}
    payload = body(model=KIMI_THINKING, tools=[WEATHER])
    payload["messages"] = [*user("Weather in Rome"), without, tool_reply]
    # By default the server is not stricter than the facts: the loop goes on.
    assert "sunny" in complete(client, payload)["choices"][0]["message"]["content"]
    server.inject(Fault("reasoning_required"))
    response = client.post("/chat/completions", json=payload)
    assert response.status_code == 400
    assert "reasoning_content" in response.json()["message"]
    server.inject(Fault("reasoning_required"))
    payload["messages"][1] = {**without, "reasoning_content": message["reasoning_content"]}
    answer = complete(client, payload)["choices"][0]["message"]["content"]
    assert "sunny" in answer


# --- logprobs and caching --------------------------------------------------------------------


def test_logprobs_per_token_with_alternatives(client: httpx.Client) -> None:
    result = complete(client, body("/echo a b c", logprobs=True, top_logprobs=3))
    entries = result["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in entries] == ["a ", "b ", "c"]
    for entry in entries:
        assert entry["logprob"] < 0
        assert len(entry["top_logprobs"]) == 3
        assert entry["top_logprobs"][0]["token"] == entry["token"]
        values = [t["logprob"] for t in entry["top_logprobs"]]
        assert values == sorted(values, reverse=True)
    again = complete(client, body("/echo a b c", logprobs=True, top_logprobs=3))
    assert again["choices"][0]["logprobs"] == result["choices"][0]["logprobs"]
    streamed = stream(client, stream_body("/echo a b c", logprobs=True, top_logprobs=3))
    streamed_entries = [
        e
        for c in streamed.chunks
        if c["choices"] and c["choices"][0]["logprobs"]
        for e in c["choices"][0]["logprobs"]["content"]
    ]
    assert streamed_entries == entries


def test_session_affinity_reports_cached_prefix(client: httpx.Client) -> None:
    session = {"x-session-affinity": "conversation-42"}
    messages = [{"role": "system", "content": "Be brief."}, *user("Hello there")]
    first = client.post(
        "/chat/completions", json={"model": KIMI, "messages": messages}, headers=session
    ).json()
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    longer = [*messages, first["choices"][0]["message"], *user("And more?")]
    second = client.post(
        "/chat/completions", json={"model": KIMI, "messages": longer}, headers=session
    ).json()
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert 0 < cached < second["usage"]["prompt_tokens"]
    assert cached == first["usage"]["prompt_tokens"] - 3
    plain = client.post("/chat/completions", json={"model": KIMI, "messages": longer}).json()
    assert plain["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "check"),
    [
        ("string", lambda p: isinstance(p["error"], str)),
        ("object", lambda p: set(p["error"]) == {"message", "type", "param", "code"}),
        ("flat", lambda p: p["object"] == "error" and "message" in p),
    ],
)
def test_status_fault_429_with_retry_after_in_each_shape(
    server: LocalServer, client: httpx.Client, shape: str, check: Any
) -> None:
    server.inject(Fault("status", status=429, retry_after=2, error_shape=shape))  # type: ignore[arg-type]
    response = client.post("/chat/completions", json=body())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert check(response.json())
    assert client.post("/chat/completions", json=body()).status_code == 200


def test_status_faults_apply_in_order_to_streams_too(
    server: LocalServer, client: httpx.Client
) -> None:
    server.inject(Fault("status", status=503), times=2)
    before = server.request_count
    assert client.post("/chat/completions", json=stream_body()).status_code == 503
    assert client.post("/chat/completions", json=body()).status_code == 503
    assert client.post("/chat/completions", json=body()).status_code == 200
    assert server.request_count - before == 3


def test_cut_fault_closes_mid_stream_without_terminating_chunk(
    server: LocalServer, client: httpx.Client
) -> None:
    server.inject(Fault("cut", after_tokens=5))
    received: list[bytes] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/chat/completions", json=stream_body("/words 50")) as response,
    ):
        assert response.status_code == 200
        received.extend(response.iter_raw())
    streamed = Streamed(b"".join(received).decode())
    assert len(streamed.text().split()) == 5
    assert "[DONE]" not in streamed.data
    assert streamed.finish() is None
    # The server stays healthy.
    assert client.post("/chat/completions", json=body()).status_code == 200


def test_error_event_fault_sends_error_then_done(server: LocalServer, client: httpx.Client) -> None:
    server.inject(Fault("error_event", after_tokens=3, message="GPU fell over"))
    streamed = stream(client, stream_body("/words 20"))
    assert len(streamed.text().split()) == 3
    assert streamed.data[-1] == "[DONE]"
    error = json.loads(streamed.data[-2])
    assert error["error"]["message"] == "GPU fell over"
    assert streamed.finish() is None


def test_stall_fault_pauses_then_continues(server: LocalServer, client: httpx.Client) -> None:
    server.inject(Fault("stall", after_tokens=2, stall_s=0.3))
    arrivals: list[float] = []
    with client.stream("POST", "/chat/completions", json=stream_body("/words 6")) as response:
        for _ in response.iter_raw():
            arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) >= 0.25
    streamed = stream(client, stream_body("/words 6"))
    assert len(streamed.text().split()) == 6


def test_non_streaming_cut_drops_the_connection(server: LocalServer, client: httpx.Client) -> None:
    server.inject(Fault("cut"))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/chat/completions", json=body())


# --- pacing, connections, recording ---------------------------------------------------------


def timed_stream(client: httpx.Client, tokens: int) -> float:
    started = time.monotonic()
    stream(client, stream_body(f"/words {tokens}"))
    return time.monotonic() - started


def test_speed_pacing_is_roughly_honoured(server: LocalServer, client: httpx.Client) -> None:
    try:
        server.set_speed(200)
        slow = timed_stream(client, 60)  # about 0.3 s
        server.set_speed(3000)
        fast = timed_stream(client, 60)  # about 0.02 s
    finally:
        server.set_speed(None)
    assert slow >= 0.25
    assert slow > 3 * fast


def test_open_connections_return_to_zero(server: LocalServer) -> None:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    clients = [httpx.Client(base_url=server.url, headers=headers) for _ in range(3)]
    for c in clients:
        assert c.get("/models").status_code == 200
    assert server.open_connections >= 3
    for c in clients:
        c.close()
    deadline = time.monotonic() + 5
    while server.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.open_connections == 0


def test_client_leaving_mid_stream_is_harmless(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    headers = {"Authorization": f"Bearer {server.api_key}"}
    server.set_speed(500)
    try:
        with (
            httpx.Client(base_url=server.url, headers=headers) as c,
            c.stream("POST", "/chat/completions", json=stream_body("/words 500")) as response,
        ):
            next(response.iter_raw())
    finally:
        server.set_speed(None)
    deadline = time.monotonic() + 5
    while server.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.open_connections == 0
    assert caplog.records == []  # no traceback, no warning


def test_malformed_http_gets_a_flat_400_and_a_closed_connection(server: LocalServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"NONSENSE\r\n\r\n")
        reply = b""
        while chunk := raw.recv(65536):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(payload)["object"] == "error"


def test_keep_alive_serves_many_requests_on_one_connection(server: LocalServer) -> None:
    request = (
        f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.api_key}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        for _ in range(3):
            raw.sendall(request)
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += raw.recv(65536)
            head, _, payload = reply.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(payload) < length:
                payload += raw.recv(65536)
            assert b"Connection: keep-alive" in head
            assert json.loads(payload)["object"] == "list"


def test_fault_rate_injects_random_faults() -> None:
    with LocalServer(fault_rate=1.0, fault_seed=7) as s:
        headers = {"Authorization": f"Bearer {s.api_key}"}
        outcomes = []
        for _ in range(6):
            with httpx.Client(base_url=s.url, headers=headers) as c:
                try:
                    streamed = c.post("/chat/completions", json=stream_body("/words 80"))
                    ok = streamed.status_code == 200 and "[DONE]" in streamed.text
                    outcomes.append(ok and '"error"' not in streamed.text)
                except httpx.RemoteProtocolError:
                    outcomes.append(False)
        assert outcomes == [False] * 6


def test_use_local_server_points_the_environment_at_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASETEN_BASE_URL", raising=False)
    monkeypatch.delenv("BASETEN_API_KEY", raising=False)
    server = use_local_server(tokens_per_second=1000)
    try:
        assert os.environ["BASETEN_BASE_URL"] == server.url
        assert os.environ["BASETEN_API_KEY"] == server.api_key
        assert server.tokens_per_second == 1000
    finally:
        server.stop()
    assert not server.running


def test_requests_are_recorded_with_the_key_redacted(
    server: LocalServer, client: httpx.Client
) -> None:
    complete(client, body("Record me", seed=5))
    recorded = server.requests[-1]
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == "<redacted>"
    assert recorded.body is not None
    assert recorded.body["seed"] == 5
    assert recorded.time <= time.time()
    assert server.api_key not in repr(server.requests)
    assert server.api_key not in repr(server)


def test_demo_key_is_random_and_fault_values_are_checked() -> None:
    assert LocalServer().api_key != LocalServer().api_key
    with pytest.raises(ValueError, match="kind"):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reasoning_field"):
        LocalServer(reasoning_field="thoughts")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"top_k": -5}, "top_k"),
        ({"temprature": 0.5}, "temprature"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"min_tokens": 10, "max_tokens": 5}, "min_tokens"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages"),
    ],
)
def test_400_messages_speak_http_and_name_the_parameter(
    client: httpx.Client, extra: dict[str, Any], param: str
) -> None:
    response = client.post("/chat/completions", json={**body(), **extra})
    assert response.status_code == 400
    error = response.json()
    assert error["param"] == param
    message = error["message"]
    assert "--param" not in message and "%baseten" not in message and "--max-tokens" not in message
    assert "\n" not in message


def test_unauthenticated_bodies_are_never_kept(server: LocalServer) -> None:
    big = {"model": KIMI, "messages": user("x" * 1_000_000)}
    response = httpx.post(f"{server.url}/chat/completions", json=big, timeout=10)
    assert response.status_code == 401
    recorded = server.requests[-1]
    assert recorded.path == "/v1/chat/completions" and recorded.body is None


def test_a_body_over_the_cap_is_413(client: httpx.Client) -> None:
    from baseten_magic.server.http import MAX_BODY_BYTES

    payload = b'{"x": "' + b"a" * (MAX_BODY_BYTES + 1) + b'"}'
    response = client.post(
        "/chat/completions", content=payload, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert MAX_BODY_BYTES <= 16 * 1024 * 1024


def test_the_request_log_is_capped_in_bytes(
    client: httpx.Client, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from baseten_magic.server import app

    monkeypatch.setattr(app, "MAX_RECORDED_BYTES", 300_000)
    for _ in range(5):
        response = client.post(
            "/chat/completions", json=body("/echo hi", extra_field_pad="p" * 100_000)
        )
        assert response.status_code == 400  # unknown parameter, but authenticated: kept
    kept = [r for r in server.requests if r.body is not None]
    assert 0 < sum(len(json.dumps(r.body)) for r in kept) <= 300_000
