"""Tools: specs from functions, resolving names, running calls, and the messages sent back."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypedDict

import pytest

from baseten_magic.core.catalog import default_catalog
from baseten_magic.core.errors import ParameterError
from baseten_magic.core.result import ChatResult, ToolCall
from baseten_magic.core.tools import (
    ToolOutput,
    aexecute_tool_calls,
    execute_tool_calls,
    parse_docstring,
    resolve_tools,
    tool_messages,
    tool_spec,
    tool_specs,
)
from baseten_magic.engine.call import CallContext, ChatCall, prepare_request
from baseten_magic.io.client import Client
from baseten_magic.io.ledger import Ledger
from baseten_magic.server import LocalServer


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


@dataclass
class Place:
    city: str
    country: str = "FR"


class Window(TypedDict):
    days: int
    hourly: bool


class Opaque:
    """A class pydantic cannot describe."""


def get_weather(
    place: Place,
    unit: Unit = Unit.CELSIUS,
    when: Literal["now", "tomorrow"] = "now",
    window: Optional[Window] = None,  # noqa: UP045 - the Optional spelling is under test
    tags: list[str] | None = None,
    limits: dict[str, float] | None = None,
    note: Annotated[str, "free text for the forecaster"] = "",
) -> dict[str, Any]:
    """Get the weather forecast for a place.

    Looks it up in a very reliable source.

    Args:
        place: where to look.
        unit: temperature unit,
            Celsius by default.
        note: ignored (the Annotated text wins).

    Returns:
        The forecast.
    """
    return {"city": place.city, "unit": unit.value, "when": when}


def _params(fn: Any) -> dict[str, Any]:
    parameters: dict[str, Any] = tool_spec(fn)["function"]["parameters"]
    return parameters


# -- specs --------------------------------------------------------------------------------------


def test_spec_shape_description_and_required() -> None:
    spec = tool_spec(get_weather)
    assert spec["type"] == "function"
    function = spec["function"]
    assert function["name"] == "get_weather"
    assert function["description"] == "Get the weather forecast for a place."
    parameters = function["parameters"]
    assert parameters["type"] == "object"
    assert parameters["required"] == ["place"]
    assert parameters["additionalProperties"] is False
    json.dumps(spec)  # a spec is plain JSON


def test_spec_types_enums_defaults_and_descriptions() -> None:
    props = _params(get_weather)["properties"]
    assert props["place"]["type"] == "object"
    assert props["place"]["required"] == ["city"]
    assert props["place"]["properties"]["country"] == {"type": "string", "default": "FR"}
    assert props["place"]["description"] == "where to look."
    assert props["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert props["unit"]["default"] == "celsius"
    assert props["unit"]["description"] == "temperature unit, Celsius by default."
    assert props["when"] == {"enum": ["now", "tomorrow"], "type": "string", "default": "now"}
    window = props["window"]["anyOf"]
    assert window[1] == {"type": "null"}
    assert window[0]["required"] == ["days", "hourly"]
    assert props["window"]["default"] is None
    assert props["tags"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}}
    assert props["limits"]["anyOf"][0]["additionalProperties"] == {"type": "number"}
    assert props["note"]["description"] == "free text for the forecaster"
    assert props["note"]["default"] == ""


def test_unannotated_default_infers_its_type() -> None:
    def f(count=3, name="x"):  # type: ignore[no-untyped-def]
        """Count."""

    props = _params(f)["properties"]
    assert props["count"] == {"type": "integer", "default": 3}
    assert props["name"] == {"type": "string", "default": "x"}


def test_numpy_and_rest_docstrings() -> None:
    def numpy_style(a: int, b: str) -> None:
        """Do a thing.

        Parameters
        ----------
        a : int
            The first value.
        b : str
            The second
            value.

        Returns
        -------
        None
        """

    def rest_style(a: int, b: str) -> None:
        """Do another thing.

        :param a: the first value
        :param str b: the second value
        :returns: nothing
        """

    for fn, first, second in [
        (numpy_style, "The first value.", "The second value."),
        (rest_style, "the first value", "the second value"),
    ]:
        props = _params(fn)["properties"]
        assert props["a"]["description"] == first
        assert props["b"]["description"] == second
    assert parse_docstring(None) == ("", {})
    assert parse_docstring("One line only.") == ("One line only.", {})


def test_star_args_are_rejected() -> None:
    def takes_args(*args: int) -> None:
        """Nope."""

    def takes_kwargs(a: int, **options: str) -> None:
        """Nope."""

    with pytest.raises(ParameterError, match=r"\*args"):
        tool_spec(takes_args)
    with pytest.raises(ParameterError, match=r"\*\*options") as info:
        tool_spec(takes_kwargs)
    assert "\n" not in str(info.value)


def test_unsupported_parameter_types_name_the_parameter() -> None:
    def keyed(counts: dict[int, str]) -> None:
        """Keys must be strings in JSON."""

    def opaque(thing: Opaque) -> None:
        """Not a type JSON can carry."""

    with pytest.raises(
        ParameterError, match=r"tool keyed\(\), parameter 'counts': .*dict\[str, X\]"
    ):
        tool_spec(keyed)
    with pytest.raises(
        ParameterError, match=r"parameter 'thing': .*Opaque.*pydantic model"
    ) as info:
        tool_spec(opaque)
    assert "\n" not in str(info.value)


def test_any_parameter_name_and_defaults_json_cannot_show() -> None:
    marker = object()

    def odd(json: int, _private: str = "a", sentinel: object = marker) -> str:
        """Odd names and a default with no JSON form."""
        return f"{json}{_private}{sentinel is marker}"

    params = _params(odd)
    assert params["required"] == ["json"]
    assert params["properties"]["_private"] == {"type": "string", "default": "a"}
    assert params["properties"]["sentinel"] == {}
    [out] = execute_tool_calls([_call("odd", '{"json": 2, "_private": "b"}')], [odd])
    assert out.result == "2bTrue"


def test_not_a_function_and_duplicate_names() -> None:
    with pytest.raises(ParameterError, match="expected a function"):
        tool_spec(42)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="unique"):
        tool_specs([get_weather, get_weather])
    assert [s["function"]["name"] for s in tool_specs({"w": get_weather})] == ["get_weather"]


# -- resolving names ----------------------------------------------------------------------------


def test_resolve_tools_finds_functions_and_suggests_names() -> None:
    namespace = {"get_weather": get_weather, "answer": 42, "Place": Place}
    assert resolve_tools(["get_weather", " get_weather "], namespace) == [get_weather]
    with pytest.raises(ParameterError, match="did you mean 'get_weather'") as info:
        resolve_tools(["get_wether"], namespace)
    assert "\n" not in str(info.value)
    with pytest.raises(ParameterError, match="is a int, not a function"):
        resolve_tools(["answer"], namespace)
    with pytest.raises(ParameterError, match="class Place"):
        resolve_tools(["Place"], namespace)
    assert resolve_tools(["json.dumps"], {"json": json}) == [json.dumps]


# -- running calls ------------------------------------------------------------------------------


def _call(name: str, arguments: str, call_id: str = "call_1") -> ToolCall:
    return {"id": call_id, "name": name, "arguments": arguments}


def test_execute_decodes_converts_and_encodes() -> None:
    calls = [_call("get_weather", '{"place": {"city": "Paris"}, "unit": "fahrenheit"}')]
    [out] = execute_tool_calls(calls, [get_weather])
    assert out.ok
    assert out.call_id == "call_1"
    assert out.arguments == {"place": {"city": "Paris"}, "unit": "fahrenheit"}
    assert json.loads(out.result) == {"city": "Paris", "unit": "fahrenheit", "when": "now"}
    assert out.content == out.result


def test_execute_reports_every_failure_to_the_model() -> None:
    def boom(x: int) -> str:
        """Fails."""
        raise RuntimeError("disk\non fire")

    calls = [
        _call("boom", '{"x": 1}', "a"),
        _call("nope", "{}", "b"),
        _call("boom", "{not json", "c"),
        _call("boom", "[1]", "d"),
        _call("boom", "{}", "e"),
        _call("boom", '{"x": 1, "y": 2}', "f"),
    ]
    outs = execute_tool_calls(calls, [boom])
    assert [o.call_id for o in outs] == ["a", "b", "c", "d", "e", "f"]
    assert outs[0].error == "ToolError: RuntimeError: disk on fire"
    assert outs[0].content == outs[0].error
    assert outs[1].error is not None
    assert "unknown tool 'nope'" in outs[1].error
    assert "boom" in outs[1].error
    assert outs[2].error is not None
    assert "not valid JSON" in outs[2].error
    assert outs[3].error is not None
    assert "JSON object" in outs[3].error
    assert outs[4].error is not None
    assert "missing a required argument: 'x'" in outs[4].error
    assert outs[5].error is not None
    assert "unexpected keyword argument 'y'" in outs[5].error
    assert all(not o.ok for o in outs)


def test_arguments_are_validated_and_converted_before_the_call() -> None:
    seen: list[tuple[Any, ...]] = []

    def plan(
        place: Place, days: int, unit: Unit = Unit.CELSIUS, window: Window | None = None
    ) -> str:
        """Plan a trip."""
        seen.append((place, days, unit, window))
        return "ok"

    calls = [
        _call(
            "plan",
            '{"place": {"city": "Oslo"}, "days": 3, "unit": "fahrenheit",'
            ' "window": {"days": 2, "hourly": true}}',
            "a",
        ),
        _call("plan", '{"place": {"city": 7}, "days": 1}', "b"),
        _call("plan", '{"place": {"city": "Oslo"}, "days": 1, "unit": "kelvin"}', "c"),
        _call("plan", '{"place": {"city": "Oslo"}, "days": 1, "window": {"days": 1}}', "d"),
        _call("plan", '{"place": {"city": "Oslo"}, "days": "3"}', "e"),
    ]
    ok, bad_city, bad_unit, bad_window, bad_days = execute_tool_calls(calls, [plan])
    assert ok.ok, ok.error
    assert seen == [(Place("Oslo"), 3, Unit.FAHRENHEIT, {"days": 2, "hourly": True})]
    assert isinstance(seen[0][0], Place)
    assert bad_city.error == (
        "ToolError: bad arguments for plan(): at $.place.city: expected string, got 7"
    )
    assert bad_unit.error is not None
    assert 'at $.unit: expected one of string "celsius", string "fahrenheit"' in bad_unit.error
    assert bad_window.error is not None
    assert "at $.window: missing required property 'hourly'" in bad_window.error
    assert bad_days.error is not None
    assert 'at $.days: expected integer, got string "3"' in bad_days.error
    assert bad_city.arguments == {"place": {"city": 7}, "days": 1}
    assert len(seen) == 1  # a bad argument never reaches the function


def test_return_values_are_encoded() -> None:
    @dataclass
    class Reading:
        value: float

    def text() -> str:
        """A string comes back as it is."""
        return "Sunny"

    def reading() -> Reading:
        """A dataclass comes back as JSON."""
        return Reading(1.5)

    def odd() -> object:
        """Anything else falls back to str."""
        return {1, 2}

    outs = execute_tool_calls(
        [_call("text", ""), _call("reading", "{}"), _call("odd", "{}")], [text, reading, odd]
    )
    assert [o.result for o in outs] == ["Sunny", '{"value": 1.5}', "[1, 2]"]


def test_async_tools_need_the_async_executor() -> None:
    import asyncio

    async def later(x: int) -> int:
        """Async."""
        return x * 2

    [sync_out] = execute_tool_calls([_call("later", '{"x": 2}')], [later])
    assert sync_out.error is not None
    assert "arun_tool_loop" in sync_out.error
    [async_out] = asyncio.run(aexecute_tool_calls([_call("later", '{"x": 2}')], [later]))
    assert async_out.result == "4"


# -- messages -----------------------------------------------------------------------------------


def test_tool_messages_send_ids_verbatim_and_reasoning_for_kimi() -> None:
    call = _call("get_weather", '{"place": {"city": "Paris"}}', "functions.get_weather:0")
    result = ChatResult(
        content="", reasoning="I should look it up.", tool_calls=[call], finish_reason="tool_calls"
    )
    out = ToolOutput("functions.get_weather:0", "get_weather", {}, "sunny")
    kimi = default_catalog().resolve("moonshotai/Kimi-K2-Thinking")
    assistant, tool = tool_messages(result, [out], model=kimi)
    assert assistant["role"] == "assistant"
    assert assistant["content"] is None
    assert assistant["reasoning_content"] == "I should look it up."
    assert assistant["tool_calls"] == [
        {
            "id": "functions.get_weather:0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"place": {"city": "Paris"}}'},
        }
    ]
    assert tool == {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "sunny"}
    plain = ChatResult(content="ok", tool_calls=[call], finish_reason="tool_calls")
    [assistant, _] = tool_messages(plain, [out], model="openai/gpt-oss-120b")
    assert "reasoning_content" not in assistant
    assert assistant["content"] == "ok"


# -- assembling streamed tool calls from the local server ---------------------------------------


@pytest.fixture
def server(session_server: LocalServer) -> LocalServer:
    """The shared server: these tests only read answers."""
    return session_server


@pytest.mark.parametrize(
    ("model", "id_pattern"),
    [("moonshotai/Kimi-K2-Instruct-0905", r"functions\.\w+:\d+"), ("gpt-oss", r"call_[0-9a-f]+")],
)
def test_streamed_fragments_assemble_with_the_first_id(
    server: LocalServer, tmp_path: Path, model: str, id_pattern: str
) -> None:
    def get_time(city: str, country: str) -> str:
        """The local time in a city."""
        return "12:00"

    fns: list[Callable[..., Any]] = [get_weather, get_time]
    request = prepare_request(
        "Weather and time in Paris?", model=model, params={"tools": tool_specs(fns)}
    )
    call = ChatCall(request, CallContext(session="t", ledger=Ledger(tmp_path / "l.db")))
    with Client(base_url=server.url, api_key=server.api_key) as client:
        result = call.run(client)
    assert result.finish_reason == "tool_calls"
    assert [c["name"] for c in result.tool_calls] == ["get_weather", "get_time"]
    import re

    for tool_call in result.tool_calls:
        assert re.fullmatch(id_pattern, tool_call["id"]), tool_call["id"]
        json.loads(tool_call["arguments"])  # every fragment arrived, in order
    outs = execute_tool_calls(result.tool_calls, fns)
    assert all(o.ok for o in outs), [o.error for o in outs]
    assert outs[1].result == "12:00"


def test_tool_results_are_always_valid_json() -> None:
    import json

    import pydantic

    from baseten_magic.core.tools import encode_result

    class Reading(pydantic.BaseModel):
        city: str
        celsius: float

    encoded = encode_result({"reading": Reading(city="Oslo", celsius=-3.5), "bad": float("nan")})
    assert json.loads(encoded) == {"reading": {"city": "Oslo", "celsius": -3.5}, "bad": "nan"}
    assert encode_result("plain text") == "plain text"
