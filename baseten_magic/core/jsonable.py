"""Python values as JSON values.

Rule: one conversion, used wherever a Python value leaves as JSON (a tool's result sent back to
the model, a parsed reply shown as JSON): dataclasses, pydantic models, enums, tuples and sets
become JSON structures; non-finite floats and anything else become strings, so the output is
always valid JSON.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any


def to_jsonable(value: Any) -> Any:
    """A JSON value for `value`: dataclasses, pydantic models, enums and sets converted."""
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return to_jsonable(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def json_type(value: Any) -> str:
    """The JSON Schema type name of a value (`null`, `boolean`, `integer`, `number`, `string`,
    `array`, `object`), or its Python type's name when it has none."""
    if value is None:
        return "null"
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "boolean"),  # before int: True is an int to Python, not to JSON
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        ((list, tuple), "array"),
        (Mapping, "object"),
    ]
    return next((name for cls, name in kinds if isinstance(value, cls)), type(value).__name__)
