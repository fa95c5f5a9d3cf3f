"""The model catalog: slugs, aliases, context sizes, reasoning modes and list prices.

Rule: models and prices are data, never code. The bundled table (`data/models.json`) is the
starting point; `Catalog.refreshed()` folds in a `GET /v1/models` payload and
`Catalog.with_overrides()` (or a JSON file named by `BASETEN_MAGIC_PRICES`) applies the user's own
prices. A `Catalog` is an immutable value: every change returns a new one.

Retirement is data too: a model whose `deprecated_on` date has come is retired. It stays in the
catalog (so old ledgers and notebooks still name it), but `offered()` leaves it out, the
unknown-alias message does not list it, and `resolve_offered()` (what request building uses)
refuses it locally, naming its `replacement`. Every date check takes an optional `today`, so
tests can pin the calendar.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from baseten_magic.core.errors import ConfigurationError, ParameterError

ReasoningMode = Literal["none", "always", "default_on", "opt_in"]
REASONING_MODES: tuple[ReasoningMode, ...] = ("none", "always", "default_on", "opt_in")

PRICES_ENV = "BASETEN_MAGIC_PRICES"
_MILLION = Decimal(1_000_000)
# Keys accepted in a price override, mapped to ModelInfo fields.
_OVERRIDE_KEYS = {
    "input": "input_price",
    "output": "output_price",
    "cached_input": "cached_input_price",
}


@dataclass(frozen=True)
class ModelInfo:
    """One model: its slug, aliases, limits, reasoning mode and prices per million tokens."""

    slug: str
    display_name: str = ""
    aliases: tuple[str, ...] = ()
    context_length: int | None = None
    max_completion_tokens: int | None = None
    reasoning: ReasoningMode = "none"
    supports_reasoning_effort: bool = False
    input_price: Decimal | None = None
    output_price: Decimal | None = None
    cached_input_price: Decimal | None = None
    deprecated_on: date | None = None
    # The slug to use once this model is retired (named in the local error).
    replacement: str | None = None
    supported_features: tuple[str, ...] = ()
    note: str = ""
    # False for a slug the catalog has never seen: its abilities are unknown, so callers let the
    # server decide instead of refusing options.
    known: bool = True

    @property
    def can_toggle_thinking(self) -> bool:
        """True when `chat_template_args.enable_thinking` switches this model's reasoning."""
        return not self.known or self.reasoning in ("opt_in", "default_on")

    @property
    def has_prices(self) -> bool:
        """True when both the input and the output price are known."""
        return self.input_price is not None and self.output_price is not None

    def is_retired(self, today: date | None = None) -> bool:
        """True when the model's deprecation date is today or earlier."""
        when = date.today() if today is None else today
        return self.deprecated_on is not None and when >= self.deprecated_on


def _decimal(value: object, what: str) -> Decimal:
    """Read a price as an exact Decimal (floats go through `str` so 0.1 stays 0.1)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ParameterError(
            f"{what} must be a number or a numeric string, got {value!r}; "
            'write prices like "0.60" (USD per million tokens)'
        )
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ParameterError(
            f"{what} must be a number or a numeric string, got {value!r}; "
            'write prices like "0.60" (USD per million tokens)'
        ) from None
    if not result.is_finite() or result < 0:
        raise ParameterError(
            f"{what} must be a finite price of 0 or more, got {value!r}; "
            'write prices like "0.60" (USD per million tokens)'
        )
    return result


def _tidy(value: Decimal) -> Decimal:
    """Drop the trailing zeros a per-token → per-million conversion leaves, without exponents."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def _optional_decimal(value: object, what: str) -> Decimal | None:
    return None if value is None else _decimal(value, what)


def _model_from_json(item: Mapping[str, Any]) -> ModelInfo:
    reasoning = item.get("reasoning", "none")
    if reasoning not in REASONING_MODES:
        raise ConfigurationError(
            f"model {item.get('slug')!r} has reasoning {reasoning!r}, expected one of "
            f"{', '.join(REASONING_MODES)}; fix the catalog data"
        )
    deprecated = item.get("deprecated_on")
    slug = str(item["slug"])
    return ModelInfo(
        slug=slug,
        display_name=str(item.get("display_name") or slug),
        aliases=tuple(str(a) for a in item.get("aliases", ())),
        context_length=item.get("context_length"),
        max_completion_tokens=item.get("max_completion_tokens"),
        reasoning=cast(ReasoningMode, reasoning),
        supports_reasoning_effort=bool(item.get("supports_reasoning_effort", False)),
        input_price=_optional_decimal(item.get("input"), f"{slug} input price"),
        output_price=_optional_decimal(item.get("output"), f"{slug} output price"),
        cached_input_price=_optional_decimal(item.get("cached_input"), f"{slug} cached price"),
        deprecated_on=None if deprecated is None else date.fromisoformat(str(deprecated)),
        replacement=None if item.get("replacement") is None else str(item["replacement"]),
        supported_features=tuple(str(f) for f in item.get("supported_features", ())),
        note=str(item.get("note", "")),
    )


def ad_hoc_model(slug: str) -> ModelInfo:
    """A model the catalog does not know: usable, with unknown prices and abilities."""
    return ModelInfo(slug=slug, display_name=slug, known=False)


class Catalog:
    """An immutable, ordered set of models with alias and case-insensitive slug lookup."""

    def __init__(self, models: Iterable[ModelInfo], *, prices_as_of: str = "", source: str = ""):
        self._models: tuple[ModelInfo, ...] = tuple(models)
        self._prices_as_of = prices_as_of
        self._source = source
        by_slug: dict[str, ModelInfo] = {}
        by_alias: dict[str, ModelInfo] = {}
        for info in self._models:
            by_slug[info.slug.lower()] = info
            for alias in info.aliases:
                by_alias[alias.lower()] = info
        self._by_slug = by_slug
        self._by_alias = by_alias

    def __repr__(self) -> str:
        return f"Catalog({len(self._models)} models, prices_as_of={self._prices_as_of!r})"

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        """All models, in catalog order."""
        return self._models

    @property
    def prices_as_of(self) -> str:
        """The date (ISO string) the bundled prices were taken."""
        return self._prices_as_of

    @property
    def source(self) -> str:
        """Where the prices came from."""
        return self._source

    @property
    def aliases(self) -> dict[str, str]:
        """Every alias mapped to its slug, retired models' included."""
        return {alias: info.slug for info in self._models for alias in info.aliases}

    def offered(self, today: date | None = None) -> tuple[ModelInfo, ...]:
        """The models still served (not retired as of `today`), in catalog order."""
        return tuple(info for info in self._models if not info.is_retired(today))

    def retired(self, today: date | None = None) -> tuple[ModelInfo, ...]:
        """The models retired as of `today`, in catalog order."""
        return tuple(info for info in self._models if info.is_retired(today))

    def offered_aliases(self, today: date | None = None) -> dict[str, str]:
        """The aliases of the offered models, mapped to their slugs."""
        return {alias: info.slug for info in self.offered(today) for alias in info.aliases}

    def describe(self, info: ModelInfo) -> str:
        """`alias (slug)` for a model with an alias, else its slug (for messages)."""
        return f"{info.aliases[0]} ({info.slug})" if info.aliases else info.slug

    def get(self, slug: str) -> ModelInfo | None:
        """The model with this slug (case-insensitive), or None."""
        return self._by_slug.get(slug.strip().lower())

    def resolve(self, name: str, today: date | None = None) -> ModelInfo:
        """The model named by an alias or a slug; an unknown `org/model` slug is used as is.

        Retired models resolve too (for display and old records); `resolve_offered` refuses
        them. `today` only decides which aliases an unknown-alias message lists.
        """
        key = name.strip().lower()
        if not key:
            raise ParameterError(
                f"model must be a slug or an alias, got an empty name; pass e.g. -m gpt-oss "
                f"(aliases: {', '.join(sorted(self.offered_aliases(today)))})"
            )
        found = self._by_alias.get(key) or self._by_slug.get(key)
        if found is not None:
            return found
        if "/" in key:
            # New models appear before the bundled table knows them: let the server decide.
            return ad_hoc_model(name.strip())
        choices = sorted(self.offered_aliases(today))
        close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ParameterError(
            f"unknown model alias {name.strip()!r}; {hint}known aliases: {', '.join(choices)} "
            "(or pass a full slug such as openai/gpt-oss-120b; %baseten models lists them)"
        )

    def resolve_offered(self, name: str, today: date | None = None) -> ModelInfo:
        """Like `resolve`, but a retired model is a ParameterError naming its replacement."""
        info = self.resolve(name, today)
        if not info.is_retired(today):
            return info
        given = name.strip()
        subject = info.slug if given.lower() == info.slug.lower() else f"{given} ({info.slug})"
        replacement = None if info.replacement is None else self.get(info.replacement)
        if replacement is not None and not replacement.is_retired(today):
            advice = f"use {self.describe(replacement)}"
        else:
            advice = "pick a model that is still offered (%baseten models lists them)"
        raise ParameterError(f"{subject} was retired on {info.deprecated_on}; {advice}")

    def is_retired(self, slug: str, today: date | None = None) -> bool:
        """True when the named model's deprecation date has passed (unknown models: False)."""
        info = self._by_alias.get(slug.strip().lower()) or self.get(slug)
        return info is not None and info.is_retired(today)

    def _replace(self, models: Iterable[ModelInfo]) -> Catalog:
        return Catalog(models, prices_as_of=self._prices_as_of, source=self._source)

    def refreshed(self, payload: Mapping[str, Any] | list[Any]) -> Catalog:
        """A new catalog updated from a `GET /v1/models` payload (per-token prices → per M)."""
        items = payload.get("data", []) if isinstance(payload, Mapping) else payload
        if not isinstance(items, list):
            raise ParameterError(
                f"a /v1/models payload must hold a list under 'data', got {type(items).__name__}; "
                "pass the decoded JSON body of GET /v1/models"
            )
        models = {info.slug.lower(): info for info in self._models}
        order = [info.slug.lower() for info in self._models]
        for item in items:
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                continue
            slug = item["id"]
            key = slug.lower()
            # A model the bundled table does not describe keeps unknown abilities (known=False),
            # as `resolve` gives it, so a refresh never makes options like thinking refused.
            base = models.get(key) or ad_hoc_model(slug)
            changes: dict[str, Any] = {}
            for field in ("context_length", "max_completion_tokens"):
                value = item.get(field)
                if isinstance(value, int) and not isinstance(value, bool):
                    changes[field] = value
            features = item.get("supported_features")
            if isinstance(features, list):
                changes["supported_features"] = tuple(str(f) for f in features)
            pricing = item.get("pricing")
            if isinstance(pricing, Mapping):
                for wire, field in (
                    ("prompt", "input_price"),
                    ("completion", "output_price"),
                    ("input_cache_read", "cached_input_price"),
                ):
                    if pricing.get(wire) is not None:
                        per_token = _decimal(pricing[wire], f"{slug} pricing.{wire}")
                        changes[field] = _tidy(per_token * _MILLION)
            models[key] = dataclasses.replace(base, **changes)
            if key not in order:
                order.append(key)
        return self._replace(models[key] for key in order)

    def with_overrides(self, overrides: Mapping[str, Mapping[str, str | float]]) -> Catalog:
        """A new catalog with the user's prices: `{model: {"input", "output", "cached_input"}}`."""
        models = {info.slug.lower(): info for info in self._models}
        order = [info.slug.lower() for info in self._models]
        for name, prices in overrides.items():
            if not isinstance(prices, Mapping):
                raise ParameterError(
                    f"price override for {name!r} must be an object like "
                    f'{{"input": "0.60", "output": "2.20"}}, got {prices!r}; fix the override'
                )
            info = self.resolve(name)
            changes: dict[str, Any] = {}
            for key, value in prices.items():
                field = _OVERRIDE_KEYS.get(key)
                if field is None:
                    raise ParameterError(
                        f"price override for {name!r} has unknown key {key!r}; expected "
                        f"{', '.join(_OVERRIDE_KEYS)} (USD per million tokens)"
                    )
                changes[field] = _decimal(value, f"{name} {key} price")
            slug_key = info.slug.lower()
            models[slug_key] = dataclasses.replace(info, **changes)
            if slug_key not in order:
                order.append(slug_key)
        return self._replace(models[key] for key in order)


def _parse_catalog(text: str) -> Catalog:
    data = json.loads(text)
    return Catalog(
        (_model_from_json(item) for item in data["models"]),
        prices_as_of=str(data.get("prices_as_of", "")),
        source=str(data.get("source", "")),
    )


@lru_cache(maxsize=1)
def bundled_catalog() -> Catalog:
    """The catalog shipped in `data/models.json` (read once; a Catalog is immutable)."""
    text = resources.files("baseten_magic").joinpath("data", "models.json").read_text("utf-8")
    return _parse_catalog(text)


def load_overrides(path: str | Path) -> dict[str, dict[str, str | float]]:
    """Read a JSON price-override file: `{model: {"input": ..., "output": ...}}`."""
    file = Path(path).expanduser()
    try:
        data = json.loads(file.read_text("utf-8"))
    except OSError as exc:
        raise ConfigurationError(
            f"{PRICES_ENV} points to {str(file)!r}, which could not be read "
            f"({exc.strerror}); fix the path or unset {PRICES_ENV}"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{PRICES_ENV} file {str(file)!r} is not valid JSON ({exc.msg} at line {exc.lineno}); "
            'expected {"model": {"input": "0.60", "output": "2.20"}}'
        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigurationError(
            f"{PRICES_ENV} file {str(file)!r} must hold an object of objects; "
            'expected {"model": {"input": "0.60", "output": "2.20"}}'
        )
    return data


def default_catalog() -> Catalog:
    """The bundled catalog, with the overrides from `BASETEN_MAGIC_PRICES` applied if set."""
    catalog = bundled_catalog()
    path = os.environ.get(PRICES_ENV, "").strip()
    if not path:
        return catalog
    try:
        return catalog.with_overrides(load_overrides(path))
    except ParameterError as exc:
        raise ConfigurationError(f"{PRICES_ENV} file {path!r}: {exc}") from None
