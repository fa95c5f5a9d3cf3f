"""Structured output: JSON schemas from Python types, `response_format`, and parsing replies.

Rule: pydantic reads the types; this module shapes what it writes and what it says. A `--schema`
target or a tool parameter type goes through one `TypeAdapter`: its JSON schema, made plain
(refs inlined, titles dropped, objects closed), is what the model is asked for, and the same
adapter checks the reply and builds the user's type from it. `strict_schema` turns a schema into
what `strict: true` accepts: every property required, the optional ones nullable instead, no
defaults. A JSON-schema dict has no type to validate with, so `validate` checks replies against
it. Either way a mismatch is an `OutputParseError` with one line naming the JSON path, keeping
the raw text. pydantic is imported inside functions only: `import baseten_magic` and
`%load_ext baseten_magic` do not load it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Union

from baseten_magic.core.errors import OutputParseError, ParameterError
from baseten_magic.core.jsonable import json_type

if TYPE_CHECKING:
    from pydantic import TypeAdapter, ValidationError
    from pydantic.json_schema import GenerateJsonSchema

__all__ = [
    "adapter",
    "mismatch",
    "parse_reply",
    "pydantic_errors",
    "readable",
    "response_format_for",
    "schema_for_type",
    "schema_of",
    "strict_schema",
    "strip_fence",
    "type_hints",
    "validate",
]

JSONSchema = dict[str, Any]

_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]+")
# A fenced block anywhere in the reply: models often wrap JSON in ```json ... ``` with prose.
_FENCE_RE = re.compile(r"```[ \t]*(?:json5?|JSON)?[ \t]*\r?\n(.*?)(?:\r?\n)?[ \t]*```", re.DOTALL)
# Where JSON Schema nests schemas (as opposed to data such as `enum`, `const` or `default`).
_SCHEMA_MAPS = ("properties", "$defs")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "propertyNames")
_SUPPORTED = (
    "use str, int, float, bool, None, list, dict, Literal, an Enum, a dataclass, "
    "a TypedDict or a pydantic model"
)


# What to do about pydantic's refusals, by its error code (pydantic's own text otherwise).
_ADVICE = {
    "schema-for-unknown-type": _SUPPORTED,
    "invalid-for-json-schema": _SUPPORTED,
    "class-not-fully-defined": "it names a type its module does not define; define it at top level",
    "typed-dict-version": (
        "inside a dataclass or a model on Python 3.11, import TypedDict from typing_extensions"
    ),
}


class _Unsupported(Exception):
    """A type pydantic reads but a JSON schema for a model cannot say; the message says why."""


# -- writing schemas ----------------------------------------------------------------------------


def schema_for_type(tp: Any) -> JSONSchema:
    """The JSON schema of a type hint (scalars, containers, Literal, Enum, dataclass, ...)."""
    return _written(adapter(tp), tp)


def adapter(tp: Any) -> TypeAdapter[Any]:
    """A pydantic `TypeAdapter` for a type hint; a type pydantic cannot read is a ParameterError."""
    from pydantic import TypeAdapter

    with pydantic_errors(tp):
        return TypeAdapter(readable(tp))


def _written(source: TypeAdapter[Any], tp: Any) -> JSONSchema:
    with pydantic_errors(tp):
        return _plain(source.json_schema(schema_generator=_writer()))


@contextlib.contextmanager
def pydantic_errors(tp: Any) -> Iterator[None]:
    """Turn pydantic's complaints about a type into a ParameterError saying what to use instead."""
    from pydantic.errors import PydanticUndefinedAnnotation, PydanticUserError

    try:
        yield
    except _Unsupported as exc:
        raise _unsupported(tp, str(exc)) from None
    except PydanticUndefinedAnnotation as exc:
        raise _unsupported(tp, f"{exc.message}; define every type it names first") from None
    except PydanticUserError as exc:
        hint = _ADVICE.get(exc.code or "", exc.message.strip().splitlines()[0])
        raise _unsupported(tp, hint) from None


def _writer() -> type[GenerateJsonSchema]:
    from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
    from pydantic_core import core_schema

    class Writer(GenerateJsonSchema):
        """pydantic's schema writer, refusing maps whose keys a JSON object cannot spell."""

        def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
            keys = schema.get("keys_schema")
            if keys is not None and self.generate_inner(keys).get("type", "string") != "string":
                raise _Unsupported("JSON object keys are strings; use dict[str, X]")
            return super().dict_schema(schema)

    return Writer


def readable(tp: Any, expanding: tuple[type, ...] = ()) -> Any:
    """`tp` as pydantic should read it: the text in `Annotated[X, "text"]` becomes a description,
    and a `typing.TypedDict` is rebuilt from `typing_extensions` (pydantic refuses the former
    before Python 3.12; rebuilding it on every version keeps one path)."""
    if typing.is_typeddict(tp) and type(tp).__module__ == "typing":
        return _typeddict(tp, expanding)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        from pydantic import Field

        extras = [Field(description=a) if isinstance(a, str) else a for a in args[1:]]
        return typing.Annotated[(readable(args[0], expanding), *extras)]
    new = tuple(readable(a, expanding) for a in args)
    if origin is typing.Literal or all(a is b for a, b in zip(args, new, strict=True)):
        return tp
    if origin is Union or origin is types.UnionType:
        return Union[new]  # noqa: UP007 - built from a tuple
    return (
        types.GenericAlias(origin, new) if isinstance(tp, types.GenericAlias) else tp.copy_with(new)
    )


def _typeddict(cls: type, expanding: tuple[type, ...]) -> Any:
    import typing_extensions

    if cls in expanding:
        raise _unsupported(cls, "recursive types cannot be written out as a JSON schema")
    required_keys: frozenset[str] = getattr(cls, "__required_keys__", frozenset())
    fields: dict[str, Any] = {}
    for name, annotation in type_hints(cls).items():
        # Under `from __future__ import annotations` Python 3.11 leaves keys marked Required or
        # NotRequired out of `__required_keys__`; the hints still carry the markers.
        marker, hint = typing.get_origin(annotation), annotation
        if marker in (typing.Required, typing.NotRequired):
            hint = typing.get_args(annotation)[0]
        else:
            marker = typing.Required if name in required_keys else typing.NotRequired
        fields[name] = marker[readable(hint, (*expanding, cls))]
    clone: Any = typing_extensions.TypedDict(cls.__name__, fields)  # type: ignore[misc]
    clone.__doc__, clone.__module__, clone.__qualname__ = (
        cls.__doc__,
        cls.__module__,
        cls.__qualname__,
    )
    return clone


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


def _plain(schema: Mapping[str, Any]) -> JSONSchema:
    """pydantic's JSON schema as a model reads it best: `$ref`s inlined (a recursive type cannot
    be), `title`s dropped, and objects with properties closed unless the type allows extras."""
    defs: Mapping[str, Any] = schema.get("$defs") or {}

    def walk(node: Any, expanding: tuple[str, ...]) -> Any:
        if not isinstance(node, Mapping):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in expanding:
                raise _Unsupported(
                    f"{name} refers to itself, and recursive types cannot be written out "
                    "as a JSON schema; break the cycle"
                )
            rest = walk({k: v for k, v in node.items() if k != "$ref"}, expanding)
            return {**walk(defs[name], (*expanding, name)), **rest}  # a field's default wins
        inner = node.get("allOf")
        if isinstance(inner, list) and len(inner) == 1:  # pydantic < 2.9 wraps a ref this way
            rest = walk({k: v for k, v in node.items() if k != "allOf"}, expanding)
            return {**walk(inner[0], expanding), **rest}
        out = _map_subschemas(node, lambda sub: walk(sub, expanding))
        out.pop("$defs", None)
        out.pop("title", None)
        if isinstance(out.get("properties"), Mapping):
            out.setdefault("additionalProperties", False)
        return out

    result: JSONSchema = walk(schema, ())
    return result


def _map_subschemas(node: Mapping[str, Any], fn: Callable[[Any], Any]) -> JSONSchema:
    """A copy of one schema node with `fn` applied to each schema nested in it (not to data)."""
    out: JSONSchema = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {name: fn(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [fn(sub) for sub in value]
        elif key in _SCHEMA_VALUES and isinstance(value, Mapping):
            out[key] = fn(value)
        else:
            out[key] = value
    return out


def strict_schema(schema: Mapping[str, Any]) -> JSONSchema:
    """`schema` as OpenAI-style `strict: true` takes it: every object closed and listing all its
    properties in `required`; a property that was optional is made nullable instead (null then
    means "use the default") and loses its `default`, a keyword strict mode rejects."""
    node = _map_subschemas(schema, lambda sub: strict_schema(sub) if _is_map(sub) else sub)
    properties = node.get("properties")
    if isinstance(properties, Mapping):
        required = set(node.get("required") or ())
        node["properties"] = {
            name: _strict_property(sub, optional=name not in required)
            for name, sub in properties.items()
        }
        node["required"] = list(properties)
        node["additionalProperties"] = False
    # A map (`dict[str, X]`, additionalProperties a schema) stays one: strict mode has no way
    # to say it, and closing it would only make every answer an empty object.
    return node


def _is_map(value: Any) -> bool:
    return isinstance(value, Mapping)


def _strict_property(schema: Any, *, optional: bool) -> Any:
    """A property as strict mode takes it: without a default, and nullable if it was optional."""
    if not _is_map(schema):
        return schema
    body = {k: v for k, v in schema.items() if k != "default"}
    if not optional or _allows_null(body):
        return body
    inner = {k: v for k, v in body.items() if k != "description"}
    described = {"description": body["description"]} if "description" in body else {}
    return {"anyOf": [inner, {"type": "null"}], **described}


def _allows_null(schema: Any, root: Mapping[str, Any] | None = None) -> bool:
    schema = _resolve(root, schema)
    if not _is_map(schema):
        return schema is True
    kinds = schema.get("type")
    return (
        "null" in (kinds if isinstance(kinds, list) else [kinds])
        or None in (schema.get("enum") or ())
        or ("const" in schema and schema["const"] is None)
        or any(_allows_null(arm, root) for arm in schema.get("anyOf") or ())
        or not {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "not"} & set(schema)
    )


def _unsupported(tp: Any, hint: str) -> ParameterError:
    return ParameterError(f"cannot describe the type {_type_name(tp)} as JSON schema; {hint}")


def _type_name(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)


def _is_pydantic_model(obj: object) -> bool:
    # Whoever defined a model imported pydantic already; nobody else needs it loaded.
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(obj, type) and issubclass(obj, pydantic.BaseModel)


def schema_of(obj: object) -> tuple[str, JSONSchema]:
    """The name and JSON schema of a `--schema` target: a schema dict, dataclass, TypedDict or
    pydantic model class."""
    name, schema, _ = _target(obj)
    return name, schema


def _target(obj: object) -> tuple[str, JSONSchema, TypeAdapter[Any] | None]:
    """A target's name, schema, and the adapter that validates replies (None for a dict)."""
    if isinstance(obj, Mapping):
        inner = obj.get("schema")
        if isinstance(inner, Mapping) and isinstance(obj.get("name"), str):
            # An OpenAI `json_schema` wrapper: {"name": ..., "schema": {...}}.
            return _schema_name(str(obj["name"])), dict(inner), None
        title = obj.get("title")
        return _schema_name(title if isinstance(title, str) else "response"), dict(obj), None
    if isinstance(obj, type) and (
        dataclasses.is_dataclass(obj) or typing.is_typeddict(obj) or _is_pydantic_model(obj)
    ):
        source = adapter(obj)
        return _schema_name(obj.__name__), _written(source, obj), source
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
            "json_schema": {"name": name, "schema": strict_schema(body), "strict": True},
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
    name, wanted, source = _target(schema)
    value = _absent_nulls(value, wanted, wanted)
    if source is None:
        problem = validate(value, wanted)
        if problem is None:
            return value
    else:
        from pydantic import ValidationError

        try:
            # JSON mode, strict: a dict is read as the dataclass, a string as the Enum or the
            # date, as a model sends them, but "36" is not an integer.
            return source.validate_json(json.dumps(value), strict=True)
        except ValidationError as exc:
            problem = mismatch(exc, value, wanted)
    raise OutputParseError(
        f"the reply does not match schema {name!r}: {problem}; the raw text is in .raw",
        raw=text,
    )


def _absent_nulls(value: Any, schema: Any, root: Mapping[str, Any]) -> Any:
    """`value` without the nulls strict mode sends for optional properties whose type does not
    take null, so that their defaults apply (through lists and `Optional` objects)."""
    schema = _resolve(root, schema)
    arms = (
        [a for a in schema.get("anyOf") or () if a != {"type": "null"}] if _is_map(schema) else ()
    )
    schema = _resolve(root, arms[0]) if len(arms) == 1 else schema
    if not _is_map(schema):
        return value
    if isinstance(value, list) and "items" in schema:
        return [_absent_nulls(item, schema["items"], root) for item in value]
    properties, required = schema.get("properties"), set(schema.get("required") or ())
    if not isinstance(value, dict) or not _is_map(properties):
        return value
    return {
        key: _absent_nulls(item, properties[key], root) if key in properties else item
        for key, item in value.items()
        if item is not None
        or key in required
        or key not in properties
        or _allows_null(properties[key], root)
    }


def mismatch(error: ValidationError, value: Any, schema: Mapping[str, Any]) -> str:
    """Where and why pydantic rejected `value`: the schema check's phrase when it finds the
    problem (one wording for every kind of target), else pydantic's first error at its path."""
    problem = validate(value, schema)
    if problem is not None:
        return problem
    first = error.errors(include_url=False)[0]
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    return f"at ${path}: {first['msg']}"


# -- validating against a JSON-schema dict -----------------------------------------------------


def validate(value: Any, schema: Mapping[str, Any]) -> str | None:
    """None when `value` matches `schema`, else one phrase naming the JSON path of the first
    mismatch."""
    return _Validator(schema).check(value, schema, "$")


def _resolve(root: Mapping[str, Any] | None, schema: Any) -> Any:
    """`schema` with local `$ref`s followed (a bounded number of times, in case of a loop)."""
    for _ in range(32):
        ref = schema.get("$ref") if isinstance(schema, Mapping) else None
        if root is None or not isinstance(ref, str) or not ref.startswith("#"):
            return schema
        node: Any = root
        for part in ref[1:].split("/"):
            if part:
                node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
        schema = node
    return schema


class _Validator:
    """Checks the keywords schemas use: types, enum/const, anyOf/oneOf/allOf, object properties,
    required and additionalProperties, array items and lengths, and local `$ref`s."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def check(self, value: Any, schema: Any, path: str) -> str | None:
        schema = _resolve(self.root, schema)
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
            sub = prefix_list[index] if index < len(prefix_list) else items
            problem = None if sub is None else self.check(item, sub, f"{path}[{index}]")
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
    if kind == "null":
        return value is None
    expected = {"string": str, "boolean": bool, "array": list, "object": dict}.get(kind)
    return expected is not None and isinstance(value, expected)


def _same(a: Any, b: Any) -> bool:
    # JSON equality: True is not 1.
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _child(path: str, name: str) -> str:
    return (
        f"{path}.{name}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"{path}[{name!r}]"
    )


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    kind = json_type(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{kind} {text}" if kind in ("string", "array", "object") else text
