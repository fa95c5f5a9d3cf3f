"""Retry policy: which statuses, Retry-After (seconds and HTTP-date), cap, jittered backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from baseten_magic.core.retry import RetryPolicy, parse_retry_after, retry_after_from_headers

POLICY = RetryPolicy()
NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC).timestamp()


def test_defaults() -> None:
    assert (
        RetryPolicy(max_retries=2, initial_delay=0.5, max_delay=8.0, retry_after_cap=60.0) == POLICY
    )
    assert POLICY.initial_delay == 0.5
    assert POLICY.max_delay == 8.0
    with pytest.raises(AttributeError):
        POLICY.max_retries = 3  # type: ignore[misc]


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert POLICY.should_retry_status(status)


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 422, 600])
def test_not_retryable_statuses(status: int) -> None:
    assert not POLICY.should_retry_status(status)


@pytest.mark.parametrize(("header", "seconds"), [("3", 3.0), ("1.5", 1.5), (" 60 ", 60.0)])
def test_retry_after_seconds_honoured(header: str, seconds: float) -> None:
    assert POLICY.delay(0, header, random.Random(1)) == seconds


def test_retry_after_http_date_honoured() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW + 7, UTC), usegmt=True)
    assert when.endswith("GMT")
    assert POLICY.delay(0, when, random.Random(1), now=NOW) == pytest.approx(7.0)
    assert parse_retry_after(when, now=NOW) == pytest.approx(7.0)


@pytest.mark.parametrize("header", ["0", "-1", "61", "3600", "soon", "", "nan", "inf"])
def test_unusable_retry_after_falls_back_to_backoff(header: str) -> None:
    delay = POLICY.delay(1, header, random.Random(3))
    assert 0.75 <= delay <= 1.0


def test_past_http_date_falls_back_to_backoff() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW - 30, UTC), usegmt=True)
    assert 0.375 <= POLICY.delay(0, when, random.Random(3), now=NOW) <= 0.5


def test_cap_is_configurable() -> None:
    assert RetryPolicy(retry_after_cap=120).delay(0, "90", random.Random(0)) == 90.0


@pytest.mark.parametrize(
    ("attempt", "base"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (500, 8.0)]
)
def test_backoff_bounds_with_jitter(attempt: int, base: float) -> None:
    rng = random.Random(1234)
    delays = [POLICY.delay(attempt, None, rng) for _ in range(200)]
    assert all(base * 0.75 <= d <= base for d in delays)
    assert max(delays) - min(delays) > base * 0.1  # jitter actually spreads the delays


def test_seeded_rng_is_reproducible() -> None:
    first = [POLICY.delay(i, None, random.Random(7)) for i in range(4)]
    second = [POLICY.delay(i, None, random.Random(7)) for i in range(4)]
    assert first == second


def test_jitter_formula() -> None:
    rng = random.Random(42)
    expected = 2.0 * (1 - 0.25 * random.Random(42).random())
    assert POLICY.delay(2, None, rng) == expected


def test_without_rng_uses_module_random() -> None:
    assert 0.375 <= POLICY.delay(0, None) <= 0.5


def test_retry_after_from_headers() -> None:
    assert retry_after_from_headers({"Retry-After": "2"}) == "2"
    assert retry_after_from_headers({"retry-after-ms": "1500", "retry-after": "9"}) == "1.5"
    assert retry_after_from_headers({"retry-after-ms": "x", "retry-after": "9"}) == "9"
    assert retry_after_from_headers({}) is None
