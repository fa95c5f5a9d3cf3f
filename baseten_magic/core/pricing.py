"""What a call cost: per token (Baseten direct) or a flat fee per call (a reseller).

Rule: money is `Decimal` from end to end and is rounded only for display (`format_usd`).
Reasoning tokens are part of `completion_tokens` and billed as output; cached prompt tokens are
billed at the cached-input price, or at the input price when that is unknown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from baseten_magic.core.catalog import ModelInfo
from baseten_magic.core.errors import ConfigurationError, ParameterError
from baseten_magic.core.result import Usage

PricingMode = Literal["per_token", "per_call"]
PRICING_MODES: tuple[PricingMode, ...] = ("per_token", "per_call")
PRICING_ENV = "BASETEN_MAGIC_PRICING"
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Pricing:
    """How calls are billed: `per_token` list prices, or a flat `per_call` fee."""

    mode: PricingMode = "per_token"
    per_call: Decimal = Decimal("0.01")

    def __post_init__(self) -> None:
        if self.mode not in PRICING_MODES:
            raise ParameterError(
                f"pricing mode must be per_token or per_call, got {self.mode!r}; "
                'pass e.g. Pricing("per_call")'
            )
        if not isinstance(self.per_call, Decimal) or self.per_call < 0:
            raise ParameterError(
                f"per_call must be a Decimal of 0 or more, got {self.per_call!r}; "
                'pass e.g. Pricing("per_call", Decimal("0.01"))'
            )


def cost_of(
    usage: Usage | None,
    model: ModelInfo | None,
    pricing: Pricing,
    *,
    served: bool = True,
) -> Decimal:
    """The exact cost of one call; Decimal(0) when it cannot be known."""
    if pricing.mode == "per_call":
        # The flat fee is charged when the server accepted the call (HTTP 200), whatever the tokens.
        return pricing.per_call if served else Decimal(0)
    if usage is None or model is None:
        return Decimal(0)
    if model.input_price is None or model.output_price is None:
        return Decimal(0)
    prompt = max(usage.prompt_tokens, 0)
    cached = min(max(usage.cached_tokens, 0), prompt)
    cached_price = (
        model.input_price if model.cached_input_price is None else model.cached_input_price
    )
    total = (
        Decimal(prompt - cached) * model.input_price
        + Decimal(cached) * cached_price
        + Decimal(max(usage.completion_tokens, 0)) * model.output_price
    )
    return total / _MILLION


#: The xpay route's price: the reseller's listing charges a flat $0.01 per call.
XPAY_PRICING = Pricing(mode="per_call", per_call=Decimal("0.01"))


def pricing_for_route(route: str) -> Pricing | None:
    """The pricing a route imposes (`xpay`: $0.01 per call), or None when the user's applies."""
    return XPAY_PRICING if route == "xpay" else None


def pricing_mode(raw: object) -> PricingMode | None:
    """`raw` as a pricing mode (`per-call`, ` Per_Call ` are `per_call`), or None if it is none."""
    wanted = str(raw).strip().lower().replace("-", "_")
    return next((mode for mode in PRICING_MODES if mode == wanted), None)


def pricing_from_env() -> Pricing:
    """The pricing named by `BASETEN_MAGIC_PRICING` (`per_token`, the default, or `per_call`)."""
    raw = os.environ.get(PRICING_ENV, "").strip().lower().replace("-", "_")
    if not raw:
        return Pricing()
    mode = pricing_mode(raw)
    if mode is None:
        raise ConfigurationError(
            f"{PRICING_ENV} must be per_token or per_call, got {raw!r}; "
            f"fix it with %env {PRICING_ENV}=per_token"
        )
    return Pricing(mode=mode)


def format_usd(amount: Decimal) -> str:
    """Dollars for display: cents from $1 up, three significant digits below (`$0.000123`)."""
    if not amount.is_finite():
        return f"${amount}"
    sign = "-" if amount < 0 else ""
    value = abs(amount)
    if value == 0:
        return "$0.00"
    if value >= 1:
        return f"{sign}${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"
    # adjusted() is the exponent of the leading digit: 0.000123 → -4, so keep 6 places.
    places = max(2, 2 - value.adjusted())
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{rounded:f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{sign}${whole}.{fraction}"
