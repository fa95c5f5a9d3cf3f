"""Values generated from a JSON Schema: one that matches it, and one that deliberately does not.

Rule: deterministic and stdlib-only. `sample()` builds a value satisfying the common subset of
JSON Schema that structured outputs and tool parameters use (objects with every property,
arrays, enums, const, numbers with bounds, booleans, null, `$ref` into `$defs`/`definitions`,
`anyOf`/`oneOf`/`allOf`). String values come from the caller's word list in order, so a tool
called about "Paris" gets `"Paris"` as its city. `violate()` turns a valid value into valid JSON
that breaks the schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_MAX_DEPTH = 12

_FORMATS = {
    "date": "2026-01-15",
    "date-time": "2026-01-15T12:00:00Z",
    "time": "12:00:00",
    "email": "ada@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "123e4567-e89b-42d3-a456-426614174000",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
}


def sample(schema: Any, words: Sequence[str] = ()) -> Any:
    """Return a value that satisfies `schema`, filling strings from `words` in turn."""
    return _Sampler(schema, words).value(schema, 0)


def violate(schema: Any, value: Any) -> Any:
    """Return valid JSON that breaks `schema` (built from a valid `value`)."""
    sampler = _Sampler(schema, ())
    resolved = sampler.resolve(schema)
    properties = resolved.get("properties") if isinstance(resolved, Mapping) else None
    if isinstance(value, dict) and isinstance(properties, Mapping) and properties:
        broken = dict(value)
        name = next(iter(properties))
        prop = sampler.resolve(properties[name])
        if isinstance(prop, Mapping) and ("type" in prop or "enum" in prop or "const" in prop):
            broken[name] = _wrong_type(prop)
        else:
            # An unconstrained property cannot be mistyped; drop it and add an unknown one.
            broken.pop(name, None)
            broken["unexpected_field"] = True
        return broken
    if isinstance(resolved, Mapping):
        return _wrong_type(resolved)
    return {"unexpected": "value"}


def _wrong_type(schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if "enum" in schema or "const" in schema or kind == "string":
        return 12345
    if kind in ("integer", "number", "boolean"):
        return {"integer": "not an integer", "number": "not a number"}.get(str(kind), "maybe")
    if kind == "array":
        return "not an array"
    if kind == "object":
        return ["not", "an", "object"]
    return {"unexpected": "value"}


class _Sampler:
    """Walks one schema; keeps the position in the word list."""

    def __init__(self, root: Any, words: Sequence[str]) -> None:
        self.root = root
        self.words = list(words)
        self.used = 0

    def word(self, name: str) -> str:
        if not self.words:
            return f"example {name}".strip() if name else "example"
        text = self.words[self.used % len(self.words)]
        self.used += 1
        return text

    def resolve(self, schema: Any) -> Any:
        seen = 0
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < 32:
            schema = self._lookup(schema["$ref"])
            seen += 1
        return schema

    def _lookup(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for part in ref.lstrip("#").split("/"):
            if not part:
                continue
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            else:
                return {}
        return node

    def value(self, schema: Any, depth: int, name: str = "") -> Any:
        schema = self.resolve(schema)
        if depth > _MAX_DEPTH or not isinstance(schema, Mapping):
            return None if depth > _MAX_DEPTH else self.word(name)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[0]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                chosen = next(
                    (o for o in options if self.resolve(o) != {"type": "null"}), options[0]
                )
                return self.value(chosen, depth + 1, name)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            return self.value(self._merge(all_of), depth + 1, name)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            if "properties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth, name)
        if kind == "integer":
            return int(self._number(schema, 42))
        if kind == "number":
            return self._number(schema, 3.5)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema, name)

    def _merge(self, parts: list[Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for raw in parts:
            part = self.resolve(raw)
            if not isinstance(part, Mapping):
                continue
            properties.update(part.get("properties") or {})
            required.extend(part.get("required") or [])
            merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
        if properties:
            merged["properties"] = properties
            merged["required"] = required
        return merged

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if isinstance(properties, Mapping) and properties:
            return {key: self.value(sub, depth + 1, key) for key, sub in properties.items()}
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            return {"key": self.value(extra, depth + 1, "key")}
        return {}

    def _array(self, schema: Mapping[str, Any], depth: int, name: str) -> list[Any]:
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list):
            return [self.value(sub, depth + 1, name) for sub in prefix]
        low = int(schema.get("minItems", 0) or 0)
        high = schema.get("maxItems")
        count = max(low, 2)
        if isinstance(high, int):
            count = min(count, high)
        items = schema.get("items", {})
        return [self.value(items, depth + 1, name) for _ in range(count)]

    def _number(self, schema: Mapping[str, Any], default: float) -> float:
        low = schema.get("minimum")
        high = schema.get("maximum")
        xlow = schema.get("exclusiveMinimum")
        xhigh = schema.get("exclusiveMaximum")
        if isinstance(xlow, int | float) and not isinstance(xlow, bool):
            low = xlow + 1 if schema.get("type") == "integer" else xlow + 0.5
        if isinstance(xhigh, int | float) and not isinstance(xhigh, bool):
            high = xhigh - 1 if schema.get("type") == "integer" else xhigh - 0.5
        value = float(default)
        if isinstance(low, int | float) and value < low:
            value = float(low)
        if isinstance(high, int | float) and value > high:
            value = float(high)
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            value = round(value / step) * step
            if isinstance(low, int | float) and value < low:
                value += step
        return value

    def _string(self, schema: Mapping[str, Any], name: str) -> str:
        fmt = schema.get("format")
        text = _FORMATS[fmt] if isinstance(fmt, str) and fmt in _FORMATS else self.word(name)
        low = schema.get("minLength")
        high = schema.get("maxLength")
        if isinstance(low, int) and len(text) < low:
            text = text + "x" * (low - len(text))
        if isinstance(high, int) and len(text) > high:
            text = text[:high]
        return text
