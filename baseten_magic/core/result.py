"""Result values: what one chat completion produced.

Rule: plain frozen values, stdlib only. `ChatResult` is what users hold (`-o VAR`, `chat()`);
its attribute names are a public contract (see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, TypedDict, get_args

#: How a call ended; also a ledger row's `status`.
Status = Literal["ok", "error", "interrupted"]
#: Which front end made a call; also a ledger row's `source`.
Source = Literal["magic", "panel", "api", "batch"]
STATUSES: tuple[Status, ...] = get_args(Status)
SOURCES: tuple[Source, ...] = get_args(Source)


class ToolCall(TypedDict):
    """One assembled tool call; `arguments` is the raw JSON string the model produced."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Usage(Mapping[str, int]):
    """Token counts reported by the server; also a mapping (`usage["prompt_tokens"]`)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0

    _KEYS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens")

    def __getitem__(self, key: str) -> int:
        if key not in self._KEYS:
            raise KeyError(key)
        value: int = getattr(self, key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_wire(cls, usage: Mapping[str, Any]) -> Usage:
        """Build from an OpenAI-style `usage` object. A field that is missing, null or not a
        count (a string, a negative or fractional number, a bool) is read as not reported (0);
        a huge count is clamped, so hostile values can neither crash the final step nor price a
        call at 10^23 dollars nor overflow the ledger's integer columns."""
        completion_details = usage.get("completion_tokens_details")
        prompt_details = usage.get("prompt_tokens_details")
        if not isinstance(completion_details, Mapping):
            completion_details = {}
        if not isinstance(prompt_details, Mapping):
            prompt_details = {}
        return cls(
            prompt_tokens=token_count(usage.get("prompt_tokens")),
            completion_tokens=token_count(usage.get("completion_tokens")),
            reasoning_tokens=token_count(completion_details.get("reasoning_tokens"))
            or token_count(usage.get("reasoning_tokens")),
            cached_tokens=token_count(prompt_details.get("cached_tokens")),
        )

    @staticmethod
    def is_reported(usage: Mapping[str, Any]) -> bool:
        """True when `usage` holds at least one valid prompt or completion count."""
        return any(_is_count(usage.get(name)) for name in ("prompt_tokens", "completion_tokens"))


def _is_count(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value >= 0 and (isinstance(value, int) or value.is_integer())


# No call comes near this (the largest context windows are ~10^6 tokens); SQLite's INTEGER is
# 64-bit, so anything the wire sends is clamped well inside it.
MAX_TOKEN_COUNT = 10**9


def token_count(value: Any) -> int:
    """A token count from the wire: a non-negative integer (an integral float counts), clamped
    to MAX_TOKEN_COUNT; anything else is 0 (not reported)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, float):
        if not value.is_integer():  # also rejects NaN and the infinities
            return 0
        value = int(value)
    if not isinstance(value, int) or value < 0:
        return 0
    return min(value, MAX_TOKEN_COUNT)


@dataclass(frozen=True)
class TokenLogprob:
    """One sampled token with its log probability and the top alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Choice:
    """One of several choices when a server returns `n > 1`."""

    index: int
    content: str
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True)
class ChatResult:
    """Everything one chat completion produced, plus how long it took and what it cost."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    model: str = ""
    usage: Usage | None = None
    cost: Decimal = Decimal(0)
    parsed: Any = None
    status: Status = "ok"
    error: str | None = None
    ttft_s: float | None = None
    latency_s: float | None = None
    request_id: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    choices: tuple[Choice, ...] = ()
    # True when the answer came from the response cache: nothing was sent and `cost` is 0.
    cached: bool = False

    @property
    def cost_usd(self) -> float:
        """Cost in US dollars as a float (the exact value is `cost`, a Decimal)."""
        return float(self.cost)

    @property
    def truncated(self) -> bool:
        """True when the stream ended without a finish reason (cut off, errored or interrupted)."""
        return self.finish_reason is None and self.status != "ok"

    def __str__(self) -> str:
        return self.content

    def __repr__(self) -> str:
        # Short and secret-free: content is abbreviated, the request is never included.
        preview = self.content if len(self.content) <= 60 else self.content[:57] + "..."
        return (
            f"ChatResult(model={self.model!r}, status={self.status!r}, "
            f"finish_reason={self.finish_reason!r}, content={preview!r}, "
            f"usage={None if self.usage is None else dict(self.usage)!r}, "
            f"cost_usd={self.cost_usd:.6f})"
        )
