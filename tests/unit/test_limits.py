"""core.limits on a fake clock: AIMD once per burst, the probe, Retry-After, buckets, the cap."""

from __future__ import annotations

from decimal import Decimal

import pytest

from baseten_magic.core.catalog import default_catalog
from baseten_magic.core.errors import ParameterError
from baseten_magic.core.limits import (
    AdaptiveConcurrency,
    SpendCap,
    TokenBucket,
    cost_bounds,
    estimate_prompt_tokens,
)
from baseten_magic.core.pricing import Pricing


def test_slow_start_doubles_per_round_trip_until_the_first_throttle() -> None:
    limiter = AdaptiveConcurrency(initial=4)
    tickets = [limiter.on_send() for _ in range(4)]
    for ticket in tickets:
        limiter.on_success(ticket, 0.0)
    assert limiter.allowed == 8


def test_a_burst_of_429s_halves_the_limit_once() -> None:
    limiter = AdaptiveConcurrency(initial=16, slow_start=False)
    tickets = [limiter.on_send() for _ in range(16)]
    cuts = [limiter.on_throttle(t, 1.0, None) for t in tickets]
    assert cuts.count(True) == 1
    assert limiter.allowed == 8 and limiter.in_flight == 0
    # A request sent after the cut that is throttled too cuts again: a new burst.
    assert limiter.on_throttle(limiter.on_send(), 2.0, None)
    assert limiter.allowed == 4


def test_recovery_is_quick_below_the_throttled_level_and_slow_above_it() -> None:
    limiter = AdaptiveConcurrency(initial=10, slow_start=False)
    limiter.on_throttle(limiter.on_send(), 0.0, None)
    assert limiter.allowed == 5
    successes = 0
    while limiter.limit < 9:
        limiter.on_success(limiter.on_send(), 0.0)
        successes += 1
    assert successes < 40  # about one per slot per step: +1 per round trip
    probe = 0
    while limiter.limit < 10:
        limiter.on_success(limiter.on_send(), 0.0)
        probe += 1
    assert probe > 5 * successes / 4  # above the throttled level it creeps


def test_retry_after_pauses_every_dispatch() -> None:
    limiter = AdaptiveConcurrency()
    assert limiter.delay(10.0) == 0
    limiter.on_throttle(limiter.on_send(), 10.0, 2.5)
    assert limiter.delay(10.0) == pytest.approx(2.5)
    assert limiter.delay(13.0) == 0


def test_a_throttle_caps_the_send_rate_at_the_rate_answered() -> None:
    limiter = AdaptiveConcurrency(initial=1, minimum=1, slow_start=False)
    for i in range(20):  # 5 answers per second for 4 s
        limiter.on_success(limiter.on_send(), i * 0.2)
    assert limiter.rate_cap(4.0) is None
    limiter.on_throttle(limiter.on_send(), 4.0, None)
    cap = limiter.rate_cap(4.0)
    assert cap is not None and 4.5 <= cap <= 5.5
    waits = [limiter.pace(4.0) for _ in range(3)]
    assert waits[0] == 0 and waits[2] == pytest.approx(2 / cap)
    later = limiter.rate_cap(14.0)
    assert later is not None and later == pytest.approx(cap * 1.2)  # +2 % per second


def test_token_bucket_paces_at_its_rate_after_a_small_burst() -> None:
    bucket = TokenBucket.per_minute(600, now=0.0)  # 10/s, burst 5
    waits = [bucket.reserve(1, 0.0) for _ in range(7)]
    assert waits[:5] == [0.0] * 5
    assert waits[5] == pytest.approx(0.1) and waits[6] == pytest.approx(0.2)
    assert bucket.reserve(1, 10.0) == 0.0  # refilled, never above the burst


def test_token_bucket_corrects_an_estimate() -> None:
    bucket = TokenBucket(rate=100, burst=1000, now=0.0)
    assert bucket.reserve(1000, 0.0) == 0
    bucket.adjust(+600, 0.0)  # used 400 of the 1,000 estimated
    assert bucket.reserve(600, 0.0) == 0
    assert bucket.reserve(100, 0.0) == pytest.approx(1.0)


def test_spend_cap_reserves_and_settles() -> None:
    cap = SpendCap(Decimal("1.00"))
    assert cap.try_reserve(Decimal("0.60"))
    assert not cap.try_reserve(Decimal("0.50"))
    cap.settle(Decimal("0.60"), Decimal("0.10"))
    assert cap.spent == Decimal("0.10") and cap.reserved == 0
    assert cap.try_reserve(Decimal("0.90"))
    assert not cap.try_reserve(Decimal("0.01"))
    assert SpendCap(None).try_reserve(Decimal(10**9))
    with pytest.raises(ParameterError, match="budget_usd"):
        SpendCap(Decimal(-1))


def test_cost_bounds_per_token_and_per_call() -> None:
    model = default_catalog().resolve("gpt-oss")  # $0.10 in, $0.50 out per million
    body = {"max_tokens": 1000}
    bounds = cost_bounds(body, model, Pricing(), prompt_tokens=100)
    assert bounds.low == Decimal("0.00001")
    assert bounds.high == Decimal("0.00051")
    flat = cost_bounds(body, model, Pricing("per_call"), prompt_tokens=100)
    assert flat.low == flat.high == Decimal("0.01")
    default = cost_bounds({}, model, Pricing(), prompt_tokens=0)
    assert default.high == Decimal(4096) * Decimal("0.5") / 10**6


def test_prompt_estimate_is_generous() -> None:
    text = "word " * 100
    assert estimate_prompt_tokens([{"role": "user", "content": text}]) >= 250
