"""The reseller's MCP tool `baseten_chat_completions`, without I/O: schema, arguments, results.

Rule: pure functions, stdlib only, shared by the MCP client (`io.xpay`) and the local stand-in
(`server.xpay`). Arguments are encoded as the SERVED input schema asks, never by a fixed list:
a property typed `string` receives JSON text for a structured value, `object`/`array` the value
as is. Results become a `chat.completion` body (from structured content, or from the JSON text
content the listing implies) or one exception of the project's tree with a one-line message.

What the listing says (and nothing here has been checked against the real endpoint): the tool
takes the API's 44 inputs, `model` and `messages` required; `messages`, `tools`, `stop`,
`documents`, `bad`, `bad_token_ids`, `stop_token_ids` and `tool_choice` are typed `string`
(JSON-encoded), while `logit_bias`, `response_format`, `stream_options`, `chat_template_args` and
`disaggregated_params` are objects. The result's shape is not documented.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from baseten_magic.core.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ModelNotFoundError,
    ParameterError,
    RateLimitError,
    ServerError,
    StreamError,
)
from baseten_magic.core.jsonable import json_type
from baseten_magic.core.params import PARAMETERS
from baseten_magic.core.settings import TIMEOUT_HINT
from baseten_magic.core.stream import error_text

TOOL_NAME = "baseten_chat_completions"
REQUIRED_INPUTS = ("model", "messages")
LISTING_STRING_INPUTS = (
    "messages",
    "tools",
    "stop",
    "documents",
    "bad",
    "bad_token_ids",
    "stop_token_ids",
    "tool_choice",
)
LISTING_OBJECT_INPUTS = (
    "logit_bias",
    "response_format",
    "stream_options",
    "chat_template_args",
    "disaggregated_params",
)

# JSON-RPC 2.0 and MCP error codes (https://www.jsonrpc.org/specification#error_object).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
CONNECTION_CLOSED = -32000
REQUEST_TIMEOUT = -32001

_SCALAR_TYPES = {"number": "number", "integer": "integer", "boolean": "boolean"}
_PREVIEW = 120


def listing_schema(types: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The tool's input schema as the listing describes it; `types` overrides the JSON type of
    named inputs (a test serves another string/object split this way)."""
    overrides = dict(types or {})
    unknown = sorted(set(overrides) - set(PARAMETERS))
    if unknown:
        raise ParameterError(
            f"schema overrides must name request parameters, got {', '.join(unknown)}; "
            "use names from baseten_magic.core.params.PARAMETERS"
        )
    properties: dict[str, Any] = {}
    for name, spec in PARAMETERS.items():
        prop: dict[str, Any] = {"description": spec.help}
        if spec.kind in _SCALAR_TYPES:
            prop["type"] = _SCALAR_TYPES[spec.kind]
        elif spec.kind == "choice":
            prop["type"] = "string"
            prop["enum"] = list(spec.choices)
        elif spec.kind == "string":
            prop["type"] = "string"
        elif name in LISTING_STRING_INPUTS:
            prop["type"] = "string"
            prop["description"] += " JSON-encoded."
        else:
            prop["type"] = "object"
        if name in overrides:
            prop["type"] = overrides[name]
        properties[name] = prop
    return {"type": "object", "properties": properties, "required": list(REQUIRED_INPUTS)}


def _declared_types(prop: Any) -> set[str]:
    """The JSON types a schema property allows (`type` as a string or list, or `anyOf`)."""
    if not isinstance(prop, Mapping):
        return set()
    declared = prop.get("type")
    found: set[str] = set()
    if isinstance(declared, str):
        found.add(declared)
    elif isinstance(declared, Sequence):
        found.update(t for t in declared if isinstance(t, str))
    for option in prop.get("anyOf") or prop.get("oneOf") or ():
        found |= _declared_types(option)
    return found


def fits(value: Any, types: set[str]) -> bool:
    """Whether `value` is one of the JSON Schema `types` (an integer is a number too)."""
    kind = json_type(value)
    return kind in types or (kind == "integer" and "number" in types)


def encode_arguments(body: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """A request body as the tool's `arguments`, each value encoded as `schema` types it.

    A value whose JSON type the property allows goes as is; a structured value where only
    `string` is allowed goes as compact JSON text; a lone string where only `array` is allowed
    goes as a one-item list. The answer is never streamed on this route, so `stream` is sent
    false (when the tool takes it) and `stream_options` is left out.
    """
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    arguments: dict[str, Any] = {}
    for name, value in body.items():
        if name == "stream_options":
            continue
        if name == "stream":
            if "stream" in properties:
                arguments["stream"] = False
            continue
        if properties and name not in properties:
            raise ParameterError(
                f"the reseller's tool {TOOL_NAME} takes no {name!r} input (its schema lists "
                f"{len(properties)} others); remove {name}, or use the baseten route"
            )
        types = _declared_types(properties.get(name))
        if not types or fits(value, types):
            arguments[name] = value
        elif "string" in types:
            arguments[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        elif isinstance(value, str) and "array" in types:
            arguments[name] = [value]
        else:
            arguments[name] = value
    return arguments


def decode_argument(value: Any, prop: Any) -> Any:
    """A received argument as the API value (the stand-in's side): JSON text in a `string`
    property is decoded when it holds a list or an object; any other string stays a string."""
    if isinstance(value, str) and "string" in _declared_types(prop):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, list | dict):
            return decoded
    return value


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 3] + "..."


def _as_json(text: str) -> Any:
    """JSON in `text` (decoded twice when it is JSON text inside a JSON string), else None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _is_error_body(value: Any) -> bool:
    return isinstance(value, Mapping) and (
        bool(value.get("error")) or value.get("object") == "error"
    )


def _completion_in(value: Any) -> dict[str, Any] | None:
    """A chat.completion inside a decoded value: the value itself, or under a wrapper key."""
    if isinstance(value, Mapping):
        if isinstance(value.get("choices"), list):
            return dict(value)
        for key in ("result", "completion", "response", "data"):
            inner = value.get(key)
            if isinstance(inner, str):
                inner = _as_json(inner)
            if isinstance(inner, Mapping) and isinstance(inner.get("choices"), list):
                return dict(inner)
    return None


def _texts(content: Sequence[Any]) -> list[str]:
    return [
        str(block.get("text") or "")
        for block in content
        if isinstance(block, Mapping) and block.get("type", "text") == "text"
    ]


def completion_from_result(
    content: Sequence[Mapping[str, Any]],
    structured: Any = None,
    *,
    is_error: bool = False,
) -> dict[str, Any]:
    """The `chat.completion` body in a `tools/call` result, or the error it reports.

    `content` is the result's content blocks as dicts, `structured` its `structuredContent`.
    Structured content wins when it holds a completion; else the first text block that decodes
    to one. Raises an APIStatusError for an `isError` result or an error body, StreamError when
    the result holds no completion.
    """
    texts = _texts(content)
    if is_error:
        raise result_error(" ".join(t for t in texts if t).strip(), structured)
    found = _completion_in(structured)
    if found is not None:
        return found
    if _is_error_body(structured):
        raise result_error(json.dumps(structured), None)
    for text in texts:
        value = _as_json(text)
        found = _completion_in(value)
        if found is not None:
            return found
        if _is_error_body(value):
            raise result_error(text, None)
    shown = _preview(" ".join(texts)) if texts else f"{len(content)} non-text content block(s)"
    raise StreamError(
        f"expected the chat.completion JSON in the result of {TOOL_NAME}, got {shown!r}; "
        "the reseller's result shape may have changed: use the baseten route meanwhile"
    )


def _status_in(body: Any) -> int | None:
    """An HTTP status an error body names (`status`, `status_code`, `error.code`), if any."""
    if not isinstance(body, Mapping):
        return None
    candidates = [body.get("status"), body.get("status_code"), body.get("code")]
    inner = body.get("error")
    if isinstance(inner, Mapping):
        candidates += [inner.get("status"), inner.get("status_code"), inner.get("code")]
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
            return value
        if isinstance(value, str) and value.isdigit() and 400 <= int(value) <= 599:
            return int(value)
    return None


def status_error(
    status: int, detail: str, *, body: Any = None, rpc_code: int | None = None
) -> APIStatusError:
    """The exception for an error the reseller reported with HTTP `status` (one line)."""
    cls: type[APIStatusError]
    if status in (401, 403):
        cls = AuthenticationError
        hint = "check XPAY_KEY: is it a valid, funded reseller key?"
    elif status == 404:
        cls, hint = ModelNotFoundError, "check the model name and XPAY_MCP_URL"
    elif status == 429:
        cls, hint = RateLimitError, "slow down or retry later (the reseller's rate limit)"
    elif status >= 500:
        cls, hint = ServerError, "the reseller or Baseten failed; retry later"
    elif status == 402:
        cls, hint = APIStatusError, "the reseller wants payment: check the key's balance"
    else:
        cls, hint = BadRequestError, "fix the request parameter it names"
    text = _preview(detail) or f"HTTP {status}"
    return cls(f"xpay {status}: {text} ({hint})", status_code=status, body=body, rpc_code=rpc_code)


def result_error(text: str, structured: Any) -> APIStatusError:
    """The exception for an `isError` tool result (or an error body in a result)."""
    body = structured if isinstance(structured, Mapping) else _as_json(text)
    detail = (error_text(body) if isinstance(body, Mapping) else "") or text
    status = _status_in(body)
    if status is not None:
        return status_error(status, detail, body=body)
    return BadRequestError(
        f"the reseller's tool {TOOL_NAME} returned an error: {_preview(detail) or 'no message'} "
        "(fix the parameter it names, or retry)",
        status_code=400,
        body=body,
    )


def rpc_error(
    code: int, message: str, *, http_status: int | None = None
) -> APIStatusError | APIConnectionError:
    """The exception for a JSON-RPC error, by its code (and the HTTP status seen, if any)."""
    detail = _preview(message) or f"JSON-RPC error {code}"
    if http_status is not None and http_status >= 400:
        return status_error(http_status, detail, rpc_code=code)
    if code == REQUEST_TIMEOUT:
        return APITimeoutError(
            f"the reseller did not answer in time ({detail}); retry, or raise the timeout "
            f"({TIMEOUT_HINT})"
        )
    if code == CONNECTION_CLOSED:
        return APIConnectionError(
            f"the connection to the reseller closed ({detail}); check XPAY_MCP_URL and retry"
        )
    where = f"JSON-RPC {code}"
    if code in (INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR):
        return BadRequestError(
            f"xpay rejected the call ({where}): {detail} (fix the parameter it names)",
            status_code=400,
            rpc_code=code,
        )
    if code == METHOD_NOT_FOUND:
        return BadRequestError(
            f"xpay does not offer this ({where}): {detail} (check XPAY_MCP_URL points at the "
            "Baseten listing's /mcp endpoint)",
            status_code=404,
            rpc_code=code,
        )
    return ServerError(
        f"xpay failed ({where}): {detail} (retry later)", status_code=500, rpc_code=code
    )
