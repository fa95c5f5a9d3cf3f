"""Running a batch: on the caller's loop (`arun_batch`), blocking on a worker thread
(`run_batch`), or over a dask DataFrame's partitions (`dask_batch`).

Rule: one scheduler, three ways in. The blocking form runs the scheduler on a thread with its
own event loop (so it works in a notebook cell whose loop is already running, a script and a
terminal, with no nested loop) while the calling thread polls the run for progress at a bounded
rate; a KeyboardInterrupt there cancels the run, waits until the rows in flight are logged
`interrupted`, and raises `BatchInterrupted` with the rows done so far. Each run opens one
client (connection reuse) for its route: on `baseten` an AsyncClient with its own retries off
(the scheduler retries), on `xpay` the reseller's AsyncXPayClient (one MCP session for the
run; it never retries on its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from baseten_magic.core.budget import Budget
from baseten_magic.core.errors import BatchError, BatchInterrupted
from baseten_magic.core.pricing import format_usd
from baseten_magic.core.progress import ProgressSink
from baseten_magic.core.retry import RetryPolicy
from baseten_magic.engine.batch.frame import Table, result_frame, to_table
from baseten_magic.engine.batch.plan import BatchOptions, BatchPlan, Prompt, plan_batch
from baseten_magic.engine.batch.scheduler import BatchRun
from baseten_magic.engine.call import CallContext
from baseten_magic.io.cache import ResponseCache
from baseten_magic.io.ledger import Ledger

if TYPE_CHECKING:
    import pandas as pd

    from baseten_magic.io.client import AsyncClient
    from baseten_magic.io.xpay import AsyncXPayClient

# How often the blocking form wakes to paint progress (and to notice an interrupt).
POLL_S = 0.2


@dataclass(frozen=True)
class BatchEstimate:
    """What a run would send and cost (`dry_run=True`); nothing was sent."""

    rows: int
    cached: int
    requests: int
    cost_low_usd: Decimal
    cost_high_usd: Decimal
    unbuildable: int = 0

    def __str__(self) -> str:
        return (
            f"dry run: {self.rows} rows, {self.cached} cached, {self.requests} requests to send, "
            f"estimated cost {format_usd(self.cost_low_usd)} to {format_usd(self.cost_high_usd)}"
            " (nothing sent)"
        )


def _context(options: BatchOptions, plan: BatchPlan) -> CallContext:
    return CallContext(
        session=options.session or f"api-{os.getpid()}",
        source="batch",
        cell=options.cell,
        pricing=plan.pricing,
        ledger=options.ledger if options.ledger is not None else Ledger(),
        route=plan.route,
    )


def _open_cache(options: BatchOptions) -> ResponseCache | None:
    return ResponseCache() if options.cache else None


def plan_of(prompt: Prompt, data: Any, options: BatchOptions) -> tuple[Table, BatchPlan]:
    """The input as a Table and the planned run (raises ParameterError, sends nothing)."""
    table = to_table(data)
    return table, plan_batch(prompt, table.records, table.columns, options)


def estimate(plan: BatchPlan, cache: ResponseCache | None) -> BatchEstimate:
    """The request count and cost range of a plan, the cache consulted."""
    buildable = [row for row in plan.rows if row.request is not None]
    hits = set() if cache is None else set(cache.get_many(r.key for r in buildable))
    todo = [row for row in buildable if row.key not in hits]
    return BatchEstimate(
        rows=plan.total,
        cached=len(buildable) - len(todo),
        requests=len(todo),
        cost_low_usd=sum((r.bounds.low for r in todo), Decimal(0)),
        cost_high_usd=sum((r.bounds.high for r in todo), Decimal(0)),
        unbuildable=plan.total - len(buildable),
    )


def _frame(run: BatchRun, table: Table, *, infer_json: bool = True) -> pd.DataFrame:
    options = run.plan.options
    outcomes = [o for o in run.outcomes if o is not None]
    return result_frame(
        table,
        outcomes,
        schema=options.schema,
        json_mode=options.json,
        summary=run.summary(),
        infer_json=infer_json,
    )


def _client_for(run: BatchRun) -> AsyncClient | AsyncXPayClient:
    options = run.plan.options
    if run.plan.route == "xpay":
        from baseten_magic.io.routes import async_client_for

        return async_client_for("xpay", timeout=options.timeout)
    from baseten_magic.io.client import AsyncClient

    return AsyncClient(
        base_url=options.base_url,
        retry=RetryPolicy(max_retries=0),  # the scheduler retries, with the limiter's knowledge
        timeout=options.timeout,  # None: BASETEN_MAGIC_TIMEOUT, else the default
    )


async def _drive(run: BatchRun) -> None:
    client = _client_for(run)
    try:
        await run.run(client)
    finally:
        await client.aclose()


def _check_failure(run: BatchRun, frame: pd.DataFrame) -> pd.DataFrame:
    if run.plan.options.on_error == "raise" and run.first_failure is not None:
        raise BatchError(
            f"a row failed and on_error='raise' stopped the batch: {run.first_failure} "
            "(the rows done so far are on this exception's .partial)",
            partial=frame,
        )
    return frame


async def arun_batch(
    prompt: Prompt,
    data: Any,
    options: BatchOptions,
    *,
    sink: ProgressSink | None = None,
) -> pd.DataFrame | BatchEstimate:
    """Run a batch on the current event loop; cancelling it keeps the partial frame on the
    CancelledError's `.partial`."""
    table, plan = plan_of(prompt, data, options)
    cache = _open_cache(options)
    try:
        if options.dry_run:
            return estimate(plan, cache)
        run = BatchRun(plan, _context(options, plan), cache=cache)
        painter = None if sink is None else asyncio.ensure_future(_paint(run, sink))
        try:
            await _drive(run)
        except asyncio.CancelledError as exc:
            exc.partial = _frame(run, table)  # type: ignore[attr-defined]
            raise
        finally:
            if painter is not None:
                painter.cancel()
            if sink is not None:
                sink.close(run.progress(), run.summary_line())
        return _check_failure(run, _frame(run, table))
    finally:
        if cache is not None:
            cache.close()


async def _paint(run: BatchRun, sink: ProgressSink) -> None:
    while True:
        sink.update(run.progress())
        await asyncio.sleep(POLL_S)


def run_batch(
    prompt: Prompt,
    data: Any,
    options: BatchOptions,
    *,
    sink: ProgressSink | None = None,
    infer_json: bool = True,
) -> pd.DataFrame | BatchEstimate:
    """Run a batch to the end, blocking; see the module docstring for interrupts."""
    table, plan = plan_of(prompt, data, options)
    cache = _open_cache(options)
    try:
        if options.dry_run:
            return estimate(plan, cache)
        run = BatchRun(plan, _context(options, plan), cache=cache)
        worker = _Worker(lambda: _drive(run))
        try:
            worker.start()
            while not worker.wait(POLL_S):
                if sink is not None:
                    sink.update(run.progress())
        except KeyboardInterrupt:
            worker.cancel()
            frame = _frame(run, table, infer_json=infer_json)
            if sink is not None:
                sink.close(run.progress(), run.summary_line() + " (interrupted)")
            raise BatchInterrupted(
                f"map() interrupted after {run.done} of {plan.total} rows; the rows done are on "
                "this exception's .partial, and a re-run sends only the missing rows",
                partial=frame,
            ) from None
        if sink is not None:
            sink.close(run.progress(), run.summary_line())
        worker.raise_failure()
        return _check_failure(run, _frame(run, table, infer_json=infer_json))
    finally:
        if cache is not None:
            cache.close()


class _Worker:
    """A thread running one coroutine on its own event loop; cancellable from outside."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[Any] | None = None
        self._ready = threading.Event()
        # Waited on instead of Thread.join: on Python 3.11 a KeyboardInterrupt inside join()
        # can mark a running thread as stopped (bpo-45274's fix releases its tstate lock).
        self._done = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="baseten-map", daemon=True)

    def _main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            self._task = loop.create_task(self._factory())
            self._ready.set()
            loop.run_until_complete(self._task)
        except BaseException as exc:  # handed to the calling thread
            self._failure = exc
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._done.set()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def wait(self, timeout: float) -> bool:
        """True when the coroutine has ended."""
        return self._done.wait(timeout)

    def cancel(self) -> None:
        """Cancel the coroutine and wait until it has cleaned up (interrupts are held off)."""
        task = self._task
        if task is not None and not self._loop.is_closed():
            # The loop may close in between: then there is nothing left to cancel.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(task.cancel)
        while True:
            try:
                if self._done.wait(1.0):
                    return
            except KeyboardInterrupt:  # a second Ctrl-C must not skip the ledger rows
                continue

    def raise_failure(self) -> None:
        if self._failure is not None and not isinstance(self._failure, asyncio.CancelledError):
            raise self._failure


# -- dask -------------------------------------------------------------------------------------


def _share(value: float | None, slots: int) -> float | None:
    return None if value is None else value / slots


def _parallel_slots(npartitions: int) -> int:
    """Partitions that may run at once: the cluster's threads (the local count without one)."""
    slots = os.cpu_count() or 1
    try:
        from distributed import get_client

        client: Any = get_client()
        slots = sum(client.nthreads().values())
    except (ImportError, ValueError):
        pass
    return max(1, min(slots, npartitions))


def _room(budget: Budget | None) -> Decimal | None:
    """What a shared budget still allows (None without a cap)."""
    if budget is None or budget.cap is None:
        return None
    return max(Decimal(0), budget.cap - budget.spent - budget.held)


def _run_partition(part: pd.DataFrame, prompt: Prompt, options: BatchOptions) -> pd.DataFrame:
    """One partition, on a worker: the same engine, its progress silent."""
    frame = run_batch(prompt, part, options, infer_json=False)
    assert not isinstance(frame, BatchEstimate)
    return frame


def dask_batch(prompt: Prompt, data: Any, options: BatchOptions) -> Any:
    """A lazy dask DataFrame: each partition runs the batch on the worker that computes it.

    The limits are shared out: rpm, tpm, concurrency and budget are divided by the number of
    partitions that can run at once, so the cluster stays under them together; with no limits
    each partition's adaptive limiter finds its share from the 429s it gets."""
    from baseten_magic.core import settings

    if options.dry_run:
        return run_batch(prompt, data.compute(), options)
    table, _ = plan_of(prompt, data._meta, options)  # checks the template against the columns
    slots = _parallel_slots(data.npartitions)
    concurrency = options.concurrency
    budget_usd = options.budget_usd
    room = _room(options.budget)
    if room is not None:
        # A Budget (its lock) does not travel to workers: the room left under the shared cap
        # becomes part of the run's own cap instead.
        budget_usd = room if budget_usd is None else min(budget_usd, room)
    shared = replace(
        options,
        budget=None,
        ledger=None,
        rpm=_share(options.rpm, slots),
        tpm=_share(options.tpm, slots),
        concurrency=None if concurrency is None else max(1, concurrency // slots),
        budget_usd=None if budget_usd is None else budget_usd / data.npartitions,
        # Workers read the key from their own environment; the endpoint is fixed here so the
        # whole graph talks to one server (and shares one cache scope).
        base_url=options.base_url or settings.base_url(),
    )
    meta = result_frame(
        table, [], schema=options.schema, json_mode=options.json, summary={}, infer_json=False
    )
    return data.map_partitions(_run_partition, prompt, shared, meta=meta)
