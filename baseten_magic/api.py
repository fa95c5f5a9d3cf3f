"""The Python API: `chat()`, `achat()`, `ledger()`, and `map()` / `amap()` for prompts over data.

Rule: a thin front end over the engine. It plans a call (request, context, tools) without I/O,
then runs it through `engine.call.ChatCall` or the tool loop on a client opened for the call,
exactly as the magic and the panel do. `map()` plans a batch and hands it to the engine's
runner with a progress sink from `render.progress`; pandas loads only when `map()` is called.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from baseten_magic.core.pricing import Pricing, pricing_from_env
from baseten_magic.core.progress import ProgressSink
from baseten_magic.core.result import ChatResult
from baseten_magic.core.stream import Delta
from baseten_magic.engine.call import (
    CallContext,
    ChatCall,
    Messages,
    PreparedRequest,
    prepare_request,
)
from baseten_magic.io.ledger import Ledger, LedgerRow

if TYPE_CHECKING:
    from baseten_magic.engine.batch.plan import BatchOptions


def _api_context(ledger: bool | Ledger, pricing: Pricing | None) -> CallContext:
    return CallContext(
        session=f"api-{os.getpid()}",
        source="api",
        pricing=pricing or pricing_from_env(),
        ledger=(Ledger() if ledger is True else ledger or None),
    )


def _function_tools(params: dict[str, Any]) -> list[Callable[..., Any]] | None:
    """Replace Python functions passed as `tools` by their JSON specs; return the functions."""
    tools = params.get("tools")
    if not tools or not all(callable(tool) for tool in tools):
        return None
    from baseten_magic.core.tools import tool_specs

    functions = list(tools)
    params["tools"] = tool_specs(functions)
    return functions


@dataclass(frozen=True)
class _ApiPlan:
    """What `chat()` and `achat()` decide before any I/O: the request, its context, the tools."""

    request: PreparedRequest
    context: CallContext
    functions: list[Callable[..., Any]] | None  # set only when the tool loop runs
    max_rounds: int
    on_delta: Callable[[Delta], None] | None

    def call(self) -> ChatCall:
        return ChatCall(self.request, self.context, on_delta=self.on_delta)

    def loop_options(self) -> dict[str, Any]:
        on_delta = self.on_delta
        return {
            "context": self.context,
            "max_rounds": self.max_rounds,
            "on_round_start": lambda _round: on_delta,
        }


def _plan(
    messages: Messages,
    model: str | None,
    *,
    stream: bool,
    thinking: bool | None,
    pricing: Pricing | None,
    ledger: bool | Ledger,
    on_delta: Callable[[Delta], None] | None,
    run_tools: bool,
    max_rounds: int,
    params: dict[str, Any],
) -> _ApiPlan:
    functions = _function_tools(params)
    request = prepare_request(
        messages, model=model, stream=stream, thinking=thinking, params=params
    )
    return _ApiPlan(
        request=request,
        context=_api_context(ledger, pricing),
        functions=functions if run_tools else None,
        max_rounds=max_rounds,
        on_delta=on_delta,
    )


def chat(
    messages: Messages,
    model: str | None = None,
    *,
    stream: bool = True,
    thinking: bool | None = None,
    pricing: Pricing | None = None,
    ledger: bool | Ledger = True,
    on_delta: Callable[[Delta], None] | None = None,
    run_tools: bool = False,
    max_rounds: int = 5,
    **params: Any,
) -> ChatResult:
    """Send one chat completion and return its result (blocking).

    `messages` is a plain string or a list of OpenAI-style message dicts; `model` a slug or an
    alias (`gpt-oss`, `deepseek`, `glm`, `kimi`, ...); `params` any of the 44 request
    parameters. `tools` may be plain Python functions; with `run_tools=True` their calls are
    executed and answered for up to `max_rounds` requests. Every request is priced and written
    to the cost ledger; the result's cost is the sum over the rounds.
    """
    plan = _plan(
        messages,
        model,
        stream=stream,
        thinking=thinking,
        pricing=pricing,
        ledger=ledger,
        on_delta=on_delta,
        run_tools=run_tools,
        max_rounds=max_rounds,
        params=params,
    )
    from baseten_magic.io.client import Client

    with Client() as client:
        if plan.functions:
            from baseten_magic.engine.toolloop import run_tool_loop

            outcome = run_tool_loop(
                plan.request, plan.functions, client=client, **plan.loop_options()
            )
            return replace(outcome.final, cost=outcome.cost)
        return plan.call().run(client)


async def achat(
    messages: Messages,
    model: str | None = None,
    *,
    stream: bool = True,
    thinking: bool | None = None,
    pricing: Pricing | None = None,
    ledger: bool | Ledger = True,
    on_delta: Callable[[Delta], None] | None = None,
    run_tools: bool = False,
    max_rounds: int = 5,
    **params: Any,
) -> ChatResult:
    """The awaitable twin of `chat()`, for code already on an event loop (`await achat(...)`)."""
    plan = _plan(
        messages,
        model,
        stream=stream,
        thinking=thinking,
        pricing=pricing,
        ledger=ledger,
        on_delta=on_delta,
        run_tools=run_tools,
        max_rounds=max_rounds,
        params=params,
    )
    from baseten_magic.io.client import AsyncClient

    async with AsyncClient() as client:
        if plan.functions:
            from baseten_magic.engine.toolloop import arun_tool_loop

            outcome = await arun_tool_loop(
                plan.request, plan.functions, client=client, **plan.loop_options()
            )
            return replace(outcome.final, cost=outcome.cost)
        return await plan.call().arun(client)


def ledger(path: str | os.PathLike[str] | None = None) -> list[LedgerRow]:
    """All rows of the cost ledger (at BASETEN_MAGIC_LEDGER unless `path` is given), newest last."""
    return Ledger(path).rows()


def _batch_options(
    *,
    model: str | None,
    system: str | None,
    schema: object | None,
    json: bool,
    concurrency: int | None,
    rpm: float | None,
    tpm: float | None,
    budget_usd: float | Decimal | str | None,
    cache: bool,
    on_error: Literal["keep", "raise"],
    dry_run: bool,
    timeout: float | None,
    pricing: Pricing | None,
    params: dict[str, Any],
) -> BatchOptions:
    from baseten_magic.engine.batch.plan import BatchOptions

    budget = None
    if budget_usd is not None:
        try:
            budget = Decimal(str(budget_usd))
        except ArithmeticError:
            budget = Decimal(-1)  # reported by BatchOptions in its one-line message
        if not budget.is_finite():
            budget = Decimal(-1)
    return BatchOptions(
        model=model,
        system=system,
        schema=schema,
        json=json,
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        budget_usd=budget,
        cache=cache,
        on_error=on_error,
        dry_run=dry_run,
        timeout=timeout,
        params=params,
        pricing=pricing,
    )


def map(
    prompt: str | Callable[[dict[str, Any]], Any],
    data: Any,
    *,
    model: str | None = None,
    system: str | None = None,
    schema: object | None = None,
    json: bool = False,
    concurrency: int | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    budget_usd: float | Decimal | str | None = None,
    cache: bool = True,
    on_error: Literal["keep", "raise"] = "keep",
    progress: bool | ProgressSink = True,
    dry_run: bool = False,
    timeout: float | None = None,
    pricing: Pricing | None = None,
    **params: Any,
) -> Any:
    """Send one chat completion per row of `data` and return the answers as a DataFrame.

    `prompt` is a `str.format` template over the row's fields (`"Classify: {review}"`; `{{`
    and `}}` are literal braces) or a function `row dict -> str | list of messages`. `data` is
    a pandas DataFrame, a Series or list of str (field `{value}`), a list of dicts, or a dask
    DataFrame (then a lazy dask DataFrame comes back). The result keeps `data`'s index and
    columns and adds `answer`, `error`, `cost_usd` (and the parsed fields with `schema=` or
    `json=True`); `out.attrs["baseten"]` is the run's summary. Rows answered before come from
    the cache at $0; `budget_usd` caps the spend; `rpm`/`tpm` are the account's limits (without
    them the client finds the limit from 429s). `dry_run=True` sends nothing and returns a
    `BatchEstimate`. Ctrl-C raises `BatchInterrupted` with the rows done on `.partial`.
    """
    options = _batch_options(
        model=model,
        system=system,
        schema=schema,
        json=json,
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        budget_usd=budget_usd,
        cache=cache,
        on_error=on_error,
        dry_run=dry_run,
        timeout=timeout,
        pricing=pricing,
        params=params,
    )
    from baseten_magic.engine.batch import runner

    if _is_dask_frame(data):
        return runner.dask_batch(prompt, data, options)
    from baseten_magic.render.progress import choose_sink

    total = len(data) if hasattr(data, "__len__") else 0
    sink = None if dry_run else choose_sink(progress, total)
    return runner.run_batch(prompt, data, options, sink=sink)


async def amap(
    prompt: str | Callable[[dict[str, Any]], Any],
    data: Any,
    *,
    model: str | None = None,
    system: str | None = None,
    schema: object | None = None,
    json: bool = False,
    concurrency: int | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    budget_usd: float | Decimal | str | None = None,
    cache: bool = True,
    on_error: Literal["keep", "raise"] = "keep",
    progress: bool | ProgressSink = False,
    dry_run: bool = False,
    timeout: float | None = None,
    pricing: Pricing | None = None,
    **params: Any,
) -> Any:
    """The awaitable twin of `map()` for code on an event loop (`await amap(...)`); a
    cancelled run raises CancelledError with the rows done on its `.partial`. Progress is off
    unless asked for (`progress=True`, or a sink)."""
    options = _batch_options(
        model=model,
        system=system,
        schema=schema,
        json=json,
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        budget_usd=budget_usd,
        cache=cache,
        on_error=on_error,
        dry_run=dry_run,
        timeout=timeout,
        pricing=pricing,
        params=params,
    )
    from baseten_magic.engine.batch import runner
    from baseten_magic.render.progress import choose_sink

    total = len(data) if hasattr(data, "__len__") else 0
    sink = None if dry_run else choose_sink(progress, total)
    return await runner.arun_batch(prompt, data, options, sink=sink)


def _is_dask_frame(data: Any) -> bool:
    module = type(data).__module__
    return module.startswith(("dask.", "dask_expr")) and hasattr(data, "map_partitions")
