"""Baseten's wire format as JSON values: error bodies, usage, chunks and completions.

Rule: pure builders, no I/O. Every quirk the server reproduces is spelled out here or in
`app.py`: cumulative usage on every chunk, `usage: null` on the finish chunk, a trailing
usage-only chunk with `choices: []`, reasoning under `reasoning_content` (or `reasoning`), tool
call fragments that each carry a new id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from baseten_magic.core.catalog import ModelInfo
from baseten_magic.server.generate import ChoicePlan, TokenLogprob, ToolCallPlan

_MILLION = Decimal(1_000_000)

ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    408: "RequestTimeoutError",
    411: "LengthRequiredError",
    413: "PayloadTooLargeError",
    429: "RateLimitError",
}


def error_type(status: int) -> str:
    """The error `type` string for an HTTP status."""
    return ERROR_TYPES.get(status, "InternalServerError" if status >= 500 else "APIError")


def error_body(
    shape: str,
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | int | None = None,
) -> dict[str, Any]:
    """An error body in one of the three shapes Baseten's backends use."""
    if shape == "string":
        return {"error": message}
    detail = {
        "message": message,
        "type": error_type(status),
        "param": param,
        "code": status if code is None else code,
    }
    if shape == "flat":
        return {"object": "error", **detail}
    return {"error": detail}


# One encoder, built once: json.dumps with options builds a new encoder per call, which shows
# up in 100,000-token streams.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, UTF-8, no ASCII escaping (models emit any character)."""
    return _ENCODER.encode(value).encode("utf-8")


def usage(prompt: int, completion: int, reasoning: int, cached: int) -> dict[str, Any]:
    """An OpenAI-style usage object with Baseten's details."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


class ChunkEncoder:
    """Serialises the chunks of one stream around a fixed prefix (the hot path of long streams)."""

    def __init__(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        prompt_tokens: int,
        cached_tokens: int,
    ) -> None:
        head = dumps(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }
        )
        self._head = head[:-1] + b',"choices":[{"index":'
        self._include_usage = include_usage
        self._prompt = prompt_tokens
        self._cached = cached_tokens

    def usage(self, completion: int, reasoning: int) -> dict[str, Any]:
        """The cumulative usage object after `completion` tokens."""
        return usage(self._prompt, completion, reasoning, self._cached)

    def chunk(
        self,
        index: int,
        delta: Mapping[str, Any],
        logprobs: Any,
        finish: str | None,
        counts: tuple[int, int] | None,
    ) -> bytes:
        """One chunk; `counts` (completion, reasoning) gives its usage, None gives `usage: null`."""
        parts = [
            self._head,
            b"%d" % index,
            b',"delta":',
            dumps(delta),
            b',"logprobs":',
            dumps(logprobs),
            b',"finish_reason":',
            dumps(finish),
            b"}]",
        ]
        if self._include_usage:
            if counts is None:
                parts.append(b',"usage":null')
            else:
                completion, reasoning = counts
                parts.append(
                    b',"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,'
                    b'"prompt_tokens_details":{"cached_tokens":%d},'
                    b'"completion_tokens_details":{"reasoning_tokens":%d}}'
                    % (self._prompt, completion, self._prompt + completion, self._cached, reasoning)
                )
        parts.append(b"}")
        return b"".join(parts)

    def trailing(self, completion: int, reasoning: int) -> bytes:
        """The usage-only chunk after the finish chunk (`choices: []`)."""
        head = self._head[: -len(b'[{"index":')]
        return head + b"[]," + b'"usage":' + dumps(self.usage(completion, reasoning)) + b"}"


def per_token(price: Decimal | None) -> str | None:
    """A per-million price as a USD-per-token string without exponent ("0.0000006")."""
    if price is None:
        return None
    value = (price / _MILLION).normalize()
    return format(value, "f")


def model_item(info: ModelInfo) -> dict[str, Any]:
    """One `GET /v1/models` item."""
    return {
        "id": info.slug,
        "object": "model",
        "created": 0,
        "owned_by": info.slug.split("/", 1)[0] if "/" in info.slug else "baseten",
        "context_length": info.context_length,
        "max_completion_tokens": info.max_completion_tokens,
        "supported_features": list(info.supported_features),
        "pricing": {
            "prompt": per_token(info.input_price),
            "completion": per_token(info.output_price),
            "input_cache_read": per_token(info.cached_input_price),
        },
    }


def logprob_entry(item: TokenLogprob) -> dict[str, Any]:
    """One `choice.logprobs.content` entry."""
    return {
        "token": item.token,
        "logprob": item.logprob,
        "bytes": list(item.token.encode("utf-8")),
        "top_logprobs": [
            {"token": token, "logprob": value, "bytes": list(token.encode("utf-8"))}
            for token, value in item.top
        ],
    }


def tool_call_value(call: ToolCallPlan) -> dict[str, Any]:
    """A complete tool call as a non-streaming message carries it."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def completion(
    *,
    completion_id: str,
    created: int,
    model: str,
    choices: list[ChoicePlan],
    usage_value: Mapping[str, Any],
    reasoning_field: str,
) -> dict[str, Any]:
    """A non-streaming `chat.completion` body."""
    rendered = []
    for choice in choices:
        content = "".join(choice.content)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if choice.tool_calls and not content else content,
            reasoning_field: "".join(choice.reasoning) or None,
        }
        if choice.tool_calls:
            message["tool_calls"] = [tool_call_value(c) for c in choice.tool_calls]
        rendered.append(
            {
                "index": choice.index,
                "message": message,
                "logprobs": None
                if choice.logprobs is None
                else {"content": [logprob_entry(item) for item in choice.logprobs]},
                "finish_reason": choice.finish_reason,
            }
        )
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": rendered,
        "usage": dict(usage_value),
    }
