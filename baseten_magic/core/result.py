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
Source = Literal["magic", "panel", "api"]
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
        """Build from an OpenAI-style `usage` object, tolerating missing or null details."""
        completion_details = usage.get("completion_tokens_details") or {}
        prompt_details = usage.get("prompt_tokens_details") or {}
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            reasoning_tokens=int(
                completion_details.get("reasoning_tokens") or usage.get("reasoning_tokens") or 0
            ),
            cached_tokens=int(prompt_details.get("cached_tokens") or 0),
        )


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
