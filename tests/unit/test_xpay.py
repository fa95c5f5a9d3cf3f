"""The xpay route without I/O: settings, redaction, the listing's schema, argument encoding,
result decoding, error mapping, the ledger's route column, and what `import` must not load."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from baseten_magic.core import settings
from baseten_magic.core.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ModelNotFoundError,
    ParameterError,
    RateLimitError,
    ServerError,
    StreamError,
)
from baseten_magic.core.params import PARAMETERS
from baseten_magic.core.pricing import XPAY_PRICING, pricing_for_route
from baseten_magic.core.xpay import (
    LISTING_OBJECT_INPUTS,
    LISTING_STRING_INPUTS,
    completion_from_result,
    decode_argument,
    encode_arguments,
    listing_schema,
    rpc_error,
)
from baseten_magic.engine.call import CallContext
from baseten_magic.io.ledger import Ledger, LedgerRow, _v1

KEY = "xpay-secret-0123456789abcdef"
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "openai/gpt-oss-120b",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi!", "reasoning_content": "think"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3},
}


@pytest.fixture(autouse=True)
def _no_xpay_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("XPAY_KEY", "XPAY_MCP_URL"):
        monkeypatch.delenv(name, raising=False)


# -- settings --------------------------------------------------------------------------------


def test_route_defaults_to_baseten_and_reads_the_env_at_call_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings.route() == "baseten"
    monkeypatch.setenv("BASETEN_MAGIC_ROUTE", " XPay ")
    assert settings.route() == "xpay"
    assert settings.route("baseten") == "baseten"


def test_an_unknown_route_is_one_line_saying_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASETEN_MAGIC_ROUTE", "openrouter")
    with pytest.raises(ConfigurationError) as info:
        settings.route()
    message = str(info.value)
    assert "BASETEN_MAGIC_ROUTE must be baseten or xpay, got 'openrouter'" in message
    assert "\n" not in message


def test_a_missing_xpay_key_says_how_to_set_it() -> None:
    with pytest.raises(ConfigurationError) as info:
        settings.xpay_key()
    message = str(info.value)
    assert message.startswith("XPAY_KEY is not set")
    assert "%baseten key --route xpay" in message  # a hidden prompt: %env would echo the key
    assert "%env" not in message
    assert "python -m baseten_magic.server --mcp" in message
    assert "\n" not in message


def test_the_xpay_url_defaults_to_the_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.xpay_url() == "https://baseten.mcp.xpay.sh/mcp"
    monkeypatch.setenv("XPAY_MCP_URL", "ftp://x?key=" + KEY)
    with pytest.raises(ConfigurationError) as info:
        settings.xpay_url()
    assert KEY not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        f"https://baseten.mcp.xpay.sh/mcp?key={KEY}",
        f"POST http://127.0.0.1:8/mcp?a=1&key={KEY}&b=2 failed",
        f"url='https://mcp.xpay.sh/mcp?key={KEY}'",
        "https://mcp.xpay.sh/mcp?KEY=other-secret-value",
    ],
)
def test_redact_blanks_key_query_values_even_without_the_env(text: str) -> None:
    redacted = settings.redact(text)
    assert KEY not in redacted
    assert "other-secret-value" not in redacted
    assert "key=***" in redacted.lower()


def test_redact_blanks_the_xpay_key_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPAY_KEY", KEY)
    assert settings.redact(f"the key {KEY} leaked") == "the key *** leaked"


# -- the schema and the arguments ------------------------------------------------------------


def test_the_listing_schema_has_the_44_inputs_and_the_listing_types() -> None:
    schema = listing_schema()
    properties = schema["properties"]
    assert list(properties) == list(PARAMETERS)
    assert len(properties) == 44
    assert schema["required"] == ["model", "messages"]
    assert {n for n, p in properties.items() if p["type"] == "object"} == set(LISTING_OBJECT_INPUTS)
    for name in LISTING_STRING_INPUTS:
        assert properties[name]["type"] == "string"
    assert properties["max_tokens"]["type"] == "integer"
    assert properties["reasoning_effort"]["enum"] == ["low", "medium", "high"]


def test_arguments_follow_the_listing_schema() -> None:
    body = {
        "model": "openai/gpt-oss-120b",
        "messages": [{"role": "user", "content": "é?"}],
        "stop": ["END"],
        "tool_choice": "auto",
        "logit_bias": {"42": -5},
        "response_format": {"type": "json_object"},
        "max_tokens": 9,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    args = encode_arguments(body, listing_schema())
    assert args["messages"] == '[{"role":"user","content":"é?"}]'
    assert args["stop"] == '["END"]'
    assert args["tool_choice"] == "auto"  # already a string: sent as is
    assert args["logit_bias"] == {"42": -5}
    assert args["response_format"] == {"type": "json_object"}
    assert args["max_tokens"] == 9
    assert args["stream"] is False  # the answer arrives whole on this route
    assert "stream_options" not in args


def test_arguments_follow_another_split_too() -> None:
    schema = listing_schema(
        {"messages": "array", "stop": "array", "logit_bias": "string", "tools": "array"}
    )
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "stop": "END",
        "logit_bias": {"1": 2},
    }
    args = encode_arguments(body, schema)
    assert args["messages"] == [{"role": "user", "content": "x"}]
    assert args["stop"] == ["END"]  # a lone string where only an array fits
    assert args["logit_bias"] == '{"1":2}'


def test_types_as_lists_and_any_of_are_understood() -> None:
    schema = {
        "properties": {
            "model": {"type": "string"},
            "messages": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "stop": {"type": ["string", "array"]},
        }
    }
    args = encode_arguments({"model": "m", "messages": [{"a": 1}], "stop": ["x"]}, schema)
    assert args == {"model": "m", "messages": '[{"a":1}]', "stop": ["x"]}


def test_an_input_the_served_tool_lacks_is_a_parameter_error() -> None:
    schema = {"properties": {"model": {"type": "string"}, "messages": {"type": "string"}}}
    with pytest.raises(ParameterError) as info:
        encode_arguments({"model": "m", "messages": [], "top_k": 5}, schema)
    assert "takes no 'top_k' input" in str(info.value)


def test_the_stand_in_decodes_json_text_back() -> None:
    prop = {"type": "string"}
    assert decode_argument('[{"role":"user"}]', prop) == [{"role": "user"}]
    assert decode_argument("auto", prop) == "auto"
    assert decode_argument("123", prop) == "123"  # a scalar stays the string it was
    assert decode_argument({"a": 1}, {"type": "object"}) == {"a": 1}


# -- results ---------------------------------------------------------------------------------


def _text(value: object) -> list[dict[str, object]]:
    return [{"type": "text", "text": value if isinstance(value, str) else json.dumps(value)}]


def test_a_completion_as_text_content() -> None:
    assert completion_from_result(_text(COMPLETION)) == COMPLETION


def test_a_completion_as_structured_content_or_wrapped_or_double_encoded() -> None:
    assert completion_from_result([], COMPLETION) == COMPLETION
    assert completion_from_result([], {"result": COMPLETION}) == COMPLETION
    assert completion_from_result(_text(json.dumps(json.dumps(COMPLETION)))) == COMPLETION
    assert completion_from_result(_text({"result": json.dumps(COMPLETION)})) == COMPLETION


def test_an_error_result_is_one_line() -> None:
    with pytest.raises(BadRequestError) as info:
        completion_from_result(
            _text("Input 'messages' must be a string\nsecond line"), None, is_error=True
        )
    message = str(info.value)
    assert (
        "baseten_chat_completions returned an error: Input 'messages' must be a string" in message
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    ("body", "cls"),
    [
        ({"error": {"message": "slow down", "code": 429}}, RateLimitError),
        ({"object": "error", "message": "no key", "code": 401}, AuthenticationError),
        ({"error": "boom", "status": "503"}, ServerError),
        (
            {"error": {"message": "gone", "code": "model_not_found", "status": 404}},
            ModelNotFoundError,
        ),
    ],
)
def test_an_error_result_naming_a_status_maps_by_it(body: dict[str, object], cls: type) -> None:
    with pytest.raises(cls) as info:
        completion_from_result(_text(body), None, is_error=True)
    assert str(info.value).startswith("xpay ")


def test_an_error_body_without_is_error_is_still_an_error() -> None:
    with pytest.raises(RateLimitError):
        completion_from_result(_text({"error": {"message": "x", "code": 429}}))


def test_a_result_without_a_completion_says_what_arrived() -> None:
    with pytest.raises(StreamError) as info:
        completion_from_result(_text("Here is your answer: hello"))
    assert "expected the chat.completion JSON" in str(info.value)
    assert "Here is your answer" in str(info.value)


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        (-32602, None, BadRequestError),
        (-32601, None, BadRequestError),
        (-32603, None, ServerError),
        (-32001, None, APITimeoutError),
        (-32000, None, APIConnectionError),
        (-32603, 401, AuthenticationError),
        (-32603, 429, RateLimitError),
    ],
)
def test_json_rpc_errors_map_onto_the_tree(code: int, status: int | None, cls: type) -> None:
    error = rpc_error(code, "something\nhappened", http_status=status)
    assert type(error) is cls
    assert "\n" not in str(error)


# -- pricing and the ledger ------------------------------------------------------------------


def test_the_route_fixes_the_pricing() -> None:
    assert pricing_for_route("xpay") == XPAY_PRICING
    assert XPAY_PRICING.per_call == Decimal("0.01")
    assert pricing_for_route("baseten") is None
    assert CallContext(session="s", route="xpay").billing == XPAY_PRICING
    assert CallContext(session="s").billing.mode == "per_token"


def test_an_old_ledger_gains_the_route_column_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    _v1(conn)
    conn.execute(
        "INSERT INTO calls (ts, session, model, status, pricing_mode, source, cost_usd) "
        "VALUES ('2026-01-01T00:00:00+00:00', 's', 'm', 'ok', 'per_token', 'api', '0.5')"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    ledger = Ledger(path)
    assert ledger.schema_version == 2
    ledger.record(LedgerRow(session="s", model="m", route="xpay", pricing_mode="per_call"))
    old, new = ledger.rows()
    assert (old.route, old.cost_usd) == ("baseten", Decimal("0.5"))
    assert new.route == "xpay"


def test_a_ledger_row_refuses_an_unknown_route() -> None:
    with pytest.raises(ValueError, match="ledger route must be one of baseten, xpay"):
        LedgerRow(route="other")


# -- imports ---------------------------------------------------------------------------------


def test_importing_the_package_and_the_api_does_not_load_mcp() -> None:
    code = (
        "import sys, baseten_magic, baseten_magic.api, baseten_magic.io.routes, "
        "baseten_magic.server; "
        "print(sorted(m for m in ('mcp', 'mcp_types', 'httpx2', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
