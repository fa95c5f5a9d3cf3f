"""Structured output: schemas from types, `response_format`, parsing and validating replies."""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import pydantic
import pytest
import typing_extensions

from baseten_magic.core.errors import OutputParseError, ParameterError
from baseten_magic.core.structured import (
    parse_reply,
    response_format_for,
    schema_for_type,
    schema_of,
    strip_fence,
    validate,
)
from baseten_magic.engine.call import CallContext, ChatCall, prepare_request
from baseten_magic.io.client import Client
from baseten_magic.io.ledger import Ledger
from baseten_magic.server import LocalServer

_NULL = {"type": "null"}


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclass
class Address:
    city: str
    zip_code: str | None = None


@dataclass
class Person:
    """A person we know."""

    name: str
    age: int
    tags: list[str] = field(default_factory=list)
    color: Color = Color.RED
    home: Address | None = None
    scores: dict[str, float] = field(default_factory=dict)


class Movie(TypedDict):
    title: str
    year: int
    rating: NotRequired[float]


class Reading(pydantic.BaseModel):
    """One reading."""

    celsius: float = pydantic.Field(description="degrees")


class Review(typing_extensions.TypedDict):
    """Inside a dataclass, pydantic reads a TypedDict from typing only on Python 3.12+."""

    stars: int
    text: NotRequired[str]


@dataclass
class Station:
    readings: list[Reading]
    best: Review | None = None


@dataclass
class Cat:
    meow: int


@dataclass
class Dog:
    bark: str


@dataclass
class Pet:
    pet: Cat | Dog | None


# -- schemas ------------------------------------------------------------------------------------


def test_scalars_and_containers() -> None:
    assert schema_for_type(str) == {"type": "string"}
    assert schema_for_type(int) == {"type": "integer"}
    assert schema_for_type(float) == {"type": "number"}
    assert schema_for_type(bool) == {"type": "boolean"}
    assert schema_for_type(None) == {"type": "null"}
    assert schema_for_type(list[int]) == {"type": "array", "items": {"type": "integer"}}
    assert schema_for_type(dict[str, bool]) == {
        "type": "object",
        "additionalProperties": {"type": "boolean"},
    }
    assert schema_for_type(tuple[int, str]) == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
    }
    assert schema_for_type(tuple[float, ...]) == {"type": "array", "items": {"type": "number"}}
    assert schema_for_type(int | None) == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert schema_for_type(Literal["a", "b"]) == {"enum": ["a", "b"], "type": "string"}
    assert schema_for_type(Color) == {"enum": ["red", "green"], "type": "string"}
    assert schema_for_type(Annotated[int, "how many"]) == {
        "type": "integer",
        "description": "how many",
    }


def test_dataclass_schema_is_nested_with_defaults_not_required() -> None:
    schema = schema_for_type(Person)
    assert schema["type"] == "object"
    assert schema["description"] == "A person we know."
    assert schema["required"] == ["name", "age"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["color"] == {
        "enum": ["red", "green"],
        "type": "string",
        "default": "red",
    }
    home = schema["properties"]["home"]["anyOf"][0]
    assert home["properties"]["city"] == {"type": "string"}
    assert home["required"] == ["city"]


def test_typeddict_schema_honours_not_required() -> None:
    schema = schema_for_type(Movie)
    assert schema["required"] == ["title", "year"]
    assert set(schema["properties"]) == {"title", "year", "rating"}


def test_unsupported_and_recursive_types_are_parameter_errors() -> None:
    with pytest.raises(ParameterError, match="cannot describe the type"):
        schema_for_type(dict[int, str])

    @dataclass
    class Node:
        child: Node | None = None

    with pytest.raises(ParameterError, match="recursive"):
        schema_for_type(Node)


def test_schema_of_each_kind_of_target() -> None:
    assert schema_of(Person)[0] == "Person"
    assert schema_of(Movie)[1]["required"] == ["title", "year"]
    name, schema = schema_of({"title": "My answer!", "type": "object"})
    assert name == "My_answer"
    assert schema == {"title": "My answer!", "type": "object"}
    wrapped = schema_of({"name": "x", "schema": {"type": "object"}})
    assert wrapped == ("x", {"type": "object"})
    with pytest.raises(ParameterError, match="instance of Person"):
        schema_of(Person("a", 1))


def test_schema_of_pydantic_model() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Point(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        x: int
        y: int = 0

    name, schema = schema_of(Point)
    assert name == "Point"
    assert schema["properties"]["x"]["type"] == "integer"
    value = parse_reply('{"x": 3}', Point)
    assert (value.x, value.y) == (3, 0)
    with pytest.raises(OutputParseError, match=r"\$\.x"):
        parse_reply('{"x": "three"}', Point)


def test_response_format_for() -> None:
    assert response_format_for(False, None) is None
    assert response_format_for(True, None) == {"type": "json_object"}
    fmt = response_format_for(True, Address)
    assert fmt is not None
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Address"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["required"] == ["city", "zip_code"]


def _objects(schema: Any) -> list[dict[str, Any]]:
    """Every object schema (one with properties) nested anywhere in `schema`."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if "properties" in schema:
            found.append(schema)
        for value in schema.values():
            found.extend(_objects(value))
    elif isinstance(schema, list):
        for value in schema:
            found.extend(_objects(value))
    return found


def test_strict_response_format_requires_every_property_and_makes_optional_ones_nullable() -> None:
    fmt = response_format_for(False, Person)
    assert fmt is not None
    schema = fmt["json_schema"]["schema"]
    assert schema["required"] == ["name", "age", "tags", "color", "home", "scores"]
    props = schema["properties"]
    assert props["name"] == {"type": "string"}
    assert props["tags"] == {"anyOf": [{"type": "array", "items": {"type": "string"}}, _NULL]}
    assert props["color"] == {"anyOf": [{"enum": ["red", "green"], "type": "string"}, _NULL]}
    home, null = props["home"]["anyOf"]
    assert null == _NULL
    assert home["required"] == ["city", "zip_code"]
    assert home["properties"]["zip_code"] == {"anyOf": [{"type": "string"}, _NULL]}
    for obj in _objects(schema):
        assert obj["required"] == list(obj["properties"]), obj
        assert obj["additionalProperties"] is False, obj
        assert all("default" not in prop for prop in obj["properties"].values()), obj
    # The schema the reply is checked against is still the one the type describes.
    assert schema_of(Person)[1]["required"] == ["name", "age"]


def test_strict_mode_on_a_schema_dict_and_a_pydantic_model() -> None:
    pydantic = pytest.importorskip("pydantic")
    given = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "integer", "description": "how many", "default": 1},
            "c": {"type": ["string", "null"]},
            "d": {"$ref": "#/$defs/D"},
        },
        "required": ["a"],
        "$defs": {"D": {"type": "object", "properties": {"x": {"type": "number"}}}},
    }
    fmt = response_format_for(False, given)
    assert fmt is not None
    schema = fmt["json_schema"]["schema"]
    assert schema["required"] == ["a", "b", "c", "d"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["b"] == {"anyOf": [{"type": "integer"}, _NULL], "description": "how many"}
    assert props["c"] == {"type": ["string", "null"]}
    assert props["d"] == {"anyOf": [{"$ref": "#/$defs/D"}, _NULL]}
    assert schema["$defs"]["D"] == {
        "type": "object",
        "properties": {"x": {"anyOf": [{"type": "number"}, _NULL]}},
        "required": ["x"],
        "additionalProperties": False,
    }
    assert given["required"] == ["a"]  # the caller's dict is left alone

    class Point(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        x: int
        y: int = 0

    fmt = response_format_for(False, Point)
    assert fmt is not None
    point = fmt["json_schema"]["schema"]
    assert point["required"] == ["x", "y"]
    assert point["additionalProperties"] is False
    assert point["properties"]["y"] == {"anyOf": [{"type": "integer"}, _NULL]}


def test_strict_replies_with_nulls_for_optional_fields_get_the_defaults() -> None:
    text = (
        '{"name": "Ada", "age": 36, "tags": null, "color": null, "scores": null,'
        ' "home": {"city": "London", "zip_code": null}}'
    )
    assert parse_reply(text, Person) == Person("Ada", 36, home=Address("London"))
    movie = parse_reply('{"title": "Heat", "year": 1995, "rating": null}', Movie)
    assert movie == {"title": "Heat", "year": 1995}
    given = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["a"],
    }
    assert parse_reply('{"a": "x", "b": null}', given) == {"a": "x"}
    with pytest.raises(OutputParseError, match=r"at \$\.name: expected string, got null"):
        parse_reply('{"name": null, "age": 1}', Person)


def test_pydantic_models_and_nested_types_as_fields() -> None:

    schema = schema_for_type(Station)
    reading = schema["properties"]["readings"]["items"]
    assert reading == {
        "type": "object",
        "description": "One reading.",
        "properties": {"celsius": {"type": "number", "description": "degrees"}},
        "required": ["celsius"],
        "additionalProperties": False,
    }
    assert schema["properties"]["best"]["anyOf"][0]["required"] == ["stars"]
    station = parse_reply('{"readings": [{"celsius": 1.5}], "best": null}', Station)
    assert station == Station([Reading(celsius=1.5)])
    with pytest.raises(OutputParseError, match=r"at \$\.readings\[0\]\.celsius: expected number"):
        parse_reply('{"readings": [{"celsius": "warm"}]}', Station)


def test_union_arms_are_not_steps_in_the_error_path() -> None:
    with pytest.raises(OutputParseError) as info:
        parse_reply('{"pet": {"meow": "loud"}}', Pet)
    assert 'at $.pet.meow: expected integer, got string "loud"' in str(info.value)
    with pytest.raises(OutputParseError, match=r"at \$\.pet: expected object, got 3"):
        parse_reply('{"pet": 3}', Pet)
    assert isinstance(parse_reply('{"pet": {"bark": "woof"}}', Pet).pet, Dog)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="pydantic reads typing.TypedDict on 3.12")
def test_typing_typeddict_inside_a_dataclass_says_what_to_import() -> None:
    @dataclass
    class Shelf:
        movie: Movie

    with pytest.raises(ParameterError, match="import TypedDict from typing_extensions"):
        schema_for_type(Shelf)


# -- parsing ------------------------------------------------------------------------------------


def test_fences_are_stripped() -> None:
    assert strip_fence('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert strip_fence("Sure! Here it is:\n```\n[1, 2]\n```\nDone.") == "[1, 2]"
    assert strip_fence('  {"a": 1}  ') == '{"a": 1}'
    assert parse_reply('```json\n{"a": [1, 2]}\n```', None) == {"a": [1, 2]}


def test_bad_json_is_one_line_with_position_and_keeps_raw() -> None:
    raw = '{\n  "a": 1,\n  "b": oops\n}'
    with pytest.raises(OutputParseError) as info:
        parse_reply(raw, None)
    message = str(info.value)
    assert "\n" not in message
    assert "line 3 column 8" in message
    assert info.value.raw == raw


def test_validation_reports_the_json_path_of_the_first_mismatch() -> None:
    schema = schema_for_type(Person)
    good = {"name": "Ada", "age": 36, "home": {"city": "London"}, "tags": ["x"]}
    assert validate(good, schema) is None
    bad = {"name": "Ada", "age": 36, "home": {"city": 7}}
    problem = validate(bad, schema)
    assert problem is not None
    assert problem.startswith("at $.home.city: expected string")
    assert validate({"name": "Ada"}, schema) == "at $: missing required property 'age'"
    problem = validate({"name": "Ada", "age": 1, "extra": 1}, schema)
    assert problem is not None
    assert problem.startswith("at $.extra: unexpected property")
    problem = validate({"name": "Ada", "age": 1, "tags": ["a", 2]}, schema)
    assert problem is not None
    assert problem.startswith("at $.tags[1]: expected string")
    problem = validate({"name": "Ada", "age": 1, "color": "blue"}, schema)
    assert problem is not None
    assert "expected one of" in problem
    # JSON's true is not the integer 1, and 2.0 is an integer.
    assert validate(True, {"type": "integer"}) is not None
    assert validate(2.0, {"type": "integer"}) is None


def test_validation_follows_refs() -> None:
    schema = {
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/P"}},
        "$defs": {"P": {"type": "object", "properties": {"x": {"type": "integer"}}}},
    }
    assert validate({"p": {"x": 1}}, schema) is None
    assert validate({"p": {"x": "1"}}, schema) == 'at $.p.x: expected integer, got string "1"'


def test_dataclass_target_is_built_recursively() -> None:
    text = (
        '{"name": "Ada", "age": 36, "color": "green", "home": {"city": "London"},'
        ' "scores": {"math": 10}}'
    )
    person = parse_reply(text, Person)
    assert person == Person(
        name="Ada",
        age=36,
        color=Color.GREEN,
        home=Address(city="London"),
        scores={"math": 10.0},
    )
    assert isinstance(person.home, Address)


def test_typeddict_target_gives_a_checked_dict() -> None:
    assert parse_reply('{"title": "Heat", "year": 1995}', Movie) == {"title": "Heat", "year": 1995}
    with pytest.raises(OutputParseError, match=r"at \$\.year: expected integer"):
        parse_reply('{"title": "Heat", "year": "1995"}', Movie)


def test_schema_mismatch_message_is_one_line_and_keeps_raw() -> None:
    raw = '{"city": ["not", "a", "string"]}'
    with pytest.raises(OutputParseError) as info:
        parse_reply(raw, Address)
    assert "\n" not in str(info.value)
    assert "'Address'" in str(info.value)
    assert "$.city" in str(info.value)
    assert info.value.raw == raw


# -- against the local server -------------------------------------------------------------------


@pytest.fixture
def server(session_server: LocalServer) -> LocalServer:
    """The shared server: these tests only read answers."""
    return session_server


def _ask(server: LocalServer, tmp_path: Path, prompt: str, **params: Any) -> str:
    request = prepare_request(prompt, model="gpt-oss", params=params)
    call = ChatCall(request, CallContext(session="t", ledger=Ledger(tmp_path / "ledger.db")))
    with Client(base_url=server.url, api_key=server.api_key) as client:
        return call.run(client).content


def test_json_mode_reply_parses(server: LocalServer, tmp_path: Path) -> None:
    fmt = response_format_for(True, None)
    text = _ask(server, tmp_path, "List three colours as JSON", response_format=fmt)
    assert isinstance(parse_reply(text, None), dict)


def test_bad_json_directive_raises_keeping_raw(server: LocalServer, tmp_path: Path) -> None:
    fmt = response_format_for(True, None)
    text = _ask(server, tmp_path, "Colours as JSON /bad-json", response_format=fmt)
    with pytest.raises(OutputParseError, match="did not parse") as info:
        parse_reply(text, None)
    assert info.value.raw == text


def test_schema_reply_builds_the_dataclass(server: LocalServer, tmp_path: Path) -> None:
    fmt = response_format_for(False, Person)
    text = _ask(server, tmp_path, "Describe Ada Lovelace", response_format=fmt)
    person = parse_reply(text, Person)
    assert isinstance(person, Person)
    assert isinstance(person.color, Color)


def test_schema_mismatch_directive_names_the_path(server: LocalServer, tmp_path: Path) -> None:
    fmt = response_format_for(False, Movie)
    text = _ask(server, tmp_path, "A film /schema-mismatch", response_format=fmt)
    with pytest.raises(OutputParseError, match=r"at \$\.title: expected string") as info:
        parse_reply(text, Movie)
    assert info.value.raw == text
