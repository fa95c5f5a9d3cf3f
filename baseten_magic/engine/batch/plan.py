"""A batch planned before any I/O: options checked, one request per row, each with its cache key
and cost bounds.

Rule: everything that can be wrong with a whole run (an unknown template field, a bad
parameter, a budget that cannot be priced) raises `ParameterError` here, before anything is
sent; what can be wrong with one row (a prompt function that raises) becomes that row's error.
Rows are plain dicts of their fields, so this module needs no pandas.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, cast

from baseten_magic.core import settings
from baseten_magic.core.budget import Budget
from baseten_magic.core.errors import ParameterError
from baseten_magic.core.limits import CostBounds, cost_bounds, estimate_prompt_tokens
from baseten_magic.core.pricing import Pricing, pricing_for_route, pricing_from_env
from baseten_magic.core.settings import Route
from baseten_magic.core.structured import response_format_for
from baseten_magic.engine.call import PreparedRequest, prepare_request
from baseten_magic.io.cache import key_for
from baseten_magic.io.ledger import Ledger

Prompt = str | Callable[[dict[str, Any]], Any]
OnError = Literal["keep", "raise"]


@dataclass(frozen=True)
class BatchOptions:
    """Everything `map()` was asked, apart from the prompt and the data."""

    model: str | None = None
    system: str | None = None
    schema: object | None = None
    json: bool = False
    concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    budget_usd: Decimal | None = None
    cache: bool = True
    on_error: OnError = "keep"
    dry_run: bool = False
    timeout: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    pricing: Pricing | None = None
    session: str | None = None
    base_url: str | None = None  # None: BASETEN_BASE_URL at run time
    # Where the run's ledger rows say they came from: a `%%baseten --over` cell's `In [n]`.
    cell: int | None = None
    route: Route | None = None  # None: BASETEN_MAGIC_ROUTE at run time
    thinking: bool | None = None  # reasoning on/off where the model can switch it
    # A spend shared with other calls (a notebook session's, or the process's), reserved
    # against beside `budget_usd`: the run never takes it over its cap either.
    budget: Budget | None = field(default=None, compare=False)
    ledger: Ledger | None = field(default=None, compare=False)  # None: BASETEN_MAGIC_LEDGER

    def __post_init__(self) -> None:
        if self.on_error not in ("keep", "raise"):
            raise ParameterError(
                f'on_error must be "keep" or "raise", got {self.on_error!r}; pass on_error="keep"'
            )
        for name in ("concurrency", "rpm", "tpm", "timeout"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ParameterError(
                    f"{name} must be a positive number or None, got {value!r}; "
                    f"pass e.g. {name}=8 or leave it out"
                )
        if self.budget_usd is not None and self.budget_usd < 0:
            raise ParameterError(
                f"budget_usd must be 0 or more, got {self.budget_usd}; pass e.g. budget_usd=5"
            )


@dataclass(frozen=True)
class RowRequest:
    """One row's request, its cache key and what it may cost."""

    position: int
    request: PreparedRequest | None  # None when the prompt could not be built
    key: str = ""
    bounds: CostBounds = field(default_factory=lambda: CostBounds(Decimal(0), Decimal(0)))
    error: str | None = None  # why the prompt could not be built


@dataclass(frozen=True)
class BatchPlan:
    """A whole run, planned: options, pricing and one RowRequest per input row."""

    options: BatchOptions
    pricing: Pricing
    rows: tuple[RowRequest, ...]
    scope: str
    route: Route = "baseten"

    @property
    def total(self) -> int:
        return len(self.rows)


def template_fields(template: str) -> list[str]:
    """The field names a `str.format` template uses (`{{`/`}}` are literal braces)."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ParameterError(
            f"expected a str.format template, got one that does not parse ({exc}); write "
            "literal braces as {{ and }}"
        ) from None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ParameterError(
                f"expected named fields like {{review}} in the template, got {{{name}}}; "
                "name the column to use"
            )
        head = name.split(".", 1)[0].split("[", 1)[0]
        if head not in names:
            names.append(head)
    return names


def messages_for(
    prompt: Prompt, record: dict[str, Any], system: str | None
) -> list[dict[str, Any]]:
    """The messages of one row: the template filled in (or the prompt function's answer),
    after the system prompt when one is given."""
    text = prompt.format_map(record) if isinstance(prompt, str) else prompt(record)
    if isinstance(text, str):
        messages: list[dict[str, Any]] = [{"role": "user", "content": text}]
    elif isinstance(text, Sequence) and not isinstance(text, str):
        if not all(isinstance(m, Mapping) for m in text):
            raise ParameterError(
                "expected the prompt function's list to hold message dicts like "
                '{"role": "user", "content": "..."}, got other items; return dicts'
            )
        messages = [dict(cast(Mapping[str, Any], m)) for m in text]
    else:
        raise ParameterError(
            f"expected the prompt function to return a str or a list of message dicts, got "
            f"{type(text).__name__}; return e.g. f'Classify: {{row[\"review\"]}}'"
        )
    if system is not None and not (messages and messages[0].get("role") == "system"):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def plan_batch(
    prompt: Prompt,
    records: Sequence[dict[str, Any]],
    columns: Sequence[str],
    options: BatchOptions,
) -> BatchPlan:
    """Check the run and build every row's request; raises ParameterError, sends nothing."""
    if isinstance(prompt, str):
        missing = [name for name in template_fields(prompt) if name not in columns]
        if missing:
            raise ParameterError(
                f"the template uses {', '.join('{' + m + '}' for m in missing)}, but the data "
                f"has no such column (columns: {', '.join(map(str, columns)) or 'none'}); "
                "rename the field or the column"
            )
    elif not callable(prompt):
        raise ParameterError(
            f"expected the prompt as a str template or a function row -> str, got "
            f"{type(prompt).__name__}; pass e.g. 'Classify: {{review}}'"
        )
    params = dict(options.params)
    response_format = response_format_for(options.json, options.schema)
    if response_format is not None:
        if "response_format" in params:
            raise ParameterError(
                "response_format is set by schema= / json=, got it in the parameters too; "
                "pass only one of them"
            )
        params["response_format"] = response_format
    route = settings.route(options.route)
    # The route's own pricing wins (xpay: $0.01 a call), as it does for every ChatCall.
    pricing = pricing_for_route(route) or options.pricing or pricing_from_env()
    scope = _scope(options, route)
    bound = options.budget_usd is not None or options.dry_run
    shared_cap = options.budget is not None and options.budget.cap is not None
    # The options alone, checked once: a bad parameter fails the run before anything is sent.
    model = prepare_request(
        "-", model=options.model, stream=False, thinking=options.thinking, params=params
    ).model
    base: dict[str, Any] | None = None
    rows: list[RowRequest] = []
    for position, record in enumerate(records):
        try:
            messages = messages_for(prompt, record, options.system)
        except Exception as exc:  # a prompt function's failure is its row's, not the run's
            rows.append(RowRequest(position, None, error=_prompt_error(exc)))
            continue
        if base is None or callable(prompt):
            # Validated once for a template (only the text changes between rows); a prompt
            # function may return any messages, so each of its rows is validated, and a row
            # whose messages are invalid fails alone (the options were checked above).
            try:
                prepared = prepare_request(
                    messages,
                    model=options.model,
                    stream=False,
                    thinking=options.thinking,
                    params=params,
                )
            except ParameterError as exc:
                rows.append(RowRequest(position, None, error=_prompt_error(exc)))
                continue
            base = prepared.body
            model = prepared.model
        else:
            prepared = PreparedRequest(body={**base, "messages": messages}, model=model)
        bounds = _bounds(prepared, messages, pricing, bound=bound, shared_cap=shared_cap)
        rows.append(RowRequest(position, prepared, key_for(prepared.body, scope=scope), bounds))
    return BatchPlan(options=options, pricing=pricing, rows=tuple(rows), scope=scope, route=route)


def _scope(options: BatchOptions, route: Route) -> str:
    """What the cache keys are scoped to: the endpoint the answers come from."""
    if route == "xpay":
        # The MCP endpoint without any key a user may have written into it.
        return "xpay:" + settings.redact(settings.xpay_url())
    return options.base_url or settings.base_url()


def _bounds(
    prepared: PreparedRequest,
    messages: list[dict[str, Any]],
    pricing: Pricing,
    *,
    bound: bool,
    shared_cap: bool,
) -> CostBounds:
    """A row's cost bounds when a budget or a dry run needs them (else zero: not computed)."""
    if not (bound or shared_cap):
        return CostBounds(Decimal(0), Decimal(0))
    tokens = estimate_prompt_tokens(messages)
    try:
        return cost_bounds(prepared.body, prepared.model, pricing, tokens)
    except ParameterError:
        if bound:
            raise
        # Only the shared budget asks: a model without list prices is priced at $0 there
        # (`core.budget.worst_case_cost`), so it holds nothing.
        return CostBounds(Decimal(0), Decimal(0))


def _prompt_error(exc: Exception) -> str:
    if isinstance(exc, ParameterError):
        return settings.error_line(exc)
    if isinstance(exc, KeyError | IndexError | AttributeError):
        return (
            f"expected the row to have the field the prompt uses, got {type(exc).__name__}: "
            f"{settings.error_line(exc)}; check the template or the prompt function"
        )
    return (
        f"the prompt function raised {type(exc).__name__}: {settings.error_line(exc)}; "
        "fix the function for this row"
    )
