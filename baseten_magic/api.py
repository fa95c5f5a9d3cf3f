"""The Python API: `chat()`, `achat()`, `ledger()`, `history()`, and `map()` / `amap()` for
prompts over data.

Rule: a thin front end over the engine. It plans a call (request, context, tools) without I/O,
then runs it through `engine.call.ChatCall` or the tool loop on a client opened for the call,
exactly as the magic and the panel do. `route=` (or `BASETEN_MAGIC_ROUTE`) picks Baseten's API
or the reseller's MCP tool; the client comes from `io.routes`, everything else is the same.

In a shell where `%load_ext baseten_magic` ran, a call belongs to that notebook's session: its
ledger rows carry the session's id (so `ledger(session="current")` has them) and it spends from
the session's budget, beside the cells and the panel. Elsewhere it spends from the process's
budget (`core.budget.process_budget`, capped by `BASETEN_MAGIC_BUDGET`) under the id
`api-<pid>`.

`map()` plans a batch and hands it to the engine's runner with a progress sink from
`render.progress`; pandas loads only when `map()` is called.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, overload

from baseten_magic.core import transcript
from baseten_magic.core.budget import Budget, budget_from_env, process_budget
from baseten_magic.core.errors import ConfigurationError, ParameterError
from baseten_magic.core.pricing import Pricing, pricing_from_env
from baseten_magic.core.progress import ProgressSink
from baseten_magic.core.result import SOURCES, ChatResult
from baseten_magic.core.stream import Delta
from baseten_magic.engine.call import (
    CallContext,
    ChatCall,
    Messages,
    PreparedRequest,
    prepare_request,
)
from baseten_magic.engine.session import Session, registered_session
from baseten_magic.io.ledger import Ledger, LedgerRow
from baseten_magic.io.routes import async_client_for, client_for, route_of
from baseten_magic.render.result import register_result_display

if TYPE_CHECKING:
    import pandas as pd

if TYPE_CHECKING:
    from baseten_magic.engine.batch.plan import BatchOptions


def shell_session() -> Session | None:
    """The session of the loaded extension in this process's IPython shell, if there is one."""
    if "IPython" not in sys.modules:  # no shell can be running without IPython imported
        return None
    from IPython.core.interactiveshell import InteractiveShell

    if not InteractiveShell.initialized():
        return None
    return registered_session(InteractiveShell.instance())


def _show_results_in_shell() -> None:
    """In a shell without the extension loaded, results still display as a cell shows them."""
    from IPython.core.interactiveshell import InteractiveShell

    if InteractiveShell.initialized():
        register_result_display(InteractiveShell.instance())


def _api_budget(session: Session | None) -> Budget:
    if session is not None:
        return session.budget
    budget = process_budget()
    budget.cap = budget_from_env()  # read at call time, like every other variable
    return budget


def _api_context(ledger: bool | Ledger, pricing: Pricing | None, route: str | None) -> CallContext:
    session = shell_session()
    if session is None and "IPython" in sys.modules:
        _show_results_in_shell()
    return CallContext(
        session=f"api-{os.getpid()}" if session is None else session.id,
        source="api",
        pricing=pricing or pricing_from_env(),
        ledger=(Ledger() if ledger is True else ledger or None),
        route=route_of(route),
        budget=_api_budget(session),
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


def _session_id(session: str | Session | None) -> str | None:
    if session is None or isinstance(session, Session):
        return None if session is None else session.id
    if session != "current":
        return session
    found = shell_session()
    return f"api-{os.getpid()}" if found is None else found.id


def _since(since: datetime | timedelta | str | None) -> datetime | None:
    if since is None:
        return None
    if isinstance(since, timedelta):
        return datetime.now(UTC) - since
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since)
        except ValueError:
            raise ParameterError(
                f"since must be a datetime, a timedelta or an ISO date, got {since!r}; "
                "pass e.g. since='2026-12-01' or since=timedelta(hours=1)"
            ) from None
    # A time without a zone is read as UTC: the ledger's clock.
    return since if since.tzinfo is not None else since.replace(tzinfo=UTC)


def _sources(source: str | Iterable[str] | None) -> list[str] | None:
    if source is None:
        return None
    wanted = [source] if isinstance(source, str) else list(source)
    unknown = [name for name in wanted if name not in SOURCES]
    if unknown:
        raise ParameterError(
            f"source must be one of {', '.join(SOURCES)}, got {unknown[0]!r}; "
            "pass e.g. source='magic' or source=['magic', 'panel']"
        )
    return wanted


@overload
def ledger(
    path: str | os.PathLike[str] | None = None,
    *,
    as_frame: Literal[False] = False,
    session: str | Session | None = None,
    since: datetime | timedelta | str | None = None,
    source: str | Iterable[str] | None = None,
) -> list[LedgerRow]: ...


@overload
def ledger(
    path: str | os.PathLike[str] | None = None,
    *,
    as_frame: Literal[True],
    session: str | Session | None = None,
    since: datetime | timedelta | str | None = None,
    source: str | Iterable[str] | None = None,
) -> pd.DataFrame: ...


def ledger(
    path: str | os.PathLike[str] | None = None,
    *,
    as_frame: bool = False,
    session: str | Session | None = None,
    since: datetime | timedelta | str | None = None,
    source: str | Iterable[str] | None = None,
) -> list[LedgerRow] | pd.DataFrame:
    """The cost ledger's rows (at BASETEN_MAGIC_LEDGER unless `path` is given), newest last.

    Every kernel on the machine logs into the one file; select rows with `session` (an id, a
    `Session`, or `"current"`: this notebook's session, or this process's `chat()` calls
    outside a notebook), `since` (a datetime, an ISO date or time, read as UTC without a zone,
    or a timedelta back from now) and `source` (`magic`, `panel`, `api`, or a list of them).
    `as_frame=True` returns a pandas DataFrame with typed columns (`ts` UTC datetimes,
    `cost_usd` float, token counts and `cell` nullable Int64); pandas comes with
    `pip install 'baseten_magic[batch]'`.
    """
    rows = Ledger(path).rows(
        session=_session_id(session), since=_since(since), sources=_sources(source)
    )
    if not as_frame:
        return rows
    from baseten_magic.io.ledger_frame import rows_frame

    return rows_frame(rows)


def _history_session(session: Session | None) -> Session:
    found = session or shell_session()
    if found is None:
        raise ConfigurationError(
            "history() reads a notebook's conversation, found no loaded baseten_magic session; "
            "run %load_ext baseten_magic and a %%baseten cell first, or pass session=..."
        )
    return found


def history(
    format: Literal["messages", "turns", "markdown", "json"] = "messages",
    *,
    session: Session | None = None,
) -> Any:
    """The conversation the next `%%baseten` cell will send before its own messages.

    `messages`: a list of `{"role", "content"}` dicts (ready for `chat()`); `turns`: a list of
    `Turn`s with the cell each came from (`In [n]`); `markdown` / `json`: an export as text,
    which `read_history()` turns back into the same turns. The session is this notebook's.
    """
    turns = _history_session(session).turns()
    if format == "messages":
        return [turn.message() for turn in turns]
    if format == "turns":
        return turns
    if format == "markdown":
        return transcript.to_markdown(turns)
    if format == "json":
        return transcript.to_json(turns)
    raise ParameterError(
        f"format must be messages, turns, markdown or json, got {format!r}; "
        "pass e.g. history('markdown')"
    )


def read_history(text: str) -> list[transcript.Turn]:
    """The turns of a history export (Markdown or JSON, as `history()` or `%baseten history`
    wrote it); `[t.message() for t in turns]` gives messages to send again."""
    return transcript.read(text)


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
    route: str | None,
    params: dict[str, Any],
) -> BatchOptions:
    from baseten_magic.engine.batch.plan import BatchOptions

    # In a notebook the run belongs to its session (ledger rows, the session's budget), like
    # chat(); elsewhere to the process.
    session = shell_session()

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
        session=None if session is None else session.id,
        route=route_of(route),
        budget=_api_budget(session),
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
    route: str | None = None,
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
    In a notebook with the extension loaded the run also spends from the session's budget
    (`BasetenMagics.budget_usd`, else `BASETEN_MAGIC_BUDGET`), elsewhere from the process's.
    `route`: `baseten` or `xpay` ($0.01 a call, `XPAY_KEY`); None reads `BASETEN_MAGIC_ROUTE`.
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
        route=route,
        params=params,
    )
    from baseten_magic.engine.batch import runner

    if _is_dask_frame(data):
        return runner.dask_batch(prompt, data, options)
    return runner.run_batch(prompt, data, options, sink=_progress_sink(progress, data, dry_run))


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
    route: str | None = None,
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
        route=route,
        params=params,
    )
    from baseten_magic.engine.batch import runner

    sink = _progress_sink(progress, data, dry_run)
    return await runner.arun_batch(prompt, data, options, sink=sink)


def _progress_sink(progress: bool | ProgressSink, data: Any, dry_run: bool) -> ProgressSink | None:
    """Where a run's progress goes: nowhere for a dry run (nothing is sent), else as asked."""
    if dry_run:
        return None
    from baseten_magic.render.progress import choose_sink

    return choose_sink(progress, len(data) if hasattr(data, "__len__") else 0)


def _is_dask_frame(data: Any) -> bool:
    module = type(data).__module__
    return module.startswith(("dask.", "dask_expr")) and hasattr(data, "map_partitions")
