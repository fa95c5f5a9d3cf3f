"""A spend cap: reserve a call's worst-case cost before it is sent, settle what it really cost.

Rule: money is `Decimal` throughout, and a reservation is made under a lock, so calls running
at once (the panel's two columns, a batch's workers, a cell beside a background `achat()`)
can never together take the spend over the cap: `reserve` refuses when spent + reserved + the
worst case would exceed it, and the refusal happens before anything is sent. Every reservation
is settled exactly once (a second `settle` of the same token is ignored), also after a failure,
so a crashed call never leaves money held. With no cap, reservations are still tracked and
`spent` still counts: `%baseten cost` shows the spend whether or not a cap is set.

The worst case of one request (`worst_case_cost`): per call, the flat fee; per token, a generous
prompt estimate at the input price plus the completion bound at the output price. The bound is
`max_tokens` (or `max_completion_tokens`) when the request sets one, else the model's own
completion limit, else what its context leaves after the prompt — times `n` choices.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from baseten_magic.core.catalog import ModelInfo
from baseten_magic.core.errors import BudgetExceededError, ConfigurationError, ParameterError
from baseten_magic.core.pricing import Pricing, format_usd

__all__ = [
    "BUDGET_ENV",
    "WARN_AT",
    "Budget",
    "Reservation",
    "budget_from_env",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "process_budget",
    "worst_case_cost",
]

BUDGET_ENV = "BASETEN_MAGIC_BUDGET"
#: The share of the cap from which an answer's footer says how much of the budget is used.
WARN_AT = Decimal("0.8")
#: The completion bound when neither the request, the model nor its context gives one.
FALLBACK_COMPLETION_TOKENS = 32_768
_MILLION = Decimal(1_000_000)
_PER_MESSAGE_TOKENS = 4  # role and framing tokens chat templates add around each message


def estimate_tokens(text: str) -> int:
    """A generous token estimate of `text`: one token per two characters.

    Generous on purpose: it bounds the worst case a budget reserves. Real tokenizers give about
    one token per four characters of English, and about one per character of CJK text.
    """
    return math.ceil(len(text) / 2)


def estimate_prompt_tokens(body: Mapping[str, Any]) -> int:
    """A generous estimate of a request's prompt tokens: messages, tools and response format."""
    total = 3  # the assistant turn's opening
    messages: Sequence[Any] = body.get("messages") or ()
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        content = message.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        else:
            text = ""
        if message.get("tool_calls"):
            text += json.dumps(message["tool_calls"], ensure_ascii=False)
        total += _PER_MESSAGE_TOKENS + estimate_tokens(text)
    for extra in ("tools", "response_format"):
        if body.get(extra):
            # Tool specs and schemas reach the model as text inside the prompt.
            total += estimate_tokens(json.dumps(body[extra], ensure_ascii=False, default=str))
    return total


def _completion_bound(body: Mapping[str, Any], model: ModelInfo, prompt_tokens: int) -> int:
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    if model.max_completion_tokens:
        return model.max_completion_tokens
    if model.context_length:
        return max(model.context_length - prompt_tokens, 0)
    return FALLBACK_COMPLETION_TOKENS


def worst_case_cost(body: Mapping[str, Any], model: ModelInfo, pricing: Pricing) -> Decimal:
    """The most one request can cost (Decimal(0) when the model's prices are unknown)."""
    if pricing.mode == "per_call":
        return pricing.per_call
    if model.input_price is None or model.output_price is None:
        return Decimal(0)  # such a call is also priced at $0 (`cost_of`): nothing to hold
    prompt = estimate_prompt_tokens(body)
    n = body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    completion = _completion_bound(body, model, prompt) * choices
    return (Decimal(prompt) * model.input_price + Decimal(completion) * model.output_price) / (
        _MILLION
    )


@dataclass(frozen=True)
class Reservation:
    """What `Budget.reserve` hands back: settle it once with what the call really cost."""

    id: int
    amount: Decimal


def _cap_value(raw: object, source: str) -> Decimal | None:
    """`raw` (a number or its text; None or "" for no cap) as a cap in dollars."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        value = Decimal(str(raw).strip().lstrip("$"))
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        raise ParameterError(
            f"{source} must be a number of dollars of 0 or more, got {raw!r}; "
            f"pass e.g. {source} = 5 (or None for no cap)"
        )
    return value


def budget_from_env() -> Decimal | None:
    """The cap in `BASETEN_MAGIC_BUDGET` (dollars), or None when it is unset or empty."""
    try:
        return _cap_value(os.environ.get(BUDGET_ENV), BUDGET_ENV)
    except ParameterError:
        raise ConfigurationError(
            f"{BUDGET_ENV} must be a number of dollars of 0 or more, got "
            f"{os.environ.get(BUDGET_ENV)!r}; fix it with %env {BUDGET_ENV}=5 or unset it"
        ) from None


class Budget:
    """Money spent and held by calls in flight, against an optional cap; thread-safe."""

    def __init__(self, cap: Decimal | float | str | None = None, *, raise_hint: str = "") -> None:
        self._lock = threading.Lock()
        self._cap = _cap_value(cap, "budget_usd")
        self._spent = Decimal(0)
        self._held: dict[int, Decimal] = {}
        self._next_id = 0
        #: How the owner's user raises the cap, for the refusal line (the magics: `%config`).
        self.raise_hint = raise_hint or f"raise it with the env variable {BUDGET_ENV}"

    def __repr__(self) -> str:
        cap = "None" if self.cap is None else format_usd(self.cap)
        return f"Budget(cap={cap}, spent={format_usd(self.spent)}, held={format_usd(self.held)})"

    @property
    def cap(self) -> Decimal | None:
        """The cap in dollars, or None for none."""
        return self._cap

    @cap.setter
    def cap(self, value: Decimal | float | str | None) -> None:
        cap = _cap_value(value, "budget_usd")
        with self._lock:
            self._cap = cap

    @property
    def spent(self) -> Decimal:
        """What the settled calls cost."""
        with self._lock:
            return self._spent

    @property
    def held(self) -> Decimal:
        """What calls in flight hold (their worst cases)."""
        with self._lock:
            return sum(self._held.values(), Decimal(0))

    def used(self) -> Decimal | None:
        """The share of the cap spent (0.85 for 85%), or None without a (positive) cap."""
        cap, spent = self.cap, self.spent
        if cap is None:
            return None
        return Decimal(1) if cap == 0 and spent > 0 else (spent / cap if cap else Decimal(0))

    def reserve(self, worst_case: Decimal) -> Reservation:
        """Hold `worst_case` for a call about to be sent; raises BudgetExceededError instead."""
        worst_case = max(worst_case, Decimal(0))
        with self._lock:
            held = sum(self._held.values(), Decimal(0))
            if self._cap is not None and self._spent + held + worst_case > self._cap:
                raise self._refusal(worst_case, self._spent, held, self._cap)
            self._next_id += 1
            token = Reservation(self._next_id, worst_case)
            self._held[token.id] = worst_case
            return token

    def check(self, worst_case: Decimal) -> None:
        """Raise BudgetExceededError if `worst_case` would not fit now; holds nothing."""
        self.settle(self.reserve(worst_case), Decimal(0), count=False)

    def settle(self, token: Reservation, actual: Decimal, *, count: bool = True) -> None:
        """Replace a reservation by what the call cost (`count=False`: release it unspent)."""
        with self._lock:
            if self._held.pop(token.id, None) is None:
                return  # settled already: a second settle must not count the cost twice
            if count:
                self._spent += actual

    def add(self, actual: Decimal) -> None:
        """Count a cost that was never reserved (a call made without this budget's check)."""
        with self._lock:
            self._spent += actual

    def _refusal(
        self, worst: Decimal, spent: Decimal, held: Decimal, cap: Decimal
    ) -> BudgetExceededError:
        in_flight = f" (+{format_usd(held)} held by calls in flight)" if held else ""
        needed = spent + held + worst
        # A round suggestion above what this call needs: the next whole dollar.
        suggestion = max(Decimal(1), needed.to_integral_value(rounding="ROUND_CEILING"))
        hint = self.raise_hint.replace("{value}", f"{suggestion}")
        return BudgetExceededError(
            f"budget reached: expected this call to fit the {format_usd(cap)} budget, but "
            f"{format_usd(spent)} is spent{in_flight} and it could cost up to {format_usd(worst)}"
            f"; nothing was sent; {hint}, or lower --max-tokens"
        )


@lru_cache(maxsize=1)
def process_budget() -> Budget:
    """The process's spend tracker for `chat()` / `achat()` outside a notebook session.

    The one piece of process-wide state, on purpose: a cap on a process's spending has to be
    held by the process. Cached like `default_catalog`; its cap is set from the environment
    before each call.
    """
    return Budget(raise_hint=f"raise it with the env variable {BUDGET_ENV}={{value}}")
