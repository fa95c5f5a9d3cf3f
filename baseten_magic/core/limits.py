"""Client-side limits of a batch: adaptive concurrency, token buckets, and a spend cap.

Rule: pure arithmetic on a clock the caller passes in (`now`, seconds, monotonic); nothing here
sleeps, awaits or does I/O, so every decision can be tested with a fake clock.

- `AdaptiveConcurrency` finds how many requests may be in flight (AIMD). A 429 halves the
  limit once per burst: only a throttle of a request sent *after* the last decrease counts, so
  eight in-flight requests failing together cut it once, not eight times. Successes raise it
  additively (about +1 per round trip); once throttled at level L it climbs quickly back to
  just under L, then probes above it slowly (+1 per ~10 round trips). `Retry-After` pauses
  every dispatch, not only the row that got it. Because one request in flight can already be
  too many (fast answers under a low rpm), a throttle also caps the send rate at the rate of
  answers seen in the last ten seconds; the cap then rises by 2 % of that rate per second,
  probing.
- `TokenBucket` paces requests per minute (`rpm`) or tokens per minute (`tpm`): a reservation
  is debited at once (the balance may go negative) and says how long to wait; a token estimate
  is corrected later with `adjust` when the real usage is known.
- `SpendCap` reserves each attempt's worst-case cost before it is sent and settles it with the
  real cost after, so the spend can never pass the cap.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from baseten_magic.core.catalog import ModelInfo
from baseten_magic.core.errors import ParameterError
from baseten_magic.core.pricing import Pricing

# Baseten's documented default when a request sets no max_tokens (BASETEN.md).
DEFAULT_MAX_TOKENS = 4096
_MILLION = Decimal(1_000_000)


class AdaptiveConcurrency:
    """How many requests may be in flight, found from 429s (AIMD); see the module docstring."""

    def __init__(
        self,
        *,
        initial: float = 4.0,
        maximum: float = 256.0,
        minimum: float = 1.0,
        decrease: float = 0.5,
        probe: float = 0.1,
        slow_start: bool = True,
        window_s: float = 10.0,
        rate_growth: float = 0.02,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ParameterError(
                f"concurrency limits must satisfy 1 <= minimum <= initial <= maximum, got "
                f"{minimum}, {initial}, {maximum}; pass e.g. concurrency=8"
            )
        self.limit = float(initial)
        self.minimum = float(minimum)
        self.maximum = float(maximum)
        self._decrease = decrease
        self._probe = probe
        # Until the first throttle the limit doubles per round trip (TCP's slow start).
        self._slow_start = slow_start
        self.in_flight = 0
        self.epoch = 0  # bumped at every decrease; a ticket remembers the epoch it was sent in
        self.throttled_at: float | None = None
        self.paused_until = 0.0
        self.decreases = 0
        self._rate_base: float | None = None  # requests/s measured at the last throttle
        self._rate_since = 0.0
        self._rate_growth = rate_growth
        self._window_s = window_s
        self._answers: deque[float] = deque()  # when recent answers arrived
        self._next_send = 0.0

    def __repr__(self) -> str:
        return (
            f"AdaptiveConcurrency(limit={self.limit:.2f}, in_flight={self.in_flight}, "
            f"throttled_at={self.throttled_at})"
        )

    @property
    def allowed(self) -> int:
        """Requests that may be in flight now (the limit, floored, at least the minimum)."""
        return max(int(self.minimum), int(self.limit))

    def delay(self, now: float) -> float:
        """Seconds until a request may be sent (a Retry-After pause); 0 when it may go now."""
        return max(0.0, self.paused_until - now)

    def rate_cap(self, now: float) -> float | None:
        """Requests per second allowed now (None before any throttle)."""
        if self._rate_base is None:
            return None
        return self._rate_base * (1 + self._rate_growth * max(0.0, now - self._rate_since))

    def pace(self, now: float) -> float:
        """Reserve the next send under the learned rate cap; returns the seconds to wait."""
        cap = self.rate_cap(now)
        if cap is None:
            return 0.0
        at = max(now, self._next_send)
        self._next_send = at + 1.0 / cap
        return at - now

    def _answered_rate(self, now: float) -> float:
        answers = self._answers
        while answers and answers[0] < now - self._window_s:
            answers.popleft()
        if not answers:
            return 0.0
        # Over the span the answers cover (the window may not have filled yet).
        return len(answers) / max(now - answers[0], 1.0)

    def has_room(self) -> bool:
        """True when one more request fits under the limit."""
        return self.in_flight < self.allowed

    def on_send(self) -> int:
        """Count a request as in flight; returns its ticket (the current epoch)."""
        self.in_flight += 1
        return self.epoch

    def on_success(self, ticket: int, now: float) -> None:
        """A request answered: free its slot and raise the limit a little."""
        self.in_flight = max(0, self.in_flight - 1)
        self._answers.append(now)
        limit = self.limit
        if self._slow_start and self.throttled_at is None:
            step = 1.0
        elif self.throttled_at is not None and limit < self.throttled_at - 1:
            step = 1.0 / limit  # recovering to where it was fine: about +1 per round trip
        else:
            step = self._probe / limit  # above the level that was throttled: probe slowly
        self.limit = min(self.maximum, limit + step)

    def on_throttle(self, ticket: int, now: float, retry_after: float | None) -> bool:
        """A 429: free the slot, pause for `retry_after`, and halve the limit once per burst.

        Returns True when this throttle cut the limit (the first of its burst)."""
        self.in_flight = max(0, self.in_flight - 1)
        if retry_after is not None and retry_after > 0:
            self.paused_until = max(self.paused_until, now + retry_after)
        if ticket != self.epoch:
            return False  # sent before the last decrease: part of a burst already answered
        self.throttled_at = self.limit
        self.limit = max(self.minimum, self.limit * self._decrease)
        answered = self._answered_rate(now)
        if answered > 0:  # with no answer seen yet there is no rate to learn
            self._rate_base, self._rate_since = answered, now
        self.epoch += 1
        self.decreases += 1
        return True

    def on_other(self, ticket: int) -> None:
        """A request that ended otherwise (an error, a cancel): free its slot, change nothing."""
        self.in_flight = max(0, self.in_flight - 1)


class TokenBucket:
    """A bucket refilled at `rate` per second holding at most `burst`; reservations may
    overdraw it, and the caller waits until the balance would be back at zero."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate > 0 or not burst > 0:
            raise ParameterError(
                f"a rate limit must be positive, got rate {rate}/s and burst {burst}; "
                "pass e.g. rpm=120"
            )
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self._updated = now

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}/s, burst={self.burst:g}, tokens={self.tokens:.2f})"

    @classmethod
    def per_minute(cls, per_minute: float, now: float, *, burst_s: float = 0.5) -> TokenBucket:
        """A bucket for a per-minute limit, with a burst of `burst_s` seconds' worth (≥ 1)."""
        rate = per_minute / 60.0
        return cls(rate, max(1.0, rate * burst_s), now)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self._updated = max(self._updated, now)

    def reserve(self, amount: float, now: float) -> float:
        """Debit `amount` now; returns the seconds to wait before using it (0: go at once)."""
        self._refill(now)
        self.tokens -= amount
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate

    def adjust(self, delta: float, now: float) -> None:
        """Correct an earlier reservation: `delta` > 0 gives tokens back, < 0 takes more."""
        self._refill(now)
        self.tokens = min(self.burst, self.tokens + delta)


class SpendCap:
    """Money reserved and spent by one run, against an optional cap (Decimal throughout)."""

    def __init__(self, cap: Decimal | None) -> None:
        if cap is not None and cap < 0:
            raise ParameterError(f"budget_usd must be 0 or more, got {cap}; pass e.g. budget_usd=5")
        self.cap = cap
        self.spent = Decimal(0)
        self.reserved = Decimal(0)

    def __repr__(self) -> str:
        return f"SpendCap(cap={self.cap}, spent={self.spent}, reserved={self.reserved})"

    def try_reserve(self, amount: Decimal) -> bool:
        """Reserve `amount` if spent + reserved + amount stays within the cap."""
        if self.cap is not None and self.spent + self.reserved + amount > self.cap:
            return False
        self.reserved += amount
        return True

    def settle(self, reserved: Decimal, actual: Decimal) -> None:
        """Replace a reservation by what the attempt really cost."""
        self.reserved = max(Decimal(0), self.reserved - reserved)
        self.spent += actual


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """A generous estimate of a request's prompt tokens (one per two characters, plus framing).

    Generous on purpose: it bounds the worst-case cost a budget reserves. Real tokenizers give
    about one token per four characters of English."""
    total = 3
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars = len(content)
        elif isinstance(content, list):
            parts = [part for part in content if isinstance(part, dict)]
            chars = sum(len(str(part.get("text", ""))) for part in parts)
        else:
            chars = 0
        total += 4 + math.ceil(chars / 2)
    return total


@dataclass(frozen=True)
class CostBounds:
    """The least and the most one attempt can cost, in USD."""

    low: Decimal
    high: Decimal


def cost_bounds(
    body: Mapping[str, Any], model: ModelInfo, pricing: Pricing, prompt_tokens: int
) -> CostBounds:
    """Cost bounds of one request: per call, the flat fee; per token, the prompt estimate at the
    input price, plus (for the high bound) `max_tokens` at the output price."""
    if pricing.mode == "per_call":
        return CostBounds(pricing.per_call, pricing.per_call)
    if model.input_price is None or model.output_price is None:
        raise ParameterError(
            f"expected list prices for {model.slug} to bound the cost, found none; pass "
            "pricing=Pricing('per_call') or drop budget_usd"
        )
    max_tokens = body.get("max_tokens") or DEFAULT_MAX_TOKENS
    low = Decimal(prompt_tokens) * model.input_price / _MILLION
    high = low + Decimal(int(max_tokens)) * model.output_price / _MILLION
    return CostBounds(low, high)
