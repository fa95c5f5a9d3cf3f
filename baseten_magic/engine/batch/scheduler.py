"""The batch scheduler: rows sent concurrently on one client, under every limit, in input order.

Rule: one coroutine dispatches; it sends a row only when the adaptive concurrency limit has
room, no Retry-After pause is running, the rpm/tpm buckets allow it and the row's worst-case
cost fits in the run's budget and in the shared one (`BatchOptions.budget`: a notebook
session's, or the process's), where it is held until the attempt settles. Each attempt
is one `ChatCall` with the client's own retries off, so every request sent is exactly one
ledger row (`source="batch"`) and every 429 reaches the limiter, on either route. 429s,
408/409, 5xx and dropped connections are retried per row with backoff (a 429's pause is
everyone's); other 4xx fail the row at once. Results land at the row's input
position. Cancelling the run stops dispatch at once: rows in flight are cancelled (their
ChatCall logs them `interrupted`) and nothing is sent afterwards.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass, replace
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

from baseten_magic.core import settings
from baseten_magic.core.budget import Reservation
from baseten_magic.core.errors import (
    APIConnectionError,
    APIStatusError,
    BasetenError,
    BudgetExceededError,
    OutputParseError,
    RateLimitError,
    StreamError,
)
from baseten_magic.core.limits import AdaptiveConcurrency, SpendCap, TokenBucket
from baseten_magic.core.pricing import format_usd
from baseten_magic.core.progress import BatchProgress
from baseten_magic.core.result import ChatResult
from baseten_magic.core.retry import RetryPolicy
from baseten_magic.core.structured import parse_reply
from baseten_magic.engine.batch.plan import BatchPlan, RowRequest
from baseten_magic.engine.call import CallContext, ChatCall

if TYPE_CHECKING:
    from baseten_magic.engine.call import AsyncChatClient as AsyncClient
    from baseten_magic.io.cache import ResponseCache

# Errors worth another attempt (a 429 has its own, larger allowance).
RETRY_POLICY = RetryPolicy(max_retries=5, initial_delay=0.25, max_delay=8.0)
MAX_THROTTLED_ATTEMPTS = 12
# Completion tokens assumed for the first tpm reservations, before any usage is known.
_FIRST_COMPLETION_GUESS = 256
_RETRYABLE_STATUSES = frozenset({408, 409})


@dataclass(frozen=True)
class RowOutcome:
    """What one row ended with."""

    answer: str | None
    error: str | None
    cost: Decimal = Decimal(0)
    parsed: dict[str, Any] | None = None
    cached: bool = False
    attempts: int = 0
    status: str = "ok"  # ok, error, interrupted, unsent


def parsed_fields(value: Any) -> dict[str, Any]:
    """A parsed reply as column values: a model or dataclass's fields, a dict's keys, else
    the value itself under `parsed`."""
    if hasattr(value, "model_dump") and callable(value.model_dump):
        value = value.model_dump()
    elif is_dataclass(value) and not isinstance(value, type):
        value = {name: getattr(value, name) for name in asdict(value)}
    if isinstance(value, dict):
        return {str(k): (v.value if isinstance(v, Enum) else v) for k, v in value.items()}
    return {"parsed": value}


class BatchRun:
    """One run of a plan: its counters (readable from any thread) and its results."""

    def __init__(
        self,
        plan: BatchPlan,
        context: CallContext,
        *,
        cache: ResponseCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.plan = plan
        self.context = context
        self.cache = cache
        self._clock = clock
        self._rng = rng or random.Random()
        options = plan.options
        concurrency = options.concurrency
        self.limiter = AdaptiveConcurrency(
            initial=float(concurrency) if concurrency else 4.0,
            maximum=float(concurrency) if concurrency else 64.0,
            slow_start=concurrency is None,
        )
        now = clock()
        self._rpm = None if options.rpm is None else TokenBucket.per_minute(options.rpm, now)
        self._tpm = None if options.tpm is None else TokenBucket.per_minute(options.tpm, now)
        self.spend = SpendCap(options.budget_usd)
        self.shared = options.budget  # the session's (or process's) Budget, if any
        self.outcomes: list[RowOutcome | None] = [None] * plan.total
        self.started = now
        self.finished_at: float | None = None
        self.done = 0
        self.cached = 0
        self.errors = 0
        self.requests = 0
        self.rate_limited = 0
        self.first_failure: str | None = None
        self._completion_tokens = 0
        self._answered = 0
        self._cut: set[int] = set()  # rows whose request was in flight when the run stopped
        self._row_cost: dict[int, Decimal] = {}  # what each row's attempts cost so far
        self._ready: deque[tuple[RowRequest, int]] = deque()
        self._waiting = 0  # rows sleeping before a retry
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None

    # -- reading from any thread ----------------------------------------------------------

    def progress(self) -> BatchProgress:
        """A snapshot of the counters."""
        end = self.finished_at if self.finished_at is not None else self._clock()
        return BatchProgress(
            total=self.plan.total,
            done=self.done,
            cached=self.cached,
            errors=self.errors,
            requests=self.requests,
            rate_limited=self.rate_limited,
            in_flight=self.limiter.in_flight,
            concurrency=self.limiter.allowed,
            cost_usd=self.spend.spent,
            elapsed_s=end - self.started,
            finished=self.finished_at is not None,
        )

    def summary(self) -> dict[str, Any]:
        """The run's summary (the frame's `attrs["baseten"]`)."""
        progress = self.progress()
        return {
            "rows": progress.total,
            "done": progress.done,
            "requests": progress.requests,
            "cached": progress.cached,
            "errors": progress.errors,
            "rate_limited": progress.rate_limited,
            "cost_usd": float(progress.cost_usd),
            "wall_s": round(progress.elapsed_s, 3),
            "final_concurrency": progress.concurrency,
            "budget_usd": None if self.spend.cap is None else float(self.spend.cap),
        }

    def summary_line(self) -> str:
        """One line that stays in the saved notebook."""
        p = self.progress()
        parts = [
            f"{p.done}/{p.total} rows",
            f"{p.requests} requests",
            f"{p.cached} cached",
            f"{p.errors} errors",
            f"{p.rate_limited} rate-limited",
            format_usd(p.cost_usd),
            f"{p.elapsed_s:.1f} s",
        ]
        return "baseten map: " + ", ".join(parts)

    # -- the run -------------------------------------------------------------------------

    def _finish_row(self, row: RowRequest, outcome: RowOutcome) -> None:
        self.outcomes[row.position] = outcome
        self.done += 1
        if outcome.cached:
            self.cached += 1
        if outcome.error is not None:
            self.errors += 1
            if self.first_failure is None:
                self.first_failure = outcome.error

    def _stopping(self) -> bool:
        return self.plan.options.on_error == "raise" and self.first_failure is not None

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _outcome(self, result: ChatResult, *, cached: bool, attempts: int) -> RowOutcome:
        options = self.plan.options
        if options.schema is None and not options.json:
            return RowOutcome(result.content, None, result.cost, None, cached, attempts)
        try:
            value = parse_reply(result.content, options.schema)
        except OutputParseError as exc:
            return RowOutcome(
                result.content, settings.error_line(exc), result.cost, None, cached, attempts
            )
        return RowOutcome(result.content, None, result.cost, parsed_fields(value), cached, attempts)

    def lookup_cache(self) -> list[RowRequest]:
        """Finish the rows the cache answers (and the rows whose prompt failed); the rest."""
        rows = self.plan.rows
        hits = {}
        if self.cache is not None:
            hits = self.cache.get_many(r.key for r in rows if r.request is not None)
        todo: list[RowRequest] = []
        for row in rows:
            if row.request is None:
                self._finish_row(row, RowOutcome(None, row.error, status="error"))
            elif row.key in hits:
                self._finish_row(row, self._outcome(hits[row.key].result, cached=True, attempts=0))
            else:
                todo.append(row)
        return todo

    async def run(self, client: AsyncClient) -> None:
        """Send every row not answered yet; returns when all are done, or raises on cancel."""
        self._wake = asyncio.Event()
        try:
            todo = self.lookup_cache()
            self._ready.extend((row, 0) for row in todo)
            await self._dispatch(client)
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        except BaseException:
            # Cancelled (an interrupt): stop at once; rows in flight are logged `interrupted`.
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            raise
        finally:
            self._mark_unsent()
            self.finished_at = self._clock()

    def _mark_unsent(self) -> None:
        for row in self.plan.rows:
            if self.outcomes[row.position] is not None:
                continue
            if row.position in self._cut:
                reason, status = (
                    "interrupted while its request was in flight (logged as interrupted); "
                    "re-run to resume from the cache",
                    "interrupted",
                )
            elif self._stopping():
                reason = "not sent: the batch stopped at the first failure (on_error='raise')"
                status = "unsent"
            else:
                reason = (
                    "not sent: the run was interrupted before this row; re-run to resume "
                    "from the cache"
                )
                status = "unsent"
            cost = self._row_cost.get(row.position, Decimal(0))
            self.outcomes[row.position] = RowOutcome(None, reason, cost, status=status)

    async def _dispatch(self, client: AsyncClient) -> None:
        assert self._wake is not None
        limiter = self.limiter
        while self._ready or self._tasks or self._waiting:
            if self._stopping():
                self._ready.clear()
                if not self._tasks and not self._waiting:
                    return
            if not self._ready or not limiter.has_room():
                self._wake.clear()
                await self._wake.wait()
                continue
            pause = limiter.delay(self._clock())
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            row, attempt = self._ready[0]
            reserve = row.bounds.high
            if not self.spend.try_reserve(reserve):
                if self._tasks or self._waiting:
                    self._wake.clear()
                    await self._wake.wait()  # a settlement may free enough
                    continue
                self._ready.popleft()
                self._finish_row(row, self._over_budget(reserve))
                continue
            try:
                held = None if self.shared is None else self.shared.reserve(reserve)
            except BudgetExceededError as exc:
                self.spend.settle(reserve, Decimal(0))
                if self._tasks or self._waiting:
                    self._wake.clear()
                    await self._wake.wait()  # a settlement may free enough
                    continue
                self._ready.popleft()
                self._finish_row(row, self._over_shared_budget(exc))
                continue
            self._ready.popleft()
            wait, estimated = self._reserve_rate(row)
            wait = max(wait, limiter.pace(self._clock()))
            if wait > 0:
                try:
                    await asyncio.sleep(wait)
                except BaseException:
                    self.spend.settle(reserve, Decimal(0))
                    self._release(held, Decimal(0))
                    raise
            ticket = limiter.on_send()
            task = asyncio.ensure_future(
                self._attempt(
                    client,
                    row=row,
                    attempt=attempt,
                    ticket=ticket,
                    reserve=reserve,
                    estimated=estimated,
                    held=held,
                )
            )
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # The set shrinks only here, after the task ended, so wake the dispatcher again.
        self._tasks.discard(task)
        self._notify()

    def _over_budget(self, reserve: Decimal) -> RowOutcome:
        cap = self.spend.cap
        assert cap is not None
        return RowOutcome(
            None,
            f"not sent: the budget of {format_usd(cap)} (budget_usd) would not cover this row's "
            f"worst case of {format_usd(reserve)} after {format_usd(self.spend.spent)} spent; "
            "raise budget_usd or lower max_tokens, then re-run (answered rows come from the cache)",
            status="unsent",
        )

    @staticmethod
    def _over_shared_budget(exc: BudgetExceededError) -> RowOutcome:
        # The Budget's own line names the cap, the spend and how to raise it.
        return RowOutcome(None, f"not sent: {settings.error_line(exc)}", status="unsent")

    def _release(self, held: Reservation | None, cost: Decimal) -> None:
        if held is not None and self.shared is not None:
            self.shared.settle(held, cost)

    def _estimated_tokens(self, row: RowRequest) -> float:
        assert row.request is not None
        from baseten_magic.core.limits import estimate_prompt_tokens

        body = row.request.body
        if body.get("max_tokens"):
            completion = float(body["max_tokens"])
        elif self._answered:
            completion = self._completion_tokens / self._answered
        else:
            completion = float(_FIRST_COMPLETION_GUESS)
        # The prompt estimate is generous (for budgets); halve it for pacing.
        return estimate_prompt_tokens(body["messages"]) / 2 + completion

    def _reserve_rate(self, row: RowRequest) -> tuple[float, float]:
        """Seconds to wait for the rpm/tpm buckets, and the tokens reserved from tpm."""
        now = self._clock()
        wait = estimated = 0.0
        if self._rpm is not None:
            wait = max(wait, self._rpm.reserve(1, now))
        if self._tpm is not None:
            estimated = self._estimated_tokens(row)
            wait = max(wait, self._tpm.reserve(estimated, now))
        return wait, estimated

    async def _attempt(
        self,
        client: AsyncClient,
        *,
        row: RowRequest,
        attempt: int,
        ticket: int,
        reserve: Decimal,
        estimated: float,
        held: Reservation | None = None,
    ) -> None:
        assert row.request is not None
        call = ChatCall(row.request, self.context, clock=self._clock)
        self.requests += 1
        retry_in: float | None = None
        try:
            result = await call.arun(client)
        except asyncio.CancelledError:
            self._cut.add(row.position)
            self.limiter.on_other(ticket)
            self._settle(row, call, reserve, estimated, held)
            raise
        except RateLimitError as exc:
            self.rate_limited += 1
            self.limiter.on_throttle(ticket, self._clock(), exc.retry_after)
            self._settle(row, call, reserve, estimated, held)
            if attempt + 1 < MAX_THROTTLED_ATTEMPTS:
                # The limiter's pause already holds everyone back when the server said how long.
                retry_in = 0.0 if exc.retry_after else RETRY_POLICY.delay(attempt, None, self._rng)
            else:
                self._fail(row, exc, call, attempt)
        except BasetenError as exc:
            self.limiter.on_other(ticket)
            self._settle(row, call, reserve, estimated, held)
            if self._retryable(exc) and attempt < RETRY_POLICY.max_retries:
                retry_in = RETRY_POLICY.delay(attempt, None, self._rng)
            else:
                self._fail(row, exc, call, attempt)
        except Exception as exc:  # not the API's: the row fails, the run goes on
            self.limiter.on_other(ticket)
            self._settle(row, call, reserve, estimated, held)
            self._fail(row, exc, call, attempt)
        else:
            self.limiter.on_success(ticket, self._clock())
            self._settle(row, call, reserve, estimated, held)
            if result.usage is not None:
                self._completion_tokens += result.usage.completion_tokens
                self._answered += 1
            if self.cache is not None:
                self.cache.put(row.key, result)
            outcome = self._outcome(result, cached=False, attempts=attempt + 1)
            cost = self._row_cost.get(row.position, Decimal(0))
            self._finish_row(row, replace(outcome, cost=cost))
        finally:
            self._notify()
        if retry_in is not None:
            await self._retry_later(row, attempt + 1, retry_in)

    async def _retry_later(self, row: RowRequest, attempt: int, delay: float) -> None:
        self._waiting += 1
        try:
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            self._waiting -= 1
        self._ready.appendleft((row, attempt))  # retries go first: they are the oldest rows
        self._notify()

    @staticmethod
    def _retryable(exc: BasetenError) -> bool:
        if isinstance(exc, APIStatusError):
            return exc.status_code in _RETRYABLE_STATUSES or exc.status_code >= 500
        return isinstance(exc, APIConnectionError | StreamError)

    def _settle(
        self,
        row: RowRequest,
        call: ChatCall,
        reserve: Decimal,
        estimated: float,
        held: Reservation | None = None,
    ) -> None:
        result = call.result
        cost = Decimal(0) if result is None else result.cost
        self.spend.settle(reserve, cost)
        self._release(held, cost)
        self._row_cost[row.position] = self._row_cost.get(row.position, Decimal(0)) + cost
        if self._tpm is not None and result is not None:
            used = 0 if result.usage is None else result.usage.total_tokens
            self._tpm.adjust(estimated - used, self._clock())

    def _fail(self, row: RowRequest, exc: BaseException, call: ChatCall, attempt: int) -> None:
        cost = self._row_cost.get(row.position, Decimal(0))
        self._finish_row(
            row,
            RowOutcome(None, settings.error_line(exc), cost, attempts=attempt + 1, status="error"),
        )
