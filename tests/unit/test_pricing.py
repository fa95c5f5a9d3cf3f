"""Cost: per token (with cached and reasoning tokens), per call, display formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest

from baseten_magic.core.catalog import ModelInfo, default_catalog
from baseten_magic.core.errors import ConfigurationError, ParameterError
from baseten_magic.core.pricing import PRICING_ENV, Pricing, cost_of, format_usd, pricing_from_env
from baseten_magic.core.result import Usage

D = Decimal
PER_TOKEN = Pricing()
PER_CALL = Pricing("per_call")


def glm() -> ModelInfo:
    return default_catalog().resolve("glm")  # 0.60 in, 2.20 out, 0.12 cached


def test_per_token_exact() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=500)
    cost = cost_of(usage, glm(), PER_TOKEN)
    assert cost == D("0.0017")  # 1000*0.60/1e6 + 500*2.20/1e6
    assert isinstance(cost, Decimal)


def test_per_token_cached_and_reasoning() -> None:
    # Reasoning is inside completion_tokens: billed once, as output.
    usage = Usage(
        prompt_tokens=1000, completion_tokens=500, reasoning_tokens=400, cached_tokens=800
    )
    cost = cost_of(usage, glm(), PER_TOKEN)
    assert cost == (D(200) * D("0.60") + D(800) * D("0.12") + D(500) * D("2.20")) / D(10**6)
    assert cost == D("0.0013160")


def test_cached_without_cached_price_bills_input_price() -> None:
    model = default_catalog().resolve("gpt-oss")
    usage = Usage(prompt_tokens=1000, completion_tokens=0, cached_tokens=1000)
    assert cost_of(usage, model, PER_TOKEN) == D("0.0001")


def test_cached_more_than_prompt_is_clamped() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=0, cached_tokens=50)
    assert cost_of(usage, glm(), PER_TOKEN) == D(10) * D("0.12") / D(10**6)


def test_decimal_exactness_over_many_calls() -> None:
    usage = Usage(prompt_tokens=1, completion_tokens=1)
    one = cost_of(usage, default_catalog().resolve("gpt-oss"), PER_TOKEN)
    assert one == D("0.0000006")
    assert sum([one] * 1_000_000, D(0)) == D("0.6")


def test_unknown_usage_or_prices_cost_zero() -> None:
    assert cost_of(None, glm(), PER_TOKEN) == D(0)
    assert cost_of(Usage(prompt_tokens=10), None, PER_TOKEN) == D(0)
    adhoc = default_catalog().resolve("acme/new")
    assert cost_of(Usage(prompt_tokens=10, completion_tokens=10), adhoc, PER_TOKEN) == D(0)


def test_per_call_flat_fee_when_served() -> None:
    usage = Usage(prompt_tokens=100_000, completion_tokens=100_000)
    assert cost_of(usage, glm(), PER_CALL) == D("0.01")
    assert cost_of(None, None, PER_CALL) == D("0.01")
    assert cost_of(usage, glm(), PER_CALL, served=False) == D(0)
    assert cost_of(usage, glm(), Pricing("per_call", D("0.05"))) == D("0.05")


def test_served_false_does_not_change_per_token() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=0)
    assert cost_of(usage, glm(), PER_TOKEN, served=False) == D("0.0006")


def test_bad_pricing() -> None:
    with pytest.raises(ParameterError):
        Pricing("per_minute")  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        Pricing("per_call", D(-1))


@pytest.mark.parametrize(
    ("env", "mode"),
    [(None, "per_token"), ("", "per_token"), ("per_call", "per_call"), ("PER-TOKEN", "per_token")],
)
def test_pricing_from_env(monkeypatch: pytest.MonkeyPatch, env: str | None, mode: str) -> None:
    if env is None:
        monkeypatch.delenv(PRICING_ENV, raising=False)
    else:
        monkeypatch.setenv(PRICING_ENV, env)
    pricing = pricing_from_env()
    assert pricing.mode == mode
    assert pricing.per_call == D("0.01")


def test_pricing_from_env_rejects_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRICING_ENV, "free")
    with pytest.raises(ConfigurationError, match="per_token or per_call"):
        pricing_from_env()


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("0", "$0.00"),
        ("0.000123", "$0.000123"),
        ("0.0001234567", "$0.000123"),
        ("0.00012389", "$0.000124"),
        ("0.01", "$0.01"),
        ("0.5", "$0.50"),
        ("0.125", "$0.125"),
        ("0.0013160", "$0.00132"),
        ("1", "$1.00"),
        ("1234.567", "$1,234.57"),
        ("0.0000006", "$0.0000006"),
        ("-0.01", "-$0.01"),
    ],
)
def test_format_usd(amount: str, text: str) -> None:
    assert format_usd(D(amount)) == text
