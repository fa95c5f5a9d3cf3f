"""Python functions as tools: their OpenAI specs, running the calls a model makes, and the
messages that carry the results back.

Rule: a tool never crashes the cell. Bad JSON arguments, an unknown tool name, missing or
ill-typed arguments or an exception inside the function all become a `ToolOutput` whose `error`
("ToolError: ...") goes back to the model as the tool message, so the model can recover. Only
problems the user can fix before sending (a missing name, `*args`, an unsupported type) raise
`ParameterError`. One pydantic model of the signature (`create_model`, imported lazily) writes
the parameters' schema, then checks and converts each call's arguments against it before the
function runs. Tool-call ids go back verbatim (Kimi's look like `functions.get_weather:0`).
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from baseten_magic.core import structured
from baseten_magic.core.catalog import ModelInfo
from baseten_magic.core.errors import ParameterError
from baseten_magic.core.jsonable import to_jsonable
from baseten_magic.core.result import ChatResult, ToolCall

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "ToolOutput",
    "Tools",
    "aexecute_tool_calls",
    "encode_result",
    "execute_tool_calls",
    "needs_reasoning_back",
    "parse_docstring",
    "resolve_tools",
    "tool_messages",
    "tool_spec",
    "tool_specs",
]

Tools = Sequence[Callable[..., Any]] | Mapping[str, Callable[..., Any]]

_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_SECTION_RE = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):\s*$")
_OTHER_SECTION_RE = re.compile(
    r"^(Returns?|Yields?|Raises?|Examples?|Notes?|See Also|References|Attributes|Warns?)"
    r":?\s*$"
)
_GOOGLE_ITEM_RE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ITEM_RE = re.compile(r"^(\w+)\s*(?::.*)?$")
_REST_RE = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


@dataclass(frozen=True)
class ToolOutput:
    """What running one tool call produced; `content` is what the model gets back."""

    call_id: str
    name: str
    arguments: dict[str, Any] | None
    result: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the tool ran and returned."""
        return self.error is None

    @property
    def content(self) -> str:
        """The tool message content: the result, or the error when the call failed."""
        return self.result if self.error is None else self.error


# -- specs ----------------------------------------------------------------------------------------


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (first paragraph) and per-parameter descriptions of a docstring.

    Understands Google (`Args:`), NumPy (`Parameters` + dashes) and reST (`:param x:`) styles.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or _SECTION_RE.match(stripped) or stripped.startswith(":"):
            break
        if stripped in ("Parameters", "Args", "Returns") or set(stripped) == {"-"}:
            break
        summary.append(stripped)
    params: dict[str, str] = {}
    _google(lines, params)
    _numpy(lines, params)
    _rest(lines, params)
    return " ".join(summary), params


def _google(lines: list[str], params: dict[str, str]) -> None:
    inside, indent, current = False, 0, ""
    for line in lines:
        stripped = line.strip()
        if _SECTION_RE.match(stripped):
            inside, indent, current = True, -1, ""
            continue
        if not inside:
            continue
        if not stripped:
            continue
        here = len(line) - len(line.lstrip())
        if here == 0 or _OTHER_SECTION_RE.match(stripped):
            inside = False
            continue
        if indent < 0:
            indent = here
        match = _GOOGLE_ITEM_RE.match(stripped)
        if here == indent and match:
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current and here > indent:
            params[current] = (params[current] + " " + stripped).strip()


def _numpy(lines: list[str], params: dict[str, str]) -> None:
    for start in range(len(lines) - 1):
        if lines[start].strip() == "Parameters" and set(lines[start + 1].strip()) == {"-"}:
            break
    else:
        return
    current = ""
    for line in lines[start + 2 :]:
        if not line.strip():
            continue
        if not line[0].isspace():
            match = _NUMPY_ITEM_RE.match(line.strip())
            if not match or _OTHER_SECTION_RE.match(line.strip()) or set(line.strip()) == {"-"}:
                break
            current = match.group(1)
            params.setdefault(current, "")
        elif current:
            params[current] = (params[current] + " " + line.strip()).strip()


def _rest(lines: list[str], params: dict[str, str]) -> None:
    current = ""
    for line in lines:
        stripped = line.strip()
        match = _REST_RE.match(stripped)
        if match:
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif stripped.startswith(":") or not stripped:
            current = ""
        elif current and line[:1].isspace():
            params[current] = (params[current] + " " + stripped).strip()


def _parameter_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The type hints of a function's parameters; the return annotation is not needed, so a
    name it uses that cannot be resolved (a class local to a cell's function) does no harm."""
    annotations = dict(getattr(inspect.unwrap(fn), "__annotations__", None) or {})
    annotations.pop("return", None)
    holder = types.SimpleNamespace(
        __annotations__=annotations,
        __globals__=getattr(inspect.unwrap(fn), "__globals__", {}),
        __qualname__=f"{getattr(fn, '__qualname__', 'the tool')}()",
    )
    hints = structured.type_hints(holder)
    hints.pop("return", None)
    return hints


def _tool_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str):
        raise ParameterError(
            f"expected a named function as a tool, got {type(fn).__qualname__} without __name__; "
            "wrap it in a def"
        )
    if not _TOOL_NAME_RE.match(name):
        raise ParameterError(
            f"tool names must match [a-zA-Z0-9_-]{{1,64}}, got {name!r}; rename the function"
        )
    return name


def tool_spec(fn: Callable[..., Any]) -> dict[str, Any]:
    """The OpenAI tool spec of a function, from its signature, type hints and docstring."""
    if not callable(fn):
        raise ParameterError(
            f"expected a function as a tool, got {type(fn).__qualname__}; pass the function itself"
        )
    name = _tool_name(fn)
    description, _ = parse_docstring(inspect.getdoc(fn))
    _, schema = _arguments(fn, name)
    function: dict[str, Any] = {"name": name}
    if description:
        function["description"] = description
    function["parameters"] = {"type": "object", "properties": {}, "required": [], **schema}
    return {"type": "function", "function": function}


def _arguments(fn: Callable[..., Any], name: str) -> tuple[type[BaseModel], dict[str, Any]]:
    """A pydantic model of `fn`'s parameters and its plain JSON schema. Each field is aliased to
    its parameter's name, so any name works (`json`, `_x`)."""
    from pydantic import ConfigDict, create_model

    hints = _parameter_hints(fn)
    _, docs = parse_docstring(inspect.getdoc(fn))
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise ParameterError(
                f"tool {name}() takes {star}{param.name}, which a JSON schema cannot describe; "
                "give the tool named parameters instead"
            )
        hint = hints.get(param.name)
        if hint is None:  # an unannotated `x=3` is an int
            unknown = param.default is param.empty or param.default is None
            hint = hints[param.name] = Any if unknown else type(param.default)
        fields[f"p{len(fields)}"] = (
            structured.readable(hint),
            _field(param, docs.get(param.name), hint),
        )
    try:
        with structured.pydantic_errors(fn):
            model = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
        return model, structured.schema_for_type(model)
    except ParameterError as exc:
        for param_name, hint in hints.items():  # name the parameter at fault
            try:
                structured.schema_for_type(hint)
            except ParameterError as culprit:
                raise ParameterError(
                    f"tool {name}(), parameter {param_name!r}: {culprit}"
                ) from None
        raise ParameterError(f"tool {name}(): {exc}") from None


def _field(param: inspect.Parameter, doc: str | None, hint: Any) -> Any:
    """The pydantic field of one parameter: its name, default and docstring description."""
    from pydantic import Field
    from pydantic_core import PydanticSerializationError, to_jsonable_python

    options: dict[str, Any] = {"alias": param.name}
    metadata = typing.get_args(hint)[1:] if typing.get_origin(hint) is typing.Annotated else ()
    if doc and not any(isinstance(m, str) or getattr(m, "description", None) for m in metadata):
        options["description"] = doc  # a description in Annotated wins over the docstring
    if param.default is not param.empty:
        try:
            to_jsonable_python(param.default)
            options["default"] = param.default
        except PydanticSerializationError:
            # A default JSON cannot show still makes the parameter optional, unseen.
            options["default_factory"] = lambda: param.default
    return Field(**options)


def tool_specs(fns: Tools) -> list[dict[str, Any]]:
    """The OpenAI tool specs of several functions (names must be unique)."""
    specs = [tool_spec(fn) for fn in _functions(fns)]
    names = [spec["function"]["name"] for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ParameterError(
            f"tool names must be unique, got {', '.join(duplicates)} more than once; "
            "rename one of the functions"
        )
    return specs


def _functions(fns: Tools) -> list[Callable[..., Any]]:
    return list(fns.values()) if isinstance(fns, Mapping) else list(fns)


def resolve_tools(names: list[str], namespace: Mapping[str, Any]) -> list[Callable[..., Any]]:
    """Look up tool functions by name (dotted names allowed) in a namespace, e.g. `user_ns`."""
    found: list[Callable[..., Any]] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        head, *rest = name.split(".")
        if head not in namespace:
            raise ParameterError(
                f"tool {name!r} is not defined in the notebook{_did_you_mean(head, namespace)}; "
                "define the function first or check the spelling"
            )
        obj = namespace[head]
        for part in rest:
            if not hasattr(obj, part):
                raise ParameterError(
                    f"tool {name!r}: {head!r} has no attribute {part!r}; check the spelling"
                )
            obj = getattr(obj, part)
        if not callable(obj) or isinstance(obj, type):
            raise ParameterError(
                f"tool {name!r} is {_kind(obj)}, not a function; pass the name of a def"
            )
        if obj not in found:
            found.append(obj)
    return found


def _did_you_mean(name: str, namespace: Mapping[str, Any]) -> str:
    candidates = [
        key
        for key, value in namespace.items()
        if not key.startswith("_") and callable(value) and not isinstance(value, type)
    ]
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__qualname__}"
    return f"a {type(obj).__qualname__}"


# -- running calls --------------------------------------------------------------------------------


def execute_tool_calls(calls: Sequence[ToolCall], fns: Tools) -> list[ToolOutput]:
    """Run each tool call with its decoded arguments; failures become `ToolOutput.error`."""
    table = _table(fns)
    outputs: list[ToolOutput] = []
    for call in calls:
        prepared = _prepare(call, table)
        if isinstance(prepared, ToolOutput):
            outputs.append(prepared)
            continue
        try:
            value = prepared.invoke()
            if inspect.isawaitable(value):
                _close(value)
                raise TypeError(
                    f"{prepared.call['name']}() is async; run the tool loop with arun_tool_loop"
                )
        except Exception as exc:  # the model gets the error, the cell carries on
            outputs.append(prepared.failed(exc))
        else:
            outputs.append(prepared.returned(value))
    return outputs


async def aexecute_tool_calls(calls: Sequence[ToolCall], fns: Tools) -> list[ToolOutput]:
    """The async twin of `execute_tool_calls`: async tools are awaited, sync tools called."""
    table = _table(fns)
    outputs: list[ToolOutput] = []
    for call in calls:
        prepared = _prepare(call, table)
        if isinstance(prepared, ToolOutput):
            outputs.append(prepared)
            continue
        try:
            value = prepared.invoke()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:  # the model gets the error, the cell carries on
            outputs.append(prepared.failed(exc))
        else:
            outputs.append(prepared.returned(value))
    return outputs


def _close(value: object) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        close()  # an un-awaited coroutine would warn (and warnings are errors in tests)


def _table(fns: Tools) -> dict[str, Callable[..., Any]]:
    if isinstance(fns, Mapping):
        return dict(fns)
    return {_tool_name(fn): fn for fn in fns}


@dataclass(frozen=True)
class _Prepared:
    """A call whose function was found and whose arguments decoded and bound."""

    call: ToolCall
    arguments: dict[str, Any]
    invoke: Callable[[], Any]

    def failed(self, exc: Exception) -> ToolOutput:
        message = " ".join(str(exc).split()) or "(no message)"
        return ToolOutput(
            call_id=self.call["id"],
            name=self.call["name"],
            arguments=self.arguments,
            result="",
            error=f"ToolError: {type(exc).__name__}: {message}",
        )

    def returned(self, value: Any) -> ToolOutput:
        return ToolOutput(
            call_id=self.call["id"],
            name=self.call["name"],
            arguments=self.arguments,
            result=encode_result(value),
        )


def _prepare(call: ToolCall, table: Mapping[str, Callable[..., Any]]) -> _Prepared | ToolOutput:
    """Find the function and bind the decoded arguments, or say why not (as a ToolOutput)."""
    name = call["name"]

    def refuse(message: str, arguments: dict[str, Any] | None = None) -> ToolOutput:
        return ToolOutput(call["id"], name, arguments, "", f"ToolError: {message}")

    fn = table.get(name)
    if fn is None:
        available = ", ".join(sorted(table)) or "none"
        return refuse(f"unknown tool {name!r}; the available tools are: {available}")
    raw = call["arguments"].strip() or "{}"
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError as exc:
        return refuse(
            f"the arguments are not valid JSON ({exc.msg} at line {exc.lineno} column "
            f"{exc.colno}); send a JSON object matching the parameters"
        )
    if not isinstance(arguments, dict):
        return refuse(
            f"expected the arguments as a JSON object, got {type(arguments).__name__}; "
            "send a JSON object matching the parameters"
        )
    from pydantic import ValidationError

    try:
        signature = inspect.signature(fn)
        named = dict(arguments)
        positional = [
            named.pop(p.name)
            for p in signature.parameters.values()
            if p.kind is p.POSITIONAL_ONLY and p.name in named
        ]
        bound = signature.bind(*positional, **named)  # Python's words for a missing or extra name
        model, schema = _arguments(fn, name)
        # Checked as strictly as a reply: a dict is read as the dataclass, a string as the Enum,
        # but "3" is not an integer, as the schema the model was shown says.
        parsed = model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        problem = structured.mismatch(exc, arguments, schema)
        return refuse(f"bad arguments for {name}(): {problem}", arguments)
    except (TypeError, ValueError, ParameterError) as exc:
        message = " ".join(str(exc).split())
        return refuse(f"bad arguments for {name}(): {message}", arguments)
    for key in parsed.model_fields_set:  # converted: a dict became the dataclass, and so on
        bound.arguments[model.model_fields[key].alias or key] = getattr(parsed, key)
    return _Prepared(call, arguments, lambda: fn(*bound.args, **bound.kwargs))


def encode_result(value: Any) -> str:
    """A tool's return value as message content: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value  # quoting a plain string would only add noise for the model
    return json.dumps(to_jsonable(value), ensure_ascii=False)


# -- messages -------------------------------------------------------------------------------------


def needs_reasoning_back(model: ModelInfo | str) -> bool:
    """True for models that reject a tool loop whose assistant turn lacks `reasoning_content`."""
    slug = model.slug if isinstance(model, ModelInfo) else model
    thinking = model.reasoning != "none" if isinstance(model, ModelInfo) else True
    return "kimi" in slug.lower() and thinking


def tool_messages(
    result: ChatResult, outputs: Sequence[ToolOutput], *, model: ModelInfo | str
) -> list[dict[str, Any]]:
    """The assistant tool-call message, then one `tool` message per output, for the next turn."""
    assistant: dict[str, Any] = {
        "role": "assistant",
        "content": result.content or None,
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"] or "{}"},
            }
            for call in result.tool_calls
        ],
    }
    if result.reasoning or needs_reasoning_back(model):
        # Kimi thinking models require their reasoning back in a tool loop; others ignore it.
        assistant["reasoning_content"] = result.reasoning
    messages = [assistant]
    messages.extend(
        {"role": "tool", "tool_call_id": out.call_id, "content": out.content} for out in outputs
    )
    return messages
