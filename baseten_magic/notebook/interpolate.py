"""`-i` interpolation: `{{name}}` in a cell becomes a compact summary of a notebook variable.

Rule:
- Only `{{ ... }}` is replaced, and only by a reference: a name, then any mix of `.attr`
  and `[constant]` (`{{df}}`, `{{ run.config }}`, `{{rows[0]}}`, `{{cfg["key"]}}`). It is parsed
  with `ast`, never evaluated: no calls, operators or private (`_`) attributes.
- Spaces inside the braces are allowed. `\\{{` is a literal `{{`. Single braces, JSON and
  Markdown code (fenced blocks and `inline code`) are never touched.
- A missing name, a failed lookup or a `{{ ... }}` that is not a reference is an error naming
  it; nothing is sent.
- Values are summarised compactly: strings as they are up to 4,000 characters (then truncated,
  with a note of the total length); DataFrames and Series (recognised by shape, `head` and
  `to_string`/`to_markdown`) as shape, columns and dtypes and the first 5 rows; arrays as shape
  and dtype plus a truncated repr; anything else as its `repr`, truncated to 1,000 characters.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from baseten_magic.core.errors import ParameterError

MAX_STRING = 4000
MAX_REPR = 1000
HEAD_ROWS = 5

# Fenced code blocks (an unterminated fence runs to the end), then inline code spans.
_FENCE = re.compile(
    r"^[ ]{0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^[ ]{0,3}(?P=fence)[`~]*[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_INLINE = re.compile(r"(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`)", re.DOTALL)
_PLACEHOLDER = re.compile(r"\\\{\{|\{\{(?P<expr>[^{}\n]*)\}\}")


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace every `{{reference}}` outside code with a summary of its value."""
    out: list[str] = []
    for code, segment in _segments(text):
        out.append(segment if code else _replace(segment, namespace))
    return "".join(out)


def _segments(text: str) -> list[tuple[bool, str]]:
    """Split text into (is_code, segment) pieces, in order."""
    pieces: list[tuple[bool, str]] = []
    position = 0
    for fence in _FENCE.finditer(text):
        pieces.extend(_inline_segments(text[position : fence.start()]))
        pieces.append((True, fence.group(0)))
        position = fence.end()
    pieces.extend(_inline_segments(text[position:]))
    return pieces


def _inline_segments(text: str) -> list[tuple[bool, str]]:
    pieces: list[tuple[bool, str]] = []
    position = 0
    for span in _INLINE.finditer(text):
        pieces.append((False, text[position : span.start()]))
        pieces.append((True, span.group(0)))
        position = span.end()
    pieces.append((False, text[position:]))
    return pieces


def _replace(text: str, namespace: Mapping[str, Any]) -> str:
    def substitute(match: re.Match[str]) -> str:
        expr = match.group("expr")
        if expr is None:  # the `\{{` escape
            return "{{"
        return summarize(resolve(expr, namespace))

    return _PLACEHOLDER.sub(substitute, text)


def resolve(expr: str, namespace: Mapping[str, Any]) -> Any:
    """Look up a reference (`name`, `.attr`, `[constant]`) in the namespace; never evaluates."""
    source = expr.strip()
    shown = "{{" + source + "}}"
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError:
        raise _not_a_reference(shown) from None
    return _lookup(tree, namespace, shown)


def _lookup(node: ast.expr, namespace: Mapping[str, Any], shown: str) -> Any:
    if isinstance(node, ast.Name):
        if node.id not in namespace:
            raise ParameterError(
                f"-i: {shown} names {node.id!r}, which is not defined in the notebook; "
                f"define it first, or write \\{{{{ for literal braces"
            )
        return namespace[node.id]
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise ParameterError(
                f"-i: {shown} reads the private attribute {node.attr!r}; "
                "only public attributes can be interpolated"
            )
        owner = _lookup(node.value, namespace, shown)
        try:
            return getattr(owner, node.attr)
        except Exception as exc:
            raise _failed(shown, exc) from None
    if isinstance(node, ast.Subscript):
        owner = _lookup(node.value, namespace, shown)
        key = _constant(node.slice)
        if key is _NOT_CONSTANT:
            raise _not_a_reference(shown)
        try:
            return owner[key]
        except Exception as exc:
            raise _failed(shown, exc) from None
    raise _not_a_reference(shown)


_NOT_CONSTANT = object()


def _constant(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | str):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int)
    ):
        return -node.operand.value
    return _NOT_CONSTANT


def _not_a_reference(shown: str) -> ParameterError:
    return ParameterError(
        f"-i: {shown} is not a reference: expected a name with optional .attr and [constant] "
        "parts (no calls or operators); write \\{{ for literal braces"
    )


def _failed(shown: str, exc: Exception) -> ParameterError:
    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
    reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return ParameterError(f"-i: looking up {shown} failed ({reason}); check the name and key")


def summarize(value: Any) -> str:
    """A compact text summary of a value, for a prompt."""
    if isinstance(value, str):
        return _truncate(value, MAX_STRING)
    if _is_frame_like(value):
        return _summarize_frame(value)
    if _is_array_like(value):
        return _summarize_array(value)
    return _truncate(repr(value), MAX_REPR)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated: {len(text):,} characters in total]"


def _shape(value: Any) -> tuple[int, ...] | None:
    try:
        shape = value.shape
    except Exception:
        return None
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        return shape
    return None


def _is_frame_like(value: Any) -> bool:
    shape = _shape(value)
    return (
        shape is not None
        and len(shape) in (1, 2)
        and callable(getattr(value, "head", None))
        and (
            callable(getattr(value, "to_string", None))
            or callable(getattr(value, "to_markdown", None))
        )
    )


def _is_array_like(value: Any) -> bool:
    return _shape(value) is not None and hasattr(value, "dtype")


def _table(head: Any) -> str:
    # to_markdown needs the optional `tabulate` package; fall back to to_string.
    for method in ("to_markdown", "to_string"):
        render = getattr(head, method, None)
        if callable(render):
            try:
                return str(render())
            except Exception:
                continue
    return repr(head)


def _summarize_frame(value: Any) -> str:
    shape = _shape(value) or ()
    kind = type(value).__name__
    lines: list[str] = []
    if len(shape) == 2:
        rows, cols = shape
        lines.append(f"{kind} with {rows:,} rows × {cols:,} columns")
        dtypes = getattr(value, "dtypes", None)
        columns = list(getattr(value, "columns", []))
        if columns:
            described = []
            for column in columns:
                try:
                    dtype = dtypes[column] if dtypes is not None else None
                except Exception:
                    dtype = None
                described.append(f"{column} ({dtype})" if dtype is not None else str(column))
            lines.append(_truncate("columns: " + ", ".join(described), MAX_REPR))
    else:
        name = getattr(value, "name", None)
        dtype = getattr(value, "dtype", None)
        label = f" {name!r}" if name is not None else ""
        lines.append(f"{kind}{label} with {shape[0]:,} values, dtype {dtype}")
    try:
        head = value.head(HEAD_ROWS)
    except Exception:
        return "\n".join(lines)
    lines.append(f"first {min(HEAD_ROWS, shape[0]) if shape else HEAD_ROWS} rows:")
    lines.append(_truncate(_table(head), MAX_STRING))
    return "\n".join(lines)


def _summarize_array(value: Any) -> str:
    shape = _shape(value)
    return f"{type(value).__name__} shape={shape} dtype={value.dtype}\n" + _truncate(
        repr(value), MAX_REPR
    )
