"""Structured output: JSON schemas from Python types, `response_format`, and parsing replies.

Rule: one small JSON-schema dialect, used both ways. `schema_for_type` writes it (for tool
parameters and for `--schema` targets) and `validate` reads it, so whatever this module asks a
model for, it can check. A reply that does not parse or match raises `OutputParseError` with one
line saying where (line/column, or the JSON path of the first mismatch) and keeps the raw text.
pydantic is never imported: a model class is recognised by its `model_json_schema` method.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, Union

from baseten_magic.core.errors import OutputParseError, ParameterError

__all__ = [
    "build_value",
    "json_default",
    "parse_reply",
    "response_format_for",
    "schema_for_type",
    "schema_of",
    "strip_fence",
    "type_hints",
    "validate",
]

JSONSchema = dict[str, Any]

_SCALARS: dict[type, JSONSchema] = {
    str: {"type": "string"},
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    Decimal: {"type": "number"},
    type(None): {"type": "null"},
    dt.datetime: {"type": "string", "format": "date-time"},
    dt.date: {"type": "string", "format": "date"},
    dt.time: {"type": "string", "format": "time"},
}
_SEQUENCES = (list, set, frozenset, Sequence, typing.MutableSequence, typing.AbstractSet)
_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]+")
# A fenced block anywhere in the reply: models often wrap JSON in ```json ... ``` with prose.
_FENCE_RE = re.compile(r"```[ \t]*(?:json5?|JSON)?[ \t]*\r?\n(.*?)(?:\r?\n)?[ \t]*```", re.DOTALL)


# -- writing schemas ----------------------------------------------------------------------------


def schema_for_type(tp: Any) -> JSONSchema:
    """The JSON schema of a type hint (scalars, containers, Literal, Enum, dataclass, ...)."""
    return _SchemaWriter().schema(tp)


def is_typeddict(tp: object) -> bool:
    """True for a TypedDict class."""
    return typing.is_typeddict(tp)


def _is_pydantic_model(obj: object) -> bool:
    return isinstance(obj, type) and callable(getattr(obj, "model_json_schema", None))


def _doc_of(cls: type) -> str | None:
    """The class docstring, unless it is the signature dataclasses write when there is none."""
    doc = cls.__doc__
    if not doc or (dataclasses.is_dataclass(cls) and doc.startswith(cls.__name__ + "(")):
        return None
    return " ".join(doc.strip().split("\n\n", 1)[0].split())


class _SchemaWriter:
    """Walks one type; remembers the classes being expanded to refuse recursive types."""

    def __init__(self) -> None:
        self.expanding: list[type] = []

    def schema(self, tp: Any) -> JSONSchema:
        if tp is Any or tp is object:
            return {}
        if tp is None:  # a bare `None` in a hint means NoneType
            tp = type(None)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            inner = self.schema(args[0])
            text = next((a for a in args[1:] if isinstance(a, str)), None)
            return {**inner, "description": text} if text else inner
        if origin is Literal:
            return _enum_schema(list(args))
        if origin is Union or origin is types.UnionType:
            return self._union(args)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return _enum_schema([member.value for member in tp])
        if tp in _SCALARS:
            return dict(_SCALARS[tp])
        if origin is tuple or tp is tuple:
            return self._tuple(args)
        if origin in (dict, Mapping, typing.MutableMapping) or tp in (dict, Mapping):
            schema: JSONSchema = {"type": "object"}
            if len(args) == 2:
                if args[0] is not str:
                    raise _unsupported(tp, "JSON object keys are strings; use dict[str, X]")
                schema["additionalProperties"] = self.schema(args[1])
            return schema
        if origin in _SEQUENCES or tp in (list, set, frozenset):
            schema = {"type": "array"}
            if args:
                schema["items"] = self.schema(args[0])
            if origin in (set, frozenset, typing.AbstractSet) or tp in (set, frozenset):
                schema["uniqueItems"] = True
            return schema
        if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or is_typeddict(tp)):
            return self._object(tp)
        if _is_pydantic_model(tp):
            raise _unsupported(tp, "a pydantic model can be a --schema target, not a field type")
        raise _unsupported(
            tp,
            "use str, int, float, bool, None, list, dict, Literal, an Enum, "
            "a dataclass or a TypedDict",
        )

    def _union(self, args: tuple[Any, ...]) -> JSONSchema:
        options = [self.schema(a) for a in args]
        return {"anyOf": options}

    def _tuple(self, args: tuple[Any, ...]) -> JSONSchema:
        if not args:
            return {"type": "array"}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": self.schema(args[0])}
        items = [self.schema(a) for a in args]
        return {
            "type": "array",
            "prefixItems": items,
            "minItems": len(items),
            "maxItems": len(items),
        }

    def _object(self, cls: type) -> JSONSchema:
        if cls in self.expanding:
            raise _unsupported(cls, "recursive types cannot be written as a JSON schema")
        self.expanding.append(cls)
        try:
            hints = type_hints(cls)
            properties: JSONSchema = {}
            required: list[str] = []
            if dataclasses.is_dataclass(cls):
                for f in dataclasses.fields(cls):
                    if not f.init:
                        continue
                    prop = self.schema(hints.get(f.name, Any))
                    text = f.metadata.get("description")
                    if isinstance(text, str):
                        prop["description"] = text
                    if f.default is not dataclasses.MISSING:
                        has_json, default = json_default(f.default)
                        if has_json:
                            prop["default"] = default
                    elif f.default_factory is dataclasses.MISSING:
                        required.append(f.name)
                    properties[f.name] = prop
            else:
                required_keys: frozenset[str] = getattr(cls, "__required_keys__", frozenset())
                for name, hint in hints.items():
                    properties[name] = self.schema(_strip_required(hint))
                    # Under `from __future__ import annotations` Python 3.11 cannot see
                    # NotRequired/Required in `__required_keys__`; the hints still carry them.
                    marker = typing.get_origin(hint)
                    if marker is typing.Required or (
                        marker is not typing.NotRequired and name in required_keys
                    ):
                        required.append(name)
        finally:
            self.expanding.pop()
        schema: JSONSchema = {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }
        doc = _doc_of(cls)
        if doc:
            schema["description"] = doc
        return schema


def type_hints(obj: Any) -> dict[str, Any]:
    """`typing.get_type_hints` with extras; an unresolvable name is a ParameterError."""
    try:
        return dict(typing.get_type_hints(obj, include_extras=True))
    except Exception as exc:  # NameError for an unresolvable forward reference, mostly
        name = getattr(obj, "__qualname__", repr(obj))
        raise ParameterError(
            f"could not read the type hints of {name}: {type(exc).__name__}: {exc}; "
            "define every type it names before using it"
        ) from None


def _strip_required(hint: Any) -> Any:
    """`Required[X]` / `NotRequired[X]` → `X` (TypedDict markers; `__required_keys__` has them)."""
    while typing.get_origin(hint) in (typing.Required, typing.NotRequired):
        hint = typing.get_args(hint)[0]
    return hint


def _enum_schema(values: list[Any]) -> JSONSchema:
    schema: JSONSchema = {"enum": values}
    kinds = {_json_type(v) for v in values}
    if len(kinds) == 1:
        schema["type"] = kinds.pop()
    return schema


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def json_default(value: Any) -> tuple[bool, Any]:
    """`(True, json_value)` for a default that has a JSON form, else `(False, None)`."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple | frozenset | set):
        value = list(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False, None
    return True, value


def _unsupported(tp: Any, hint: str) -> ParameterError:
    return ParameterError(f"cannot describe the type {_type_name(tp)} as JSON schema; {hint}")


def _type_name(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)


def schema_of(obj: object) -> tuple[str, JSONSchema]:
    """The name and JSON schema of a `--schema` target: a schema dict, dataclass, TypedDict or
    pydantic model class."""
    if isinstance(obj, Mapping):
        inner = obj.get("schema")
        if isinstance(inner, Mapping) and isinstance(obj.get("name"), str):
            # An OpenAI `json_schema` wrapper: {"name": ..., "schema": {...}}.
            return _schema_name(str(obj["name"])), dict(inner)
        title = obj.get("title")
        return _schema_name(title if isinstance(title, str) else "response"), dict(obj)
    if isinstance(obj, type):
        if dataclasses.is_dataclass(obj) or is_typeddict(obj):
            return _schema_name(obj.__name__), schema_for_type(obj)
        if _is_pydantic_model(obj):
            schema = obj.model_json_schema()  # type: ignore[attr-defined]
            return _schema_name(obj.__name__), dict(schema)
    raise ParameterError(
        f"expected a JSON-schema dict, a dataclass, a TypedDict or a pydantic model class as the "
        f"schema, got {_describe(obj)}; pass the class itself, not an instance"
    )


def _schema_name(text: str) -> str:
    """A name OpenAI accepts for `json_schema.name`: [a-zA-Z0-9_-]{1,64}."""
    return _NAME_RE.sub("_", text).strip("_")[:64] or "response"


def _describe(obj: object) -> str:
    return f"an instance of {type(obj).__qualname__}" if obj is not None else "None"


def response_format_for(json_mode: bool, schema: object | None) -> dict[str, Any] | None:
    """The `response_format` for `--json` / `--schema` (a schema wins over plain JSON mode)."""
    if schema is not None:
        name, body = schema_of(schema)
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": body, "strict": True},
        }
    if json_mode:
        return {"type": "json_object"}
    return None


# -- reading replies ----------------------------------------------------------------------------


def strip_fence(text: str) -> str:
    """The JSON inside a Markdown code fence when the reply has one, else the stripped text."""
    stripped = text.strip()
    if "```" not in stripped:
        return stripped
    match = _FENCE_RE.search(stripped)
    return match.group(1).strip() if match else stripped


def parse_reply(text: str, schema: object | None) -> Any:
    """Parse a JSON reply, check it against `schema`, and build the target type when it has one."""
    body = strip_fence(text)
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        preview = body[:40] + ("..." if len(body) > 40 else "")
        raise OutputParseError(
            f"expected a JSON reply, but it did not parse: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno} (reply starts {preview!r}); the raw text is in .raw",
            raw=text,
        ) from None
    if schema is None:
        return value
    name, body_schema = schema_of(schema)
    problem = validate(value, body_schema)
    if problem is not None:
        raise OutputParseError(
            f"the reply does not match schema {name!r}: {problem}; the raw text is in .raw",
            raw=text,
        )
    if _is_pydantic_model(schema):
        try:
            return schema.model_validate(value)  # type: ignore[attr-defined]
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            first = str(exc).splitlines()
            raise OutputParseError(
                f"the reply does not match schema {name!r}: "
                f"{' '.join(first[:3])}; the raw text is in .raw",
                raw=text,
            ) from None
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        return build_value(schema, value)
    return value


def build_value(tp: Any, value: Any) -> Any:
    """Turn decoded JSON into `tp`: dataclasses and Enums constructed recursively, else as is."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return build_value(args[0], value)
    if origin is Union or origin is types.UnionType:
        if value is None:
            return None
        for arm in args:
            if arm is type(None):
                continue
            try:
                if validate(value, schema_for_type(arm)) is None:
                    return build_value(arm, value)
            except ParameterError:
                continue
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
        hints = type_hints(tp)
        kwargs = {
            f.name: build_value(hints.get(f.name, Any), value[f.name])
            for f in dataclasses.fields(tp)
            if f.init and f.name in value
        }
        return tp(**kwargs)
    if isinstance(value, list) and (origin in _SEQUENCES or origin is tuple):
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(build_value(args[0], v) for v in value)
            if args:
                return tuple(build_value(a, v) for a, v in zip(args, value, strict=False))
            return tuple(value)
        items = [build_value(args[0], v) for v in value] if args else list(value)
        return set(items) if origin in (set, frozenset, typing.AbstractSet) else items
    if isinstance(value, dict) and origin in (dict, Mapping, typing.MutableMapping) and args:
        return {k: build_value(args[1], v) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# -- validating ---------------------------------------------------------------------------------


def validate(value: Any, schema: Mapping[str, Any]) -> str | None:
    """None when `value` matches `schema`, else one phrase naming the JSON path of the first
    mismatch."""
    return _Validator(schema).check(value, schema, "$")


class _Validator:
    """Checks the subset of JSON Schema this module writes (and pydantic's `$defs`/`$ref`)."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def resolve(self, schema: Any) -> Any:
        for _ in range(32):
            ref = schema.get("$ref") if isinstance(schema, Mapping) else None
            if not isinstance(ref, str) or not ref.startswith("#"):
                return schema
            node: Any = self.root
            for part in ref[1:].split("/"):
                if part:
                    node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
            schema = node
        return schema

    def check(self, value: Any, schema: Any, path: str) -> str | None:
        schema = self.resolve(schema)
        if schema is True or not isinstance(schema, Mapping):
            return None if schema is not False else f"at {path}: no value is allowed here"
        if "const" in schema and not _same(value, schema["const"]):
            return f"at {path}: expected {_show(schema['const'])}, got {_show(value)}"
        enum_values = schema.get("enum")
        if isinstance(enum_values, list) and not any(_same(value, e) for e in enum_values):
            allowed = ", ".join(_show(e) for e in enum_values[:8])
            return f"at {path}: expected one of {allowed}, got {_show(value)}"
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                problems = [self.check(value, o, path) for o in options]
                if all(p is not None for p in problems):
                    # Report the arm that got furthest: its problem has the longest path.
                    return max(problems, key=lambda p: len(str(p).split(":", 1)[0]))
        for sub in schema.get("allOf") or []:
            problem = self.check(value, sub, path)
            if problem is not None:
                return problem
        kind = schema.get("type")
        if kind is not None:
            kinds = kind if isinstance(kind, list) else [kind]
            if not any(_is_type(value, k) for k in kinds):
                return f"at {path}: expected {' or '.join(map(str, kinds))}, got {_show(value)}"
        if isinstance(value, dict):
            return self._object(value, schema, path)
        if isinstance(value, list):
            return self._array(value, schema, path)
        return None

    def _object(self, value: dict[str, Any], schema: Mapping[str, Any], path: str) -> str | None:
        properties = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                return f"at {path}: missing required property {name!r}"
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            sub_path = _child(path, name)
            if name in properties:
                problem = self.check(item, properties[name], sub_path)
            elif extra is False:
                return f"at {sub_path}: unexpected property (allowed: {', '.join(properties)})"
            elif isinstance(extra, Mapping):
                problem = self.check(item, extra, sub_path)
            else:
                problem = None
            if problem is not None:
                return problem
        return None

    def _array(self, value: list[Any], schema: Mapping[str, Any], path: str) -> str | None:
        low, high = schema.get("minItems"), schema.get("maxItems")
        if isinstance(low, int) and len(value) < low:
            return f"at {path}: expected at least {low} items, got {len(value)}"
        if isinstance(high, int) and len(value) > high:
            return f"at {path}: expected at most {high} items, got {len(value)}"
        prefix = schema.get("prefixItems")
        prefix_list = prefix if isinstance(prefix, list) else []
        items = schema.get("items")
        for index, item in enumerate(value):
            if index < len(prefix_list):
                sub: Any = prefix_list[index]
            elif items is not None:
                sub = items
            else:
                continue
            problem = self.check(item, sub, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    expected = {"string": str, "boolean": bool, "array": list, "object": dict}.get(kind)
    if kind == "null":
        return value is None
    return expected is not None and isinstance(value, expected)


def _same(a: Any, b: Any) -> bool:
    # JSON equality: True is not 1.
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _child(path: str, name: str) -> str:
    return (
        f"{path}.{name}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"{path}[{name!r}]"
    )


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    kind = _json_type(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{kind} {text}" if kind in ("string", "array", "object") else text
