"""The Python API: `chat()`, `achat()` and `ledger()`.

Rule: a thin front end over the engine. It plans a call (request, context, tools) without I/O,
then runs it through `engine.call.ChatCall` or the tool loop on a client opened for the call,
exactly as the magic and the panel do. `route=` (or `BASETEN_MAGIC_ROUTE`) picks Baseten's API
or the reseller's MCP tool; the client comes from `io.routes`, everything else is the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from baseten_magic.core.pricing import Pricing, pricing_from_env
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
from baseten_magic.io.routes import async_client_for, client_for, route_of


def _api_context(ledger: bool | Ledger, pricing: Pricing | None, route: str | None) -> CallContext:
    return CallContext(
        session=f"api-{os.getpid()}",
        source="api",
        pricing=pricing or pricing_from_env(),
        ledger=(Ledger() if ledger is True else ledger or None),
        route=route_of(route),
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
    route: str | None,
    params: dict[str, Any],
) -> _ApiPlan:
    functions = _function_tools(params)
    request = prepare_request(
        messages, model=model, stream=stream, thinking=thinking, params=params
    )
    return _ApiPlan(
        request=request,
        context=_api_context(ledger, pricing, route),
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
    route: str | None = None,
    timeout: float | None = None,
    **params: Any,
) -> ChatResult:
    """Send one chat completion and return its result (blocking).

    `messages` is a plain string or a list of OpenAI-style message dicts; `model` a slug or an
    alias (`gpt-oss`, `deepseek`, `glm`, `kimi`, ...); `params` any of the 44 request
    parameters. `tools` may be plain Python functions; with `run_tools=True` their calls are
    executed and answered for up to `max_rounds` requests. Every request is priced and written
    to the cost ledger; the result's cost is the sum over the rounds. `route` is `baseten`
    (Baseten's API, `BASETEN_API_KEY`) or `xpay` (the reseller's MCP tool, `XPAY_KEY`, $0.01
    a call, the answer arrives whole); None reads `BASETEN_MAGIC_ROUTE`. `timeout`: the longest wait
    in seconds for the next piece of the answer (default `BASETEN_MAGIC_TIMEOUT`, else 120).
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
        route=route,
        params=params,
    )
    with client_for(plan.context.route, timeout=timeout) as client:
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
    route: str | None = None,
    timeout: float | None = None,
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
        route=route,
        params=params,
    )
    async with async_client_for(plan.context.route, timeout=timeout) as client:
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
