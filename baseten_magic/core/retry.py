"""When to retry a failed request, and how long to wait first.

Rule: pure arithmetic, no sleeping and no I/O. Retry 408, 409, 429 and 5xx (and connection
errors, decided by the caller), at most `max_retries` times, waiting `Retry-After` when the
server sends a sane one, else a jittered exponential backoff (0.5 s doubling to 8 s, minus up to
25 %). Never retry once a stream has begun: that is the caller's rule.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({408, 409, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait between attempts (seconds)."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    retry_after_cap: float = 60.0

    def should_retry_status(self, status: int) -> bool:
        """True for statuses worth another attempt: 408, 409, 429 and 5xx."""
        return status in RETRYABLE_STATUSES or 500 <= status <= 599

    def delay(
        self,
        attempt: int,
        retry_after: str | None,
        rng: random.Random | None = None,
        *,
        now: float | None = None,
    ) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first retry)."""
        honoured = parse_retry_after(retry_after, now=now)
        if honoured is not None and 0 < honoured <= self.retry_after_cap:
            return honoured
        # Clamped exponent: 2.0**attempt overflows a float long before attempts run out.
        backoff = min(self.initial_delay * 2.0 ** min(max(attempt, 0), 64), self.max_delay)
        jitter = rng.random() if rng is not None else random.random()
        return backoff * (1 - 0.25 * jitter)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """A `Retry-After` value (seconds or an HTTP-date) in seconds from now, or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    return when.timestamp() - (time.time() if now is None else now)


def retry_after_from_headers(headers: Mapping[str, str]) -> str | None:
    """The wait a response asks for, as a Retry-After string (`retry-after-ms` converted)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return str(float(millis) / 1000)
        except ValueError:
            pass
    return lowered.get("retry-after")
