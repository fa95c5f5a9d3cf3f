"""The 44 request parameters: one declarative table, validation, and request building.

Rule: every parameter is described once in `PARAMETERS` (kind, range or choices, one-line help);
the widget panel, `%baseten help params` and validation all read that table. Validation happens
before anything is sent and raises `ParameterError` with one line saying what was expected, what
arrived and what to pass instead. Ranges follow Baseten's documentation (see BASETEN.md,
"Request parameters"); servers that accept more (for example `n > 1`) are not second-guessed
where the range is a server choice rather than a wire rule.
"""

from __future__ import annotations

import difflib
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from baseten_magic.core.errors import BasetenWarning, ParameterError

if TYPE_CHECKING:
    from baseten_magic.core.catalog import Catalog

Kind = Literal["number", "integer", "boolean", "string", "choice", "json"]
Origin = Literal["openai", "engine"]

ROLES = ("system", "user", "assistant", "tool", "developer")
HELP_POINTER = "%baseten help params"
MAX_STOP_SEQUENCES = 32


def _show(value: Any) -> str:
    """A short, one-line rendering of a value for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except ValueError:  # circular structures
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    names = {
        bool: "a boolean",
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        tuple: "a list",
        dict: "an object",
        type(None): "null",
    }
    return names.get(type(value), f"a {type(value).__name__}")


def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True)
class ParamSpec:
    """One request parameter: its kind, range or choices, help line and validator."""

    name: str
    kind: Kind
    help: str
    example: str
    origin: Origin = "openai"
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[str, ...] = ()
    default: str = ""
    range_note: str = ""
    flag: str = ""
    usage: str = ""
    accepts: str = ""
    # Structured parameters check their shape with a function of (spec, value).
    checker: Callable[[ParamSpec, Any], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def hint(self) -> str:
        """How to pass this parameter from the magic, e.g. `--temperature 0.7`."""
        if self.usage:
            return self.usage
        if self.flag:
            return f"{self.flag} {self.example}"
        assignment = f"{self.name}={self.example}"
        if any(c in self.example for c in "\"' {}[]"):
            return f"--param '{assignment}'"
        return f"--param {assignment}"

    @property
    def constraint(self) -> str:
        """The accepted values in words, e.g. `a number from 0 to 4`."""
        if self.accepts:
            return self.accepts
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "boolean":
            return "true or false"
        if self.kind == "string":
            return "a string"
        if self.kind not in ("number", "integer"):
            return self.help
        noun = "a number" if self.kind == "number" else "an integer"
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            if not self.exclusive_minimum and not self.exclusive_maximum:
                return f"{noun} from {_number_text(lo)} to {_number_text(hi)}"
            low = "greater than" if self.exclusive_minimum else "at least"
            high = "less than" if self.exclusive_maximum else "at most"
            return f"{noun} {low} {_number_text(lo)} and {high} {_number_text(hi)}"
        if lo is not None:
            word = "greater than" if self.exclusive_minimum else "of at least"
            return f"{noun} {word} {_number_text(lo)}"
        if hi is not None:
            return f"{noun} of at most {_number_text(hi)}"
        return noun

    def error(self, expected: str, value: Any, *, show_type: bool = False) -> ParameterError:
        """A one-line ParameterError: expected, got, what to pass."""
        got = _show(value)
        if show_type:
            got += f" ({_type_name(value)})"
        note = f" ({self.range_note})" if self.range_note else ""
        detail = f"{self.name} must be {expected}, got {got}{note}"
        return ParameterError(f"{detail}; pass e.g. {self.hint}", param=self.name, detail=detail)

    def validate(self, value: Any) -> Any:
        """Check one value and return it normalized (ints as int, numbers as float)."""
        if self.checker is not None:
            return self.checker(self, value)
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise self.error("true or false", value, show_type=True)
            return value
        if self.kind == "string":
            if not isinstance(value, str) or not value:
                raise self.error("a non-empty string", value, show_type=True)
            return value
        if self.kind == "choice":
            if not isinstance(value, str) or value.strip().lower() not in self.choices:
                raise self.error(self.constraint, value)
            return value.strip().lower()
        if self.kind == "integer":
            return self._check_range(_as_int(self, value), value)
        if self.kind == "number":
            return self._check_range(_as_float(self, value), value)
        return value

    def _check_range(self, number: float, original: Any) -> Any:
        lo, hi = self.minimum, self.maximum
        below = lo is not None and (number <= lo if self.exclusive_minimum else number < lo)
        above = hi is not None and (number >= hi if self.exclusive_maximum else number > hi)
        if below or above:
            raise self.error(self.constraint, original)
        return number


def _as_int(spec: ParamSpec, value: Any) -> int:
    # bool is an int subclass: True must not pass as 1.
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise spec.error(spec.constraint, value, show_type=True)
    if isinstance(value, int):
        return value
    if not math.isfinite(value) or value != int(value):
        raise spec.error(spec.constraint, value)
    return int(value)


def _as_float(spec: ParamSpec, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise spec.error(spec.constraint, value, show_type=True)
    number = float(value)
    # NaN compares false with every bound, so it would slip through a range check.
    if not math.isfinite(number):
        raise spec.error(spec.constraint, value)
    return number


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- checkers for structured parameters -----------------------------------------------------


def _check_messages(spec: ParamSpec, value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    expected = 'a non-empty list of {"role", "content"} objects (or a plain string)'
    if not isinstance(value, (list, tuple)) or not value:
        raise spec.error(expected, value, show_type=True)
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise ParameterError(
                f'{where} must be an object like {{"role": "user", "content": "Hi"}}, '
                f"got {_show(message)}; pass each message as a dict",
                param="messages",
            )
        role = message.get("role")
        if role not in ROLES:
            raise ParameterError(
                f"{where}.role must be one of {', '.join(ROLES)}, got {_show(role)}; "
                'fix the message, e.g. {"role": "user", "content": "Hi"}',
                param="messages",
            )
        content = message.get("content")
        if content is None:
            if not (role == "assistant" and message.get("tool_calls")):
                raise ParameterError(
                    f"{where}.content must be a string or a list of parts, got null; only an "
                    "assistant message with tool_calls may have no content",
                    param="messages",
                )
        elif not isinstance(content, (str, list)):
            raise ParameterError(
                f"{where}.content must be a string or a list of parts, got {_show(content)} "
                f"({_type_name(content)}); convert it with str() or build content parts",
                param="messages",
            )
        messages.append(dict(message))
    return messages


def _check_logit_bias(spec: ParamSpec, value: Any) -> dict[str, float | int]:
    expected = "an object {token-id: bias number}"
    if not isinstance(value, Mapping):
        raise spec.error(expected, value, show_type=True)
    result: dict[str, float | int] = {}
    for key, bias in value.items():
        if _is_int(key) or (isinstance(key, str) and key.strip().lstrip("-").isdigit()):
            token = int(key)
        else:
            raise spec.error(f"{expected}; token id {_show(key)} is not an integer", value)
        if token < 0:
            raise spec.error(f"{expected}; token id {token} is negative", value)
        if isinstance(bias, bool) or not isinstance(bias, (int, float)):
            raise spec.error(f"{expected}; bias {_show(bias)} is not a number", value)
        if not math.isfinite(bias):
            raise spec.error(f"{expected}; bias {_show(bias)} is not finite", value)
        # vLLM clamps a bias to [-100, 100] rather than rejecting it; do the same, visibly.
        # The wire format is JSON, whose object keys are strings.
        result[str(token)] = min(max(bias, -100), 100)
    return result


def _check_stop(spec: ParamSpec, value: Any) -> str | list[str]:
    expected = f"a string or a list of at most {MAX_STOP_SEQUENCES} non-empty strings"
    if isinstance(value, str):
        if not value:
            raise spec.error(expected, value)
        return value
    if not isinstance(value, (list, tuple)) or len(value) > MAX_STOP_SEQUENCES:
        raise spec.error(expected, value, show_type=not isinstance(value, (list, tuple)))
    if not all(isinstance(s, str) and s for s in value):
        raise spec.error(expected, value)
    return list(value)


def _check_string_or_strings(spec: ParamSpec, value: Any) -> str | list[str]:
    expected = "a string or a list of strings"
    if isinstance(value, str) and value:
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(s, str) and s for s in value):
        return list(value)
    raise spec.error(expected, value, show_type=True)


def _check_token_ids(spec: ParamSpec, value: Any) -> list[int]:
    expected = "a list of token ids (integers of at least 0)"
    if not isinstance(value, (list, tuple)) or not all(_is_int(t) and t >= 0 for t in value):
        raise spec.error(expected, value, show_type=not isinstance(value, (list, tuple)))
    return [int(t) for t in value]


def _check_stream_options(spec: ParamSpec, value: Any) -> dict[str, Any]:
    expected = "an object like {include_usage: true, continuous_usage_stats: false}"
    if not isinstance(value, Mapping):
        raise spec.error(expected, value, show_type=True)
    for key in ("include_usage", "continuous_usage_stats"):
        if key in value and not isinstance(value[key], bool):
            raise spec.error(f"{expected} ({key} true or false)", value)
    return dict(value)


def _check_tools(spec: ParamSpec, value: Any) -> list[dict[str, Any]]:
    expected = 'a list of {"type": "function", "function": {"name", "parameters"}} objects'
    if not isinstance(value, (list, tuple)):
        raise spec.error(expected, value, show_type=True)
    tools: list[dict[str, Any]] = []
    for tool in value:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if (
            not isinstance(tool, Mapping)
            or tool.get("type") != "function"
            or not isinstance(function, Mapping)
            or not isinstance(function.get("name"), str)
            or not function["name"]
            or not isinstance(function.get("parameters", {}), Mapping)
        ):
            raise spec.error(expected, tool)
        tools.append(dict(tool))
    return tools


def _check_tool_choice(spec: ParamSpec, value: Any) -> str | dict[str, Any]:
    expected = 'none, auto, required or {"type": "function", "function": {"name": ...}}'
    if isinstance(value, str):
        if value.strip().lower() in ("none", "auto", "required"):
            return value.strip().lower()
        raise spec.error(expected, value)
    if isinstance(value, Mapping):
        function = value.get("function")
        if (
            value.get("type") == "function"
            and isinstance(function, Mapping)
            and isinstance(function.get("name"), str)
            and function["name"]
        ):
            return dict(value)
    raise spec.error(expected, value)


def _check_response_format(spec: ParamSpec, value: Any) -> dict[str, Any]:
    expected = (
        '{"type": "text"}, {"type": "json_object"}, '
        '{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}, '
        '{"type": "structural_tag", ...} or {"type": "grammar", ...}'
    )
    # structural_tag (vLLM, SGLang) and grammar (Baseten's schema) carry engine-specific bodies
    # that the server validates; only their type is checked here.
    if not isinstance(value, Mapping) or value.get("type") not in (
        "text",
        "json_object",
        "json_schema",
        "structural_tag",
        "grammar",
    ):
        raise spec.error(expected, value)
    if value["type"] == "json_schema":
        inner = value.get("json_schema")
        if (
            not isinstance(inner, Mapping)
            or not isinstance(inner.get("name"), str)
            or not inner["name"]
            or not isinstance(inner.get("schema"), Mapping)
        ):
            raise spec.error(expected, value)
    return dict(value)


def _check_top_k(spec: ParamSpec, value: Any) -> int:
    number = _as_int(spec, value)
    if number < -1:  # vLLM reads both 0 and -1 as "off"
        raise spec.error(spec.constraint, number)
    return number


def _check_early_stopping(spec: ParamSpec, value: Any) -> bool | str:
    if isinstance(value, bool) or value == "never":
        return bool(value) if isinstance(value, bool) else "never"
    raise spec.error('true, false or "never"', value, show_type=True)


def _check_documents(spec: ParamSpec, value: Any) -> list[dict[str, Any]]:
    # vLLM's schema: list[dict[str, str]] (any string fields, e.g. title and text).
    expected = 'a list of objects with string fields, e.g. {"title": ..., "text": ...}'
    if not isinstance(value, (list, tuple)):
        raise spec.error(expected, value, show_type=True)
    for document in value:
        if not (
            isinstance(document, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in document.items())
        ):
            raise spec.error(expected, document)
    return [dict(d) for d in value]


def _check_object(spec: ParamSpec, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise spec.error("an object with string keys", value, show_type=True)
    return dict(value)


# --- the table ---------------------------------------------------------------------------------


def _table(*specs: ParamSpec) -> Mapping[str, ParamSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


_JSON_EXAMPLE_TOOLS = '[{"type": "function", "function": {"name": "f", "parameters": {}}}]'

PARAMETERS: Mapping[str, ParamSpec] = _table(
    # OpenAI Chat Completions parameters.
    ParamSpec("model", "string", "Model slug or alias.", "gpt-oss", usage="-m gpt-oss"),
    ParamSpec(
        "messages",
        "json",
        "The conversation: a list of {role, content} messages (or a plain string).",
        '[{"role": "user", "content": "Hi"}]',
        checker=_check_messages,
        usage='[{"role": "user", "content": "Hi"}] or a plain string',
    ),
    ParamSpec(
        "max_tokens",
        "integer",
        "Upper bound on generated tokens; reasoning tokens count toward it.",
        "1024",
        minimum=1,
        default="4096",
        flag="--max-tokens",
    ),
    ParamSpec(
        "temperature",
        "number",
        "Sampling temperature: higher is more random.",
        "0.7",
        minimum=0,
        maximum=4,
        range_note="Baseten's range",
        flag="--temperature",
    ),
    ParamSpec(
        "top_p",
        "number",
        "Nucleus sampling: keep the smallest token set whose probability reaches top_p.",
        "0.9",
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
        flag="--top-p",
    ),
    ParamSpec(
        "presence_penalty",
        "number",
        "Penalize tokens that already appeared (encourages new topics).",
        "0.5",
        minimum=-2,
        maximum=2,
    ),
    ParamSpec(
        "frequency_penalty",
        "number",
        "Penalize tokens by how often they appeared (reduces repetition).",
        "0.5",
        minimum=-2,
        maximum=2,
    ),
    ParamSpec(
        "logit_bias",
        "json",
        "Bias per token id, from -100 (ban) to 100 (force); values beyond are clamped.",
        '{"1234": -100}',
        checker=_check_logit_bias,
    ),
    ParamSpec("logprobs", "boolean", "Return log probabilities of the output tokens.", "true"),
    ParamSpec(
        "top_logprobs",
        "integer",
        "Alternatives returned per token with logprobs (needs logprobs=true).",
        "5",
        minimum=0,
        maximum=20,
    ),
    ParamSpec(
        "seed",
        "integer",
        "Seed for reproducible sampling (best effort).",
        "42",
        minimum=-(2**63),  # vLLM rejects seeds outside a signed 64-bit integer
        maximum=2**63 - 1,
        accepts="an integer from -2**63 to 2**63 - 1 (signed 64 bits)",
    ),
    ParamSpec(
        "stop",
        "json",
        f"Stop sequences: a string or a list of up to {MAX_STOP_SEQUENCES} strings.",
        '["END"]',
        checker=_check_stop,
    ),
    ParamSpec(
        "n",
        "integer",
        "Number of choices to generate (Baseten accepts only 1).",
        "1",
        minimum=1,
        default="1",
    ),
    ParamSpec(
        "stream", "boolean", "Stream the answer as it is generated.", "false", usage="--no-stream"
    ),
    ParamSpec(
        "stream_options",
        "json",
        "Streaming options: include_usage, continuous_usage_stats.",
        '{"continuous_usage_stats": true}',
        checker=_check_stream_options,
    ),
    ParamSpec(
        "tools",
        "json",
        "Functions the model may call (OpenAI tool schema).",
        _JSON_EXAMPLE_TOOLS,
        checker=_check_tools,
        usage="--tools get_weather (a function in the namespace)",
    ),
    ParamSpec(
        "tool_choice",
        "json",
        "Whether and which tool to call: none, auto, required or a named function.",
        "auto",
        checker=_check_tool_choice,
    ),
    ParamSpec(
        "parallel_tool_calls",
        "boolean",
        "Allow several tool calls in one turn.",
        "false",
    ),
    ParamSpec(
        "response_format",
        "json",
        "Output format: text, json_object or json_schema.",
        '{"type": "json_object"}',
        checker=_check_response_format,
    ),
    ParamSpec("user", "string", "An end-user identifier for abuse monitoring.", "analyst-42"),
    ParamSpec(
        "reasoning_effort",
        "choice",
        "Reasoning depth on models that support it (gpt-oss).",
        "high",
        choices=("low", "medium", "high"),
        flag="--reasoning-effort",
    ),
    # Engine extras (vLLM, SGLang, TensorRT-LLM).
    ParamSpec(
        "top_k",
        "integer",
        "Sample from the k most likely tokens; 0 or -1 turns it off.",
        "40",
        origin="engine",
        minimum=-1,
        default="50",
        accepts="an integer of at least 1, or 0 or -1 to turn it off",
        checker=_check_top_k,
    ),
    ParamSpec(
        "min_p",
        "number",
        "Drop tokens less likely than min_p times the most likely one.",
        "0.05",
        origin="engine",
        minimum=0,
        maximum=1,
    ),
    ParamSpec(
        "repetition_penalty",
        "number",
        "Multiplicative penalty on repeated tokens; 1 is off.",
        "1.1",
        origin="engine",
        minimum=0,
        exclusive_minimum=True,
        default="1",
    ),
    ParamSpec(
        "length_penalty",
        "number",
        "Beam search length penalty.",
        "1.0",
        origin="engine",
    ),
    ParamSpec(
        "early_stopping",
        "boolean",
        'Beam search stopping rule: true, false or "never".',
        "true",
        origin="engine",
        checker=_check_early_stopping,
    ),
    ParamSpec(
        "best_of",
        "integer",
        "Candidates generated before returning the best n (Baseten accepts only 1).",
        "1",
        origin="engine",
        minimum=1,
    ),
    ParamSpec(
        "min_tokens",
        "integer",
        "Generate at least this many tokens before stopping.",
        "16",
        origin="engine",
        minimum=0,
    ),
    ParamSpec("ignore_eos", "boolean", "Keep generating past end-of-sequence.", "true", "engine"),
    ParamSpec(
        "stop_token_ids",
        "json",
        "Token ids that stop generation.",
        "[128001]",
        origin="engine",
        checker=_check_token_ids,
    ),
    ParamSpec(
        "include_stop_str_in_output",
        "boolean",
        "Keep the matched stop string in the output.",
        "true",
        "engine",
    ),
    ParamSpec(
        "skip_special_tokens",
        "boolean",
        "Drop special tokens from the output text.",
        "false",
        "engine",
    ),
    ParamSpec(
        "spaces_between_special_tokens",
        "boolean",
        "Put spaces between special tokens in the output text.",
        "false",
        "engine",
    ),
    ParamSpec(
        "truncate_prompt_tokens",
        "integer",
        "Keep only the last k prompt tokens.",
        "8192",
        origin="engine",
        minimum=1,
    ),
    ParamSpec("echo", "boolean", "Prepend the prompt to the output.", "true", "engine"),
    ParamSpec(
        "add_generation_prompt",
        "boolean",
        "Append the assistant turn opener from the chat template.",
        "false",
        "engine",
    ),
    ParamSpec(
        "add_special_tokens",
        "boolean",
        "Add special tokens (such as BOS) on top of the chat template.",
        "true",
        "engine",
    ),
    ParamSpec(
        "documents",
        "json",
        "Documents for retrieval-aware templates: a list of objects with string fields.",
        '[{"title": "Notes", "text": "..."}]',
        origin="engine",
        checker=_check_documents,
    ),
    ParamSpec(
        "chat_template",
        "string",
        "A Jinja chat template replacing the model's own.",
        '"{{ messages[0].content }}"',
        origin="engine",
    ),
    ParamSpec(
        "chat_template_args",
        "json",
        "Extra chat template variables, e.g. {enable_thinking: true}.",
        '{"enable_thinking": true}',
        origin="engine",
        checker=_check_object,
    ),
    ParamSpec(
        "bad",
        "json",
        "Banned words (TensorRT-LLM): a string or a list of strings.",
        '["foo"]',
        origin="engine",
        checker=_check_string_or_strings,
    ),
    ParamSpec(
        "bad_token_ids",
        "json",
        "Banned token ids (TensorRT-LLM).",
        "[1234]",
        origin="engine",
        checker=_check_token_ids,
    ),
    ParamSpec(
        "top_p_min",
        "number",
        "Floor of top-p decay (TensorRT-LLM).",
        "0.01",
        origin="engine",
        minimum=0,  # 0 is Baseten's own default
        maximum=1,
    ),
    ParamSpec(
        "disaggregated_params",
        "json",
        "TensorRT-LLM internal plumbing; accepted with a warning, never useful from a notebook.",
        "{}",
        origin="engine",
        checker=_check_object,
    ),
)


# --- whole requests ---------------------------------------------------------------------------


# Other names for a parameter that servers accept: OpenAI renamed max_tokens, and the openai SDK
# and LangChain send the new name.
ALIASES: Mapping[str, str] = MappingProxyType({"max_completion_tokens": "max_tokens"})


def _unknown(name: str) -> ParameterError:
    close = difflib.get_close_matches(name, list(PARAMETERS), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    detail = f"unknown request parameter {name!r}" + (
        f"; did you mean {close[0]!r}?" if close else ""
    )
    return ParameterError(
        f"unknown request parameter {name!r}; {hint}"
        f"see {HELP_POINTER} for the {len(PARAMETERS)} parameters Baseten accepts",
        param=name,
        detail=detail,
    )


def validate_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalize request parameters; None values mean "not set" and are dropped."""
    result: dict[str, Any] = {}
    for raw_name, value in params.items():
        name = raw_name.strip().replace("-", "_")
        name = ALIASES.get(name, name)
        spec = PARAMETERS.get(name)
        if spec is None:
            raise _unknown(raw_name)
        if name in result:
            raise ParameterError(
                f"{name} was given twice (as {raw_name!r} too); pass each parameter once",
                param=name,
            )
        if value is None:
            continue
        result[name] = spec.validate(value)
        if name == "disaggregated_params":
            warnings.warn(
                "disaggregated_params is TensorRT-LLM internal plumbing with no use from a "
                "notebook; it is sent as given, but remove it unless the deployment needs it",
                BasetenWarning,
                stacklevel=2,
            )
    _check_combinations(result)
    return result


def _check_combinations(params: Mapping[str, Any]) -> None:
    # top_logprobs=0 asks for no alternatives, which needs no logprobs (vLLM accepts it).
    if params.get("top_logprobs", 0) != 0 and params.get("logprobs") is not True:
        detail = f"top_logprobs needs logprobs=true, got logprobs={_show(params.get('logprobs'))}"
        raise ParameterError(
            f"{detail}; pass --param logprobs=true as well", param="top_logprobs", detail=detail
        )
    if "min_tokens" in params and params["min_tokens"] > params.get("max_tokens", math.inf):
        detail = (
            f"min_tokens must be at most max_tokens ({params['max_tokens']}), "
            f"got {params['min_tokens']}"
        )
        raise ParameterError(
            f"{detail}; lower min_tokens or raise --max-tokens", param="min_tokens", detail=detail
        )
    if "best_of" in params and params["best_of"] < params.get("n", 1):
        raise ParameterError(
            f"best_of must be at least n ({params.get('n', 1)}), got {params['best_of']}; "
            "raise best_of or lower n",
            param="best_of",
        )


def parse_assignment(text: str) -> tuple[str, Any]:
    """Split `NAME=VALUE`; VALUE is JSON when it parses as JSON, else the raw string."""
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise ParameterError(
            f"--param expects NAME=VALUE, got {_show(text)}; pass e.g. --param top_k=40"
        )
    try:
        # NaN and Infinity are not JSON; left as strings they fail validation clearly.
        value: Any = json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        value = raw
    return name, value


def _reject_constant(token: str) -> Any:
    raise ValueError(token)


def _models_where(catalog: Catalog, test: Callable[[Any], bool], today: date | None) -> str:
    names = []
    for info in catalog.offered(today):
        if test(info):
            alias = f" ({info.aliases[0]})" if info.aliases else ""
            names.append(info.slug + alias)
    return ", ".join(names) or "none in the catalog"


def build_request(
    messages: str | Sequence[Mapping[str, Any]],
    *,
    model: str,
    stream: bool,
    params: Mapping[str, Any],
    catalog: Catalog,
    thinking: bool | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """The JSON body of one chat completion: alias resolved, parameters validated.

    A retired model is refused here, before anything is sent (`today` pins the calendar).
    """
    for reserved, how in (
        ("model", "-m MODEL"),
        ("messages", "the cell body"),
        ("stream", "--no-stream"),
    ):
        if reserved in params and params[reserved] is not None:
            raise ParameterError(
                f"{reserved} is set by the call itself, got it in the parameters too; "
                f"use {how} instead"
            )
    info = catalog.resolve_offered(model, today)
    rest = {k: v for k, v in params.items() if k not in ("model", "messages", "stream")}
    body = validate_params({"model": info.slug, "messages": messages, **rest})
    if stream:
        options = dict(body.get("stream_options") or {})
        # Without include_usage a stream may carry no usage at all, and cost needs it.
        options["include_usage"] = True
        body["stream_options"] = options
    else:
        # OpenAI-compatible servers reject stream_options on a non-streaming request.
        body.pop("stream_options", None)
    body["stream"] = stream

    if thinking is not None:
        if not info.can_toggle_thinking:
            state = "always on" if info.reasoning == "always" else "not available"
            raise ParameterError(
                f"{info.slug} has reasoning {state}, so thinking cannot be switched; "
                "models that can: " + _models_where(catalog, lambda m: m.can_toggle_thinking, today)
            )
        template_args = dict(body.get("chat_template_args") or {})
        template_args["enable_thinking"] = thinking
        body["chat_template_args"] = template_args

    if "reasoning_effort" in body and info.known and not info.supports_reasoning_effort:
        raise ParameterError(
            f"reasoning_effort is not supported by {info.slug}, got "
            f"{body['reasoning_effort']!r}; drop it or use a model that supports it: "
            + _models_where(catalog, lambda m: m.supports_reasoning_effort, today)
        )
    return body
