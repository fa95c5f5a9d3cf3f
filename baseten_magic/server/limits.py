"""The account limits the local server emulates, and the counters tests read.

Rule: one `AccountLimits` per server, touched only from the server's event loop (its counters
are plain numbers, safe to read from other threads). A chat request is admitted or refused
before any work: over `max_concurrent` requests in flight, or over `rpm` requests or `tpm`
tokens per minute, it is answered 429 with `Retry-After` (whole seconds, rounded up, as HTTP
defines it) and `retry-after-ms` (the exact wait, as OpenAI sends it). The per-minute limits are
token buckets refilled continuously (`rpm`/60 per second) holding one second's worth, so the
rate a client can sustain is exactly the limit and no minute boundary lets a burst through.
Tokens are charged at admission: the prompt plus the answer the server is about to send.
`latency_s` delays every admitted request by a fixed time before it is answered.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LimitStats:
    """What the server saw: chat requests, 429s it sent, and requests in flight."""

    requests: int
    rate_limited: int
    in_flight: int
    max_in_flight: int
    tokens: int

    def as_json(self) -> dict[str, int]:
        """The counters as a JSON object (the `GET /v1/stats` body)."""
        return {
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "tokens": self.tokens,
        }


class _Bucket:
    def __init__(self, per_minute: float, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)  # one second's worth
        self.level = self.capacity
        self.updated = now

    def wait_for(self, amount: float, now: float) -> float:
        """0 and take `amount` when it is there; else the seconds until it would be."""
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        need = min(amount, self.capacity)  # a request bigger than the bucket waits for it full
        if self.level >= need:
            self.level -= amount
            return 0.0
        return (need - self.level) / self.rate


class AccountLimits:
    """Admission control of the local server (see the module docstring)."""

    def __init__(
        self,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrent: int | None = None,
        latency_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm), ("max_concurrent", max_concurrent)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value}; pass e.g. 600")
        if latency_s < 0:
            raise ValueError(f"latency must be 0 or more seconds, got {latency_s}; pass e.g. 0.5")
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrent = max_concurrent
        self.latency_s = latency_s
        self._clock = clock
        now = clock()
        self._requests = None if rpm is None else _Bucket(rpm, now)
        self._tokens = None if tpm is None else _Bucket(tpm, now)
        self._started: list[float] = []  # admission times of requests in flight
        self.requests = 0
        self.rate_limited = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.tokens = 0

    # `requests` is counted by the app for every chat request (faults included), not here.

    def stats(self) -> LimitStats:
        """The counters now."""
        return LimitStats(
            self.requests, self.rate_limited, self.in_flight, self.max_in_flight, self.tokens
        )

    def reset(self) -> None:
        """Zero the counters (the buckets and requests in flight are kept)."""
        self.requests = self.rate_limited = self.tokens = 0
        self.max_in_flight = self.in_flight

    def admit(self, tokens: int) -> dict[str, str] | None:
        """Admit one request (None) or refuse it: the 429's Retry-After headers."""
        now = self._clock()
        wait = 0.0
        if self.max_concurrent is not None and self.in_flight >= self.max_concurrent:
            # The earliest request in flight frees its slot when its latency is over.
            wait = max(0.001, min(self._started) + self.latency_s - now if self._started else 0.1)
        elif self._requests is not None and (wait := self._requests.wait_for(1, now)) > 0:
            pass
        elif self._tokens is not None:
            wait = self._tokens.wait_for(tokens, now)
            if wait > 0 and self._requests is not None:
                self._requests.level += 1  # refused: give the request's slot back
        if wait > 0:
            self.rate_limited += 1
            return {
                "Retry-After": str(max(1, math.ceil(wait))),
                "retry-after-ms": f"{wait * 1000:.0f}",
            }
        self.tokens += tokens
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._started.append(now)
        return None

    def release(self) -> None:
        """An admitted request is answered (or its connection dropped)."""
        self.in_flight = max(0, self.in_flight - 1)
        if self._started:
            self._started.pop(0)
