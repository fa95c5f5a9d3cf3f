"""The one place a call is run, priced and written to the ledger: `ChatCall`.

Rule: every call that was attempted ends in exactly one ledger row — `ok`, `error` or
`interrupted` — whatever happened (HTTP error, cut stream, KeyboardInterrupt, task
cancellation), and however many times the user presses interrupt: once the first interrupt is
caught, stopping the reader and writing the row run with further SIGINTs deferred (re-raised as
one KeyboardInterrupt afterwards). An interrupt also sets the call's cancel event, so a reader
thread in a retry wait never sends again. The magic, the widget panel and `chat()` all go
through `ChatCall`, so they price and log identically; `ChatCall.run` and `ChatCall.arun` are
thin loops over shared steps.
With a `Budget` on the context, a call holds its worst-case cost before anything is sent (a
call that does not fit raises `BudgetExceededError`, sends nothing and writes no row: it was
never attempted) and settles it with the real cost when it ends, whatever happened.
A call runs on any client with the shape of `SyncChatClient` / `AsyncChatClient` (the HTTP
client, or the xpay route's MCP client); the context's route decides the pricing (`xpay`: a
flat $0.01 per answered call) and is written to the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import FrameType
from typing import Any, NamedTuple, Protocol

from baseten_magic.core import settings
from baseten_magic.core.budget import Budget, Reservation, worst_case_cost
from baseten_magic.core.catalog import Catalog, ModelInfo, default_catalog
from baseten_magic.core.errors import BasetenError
from baseten_magic.core.params import build_request
from baseten_magic.core.pricing import Pricing, cost_of, pricing_for_route, pricing_from_env
from baseten_magic.core.result import ChatResult, Source, Status
from baseten_magic.core.settings import Route
from baseten_magic.core.stream import Delta, StreamState
from baseten_magic.io.ledger import Ledger, LedgerRow

DEFAULT_MODEL = "openai/gpt-oss-120b"

Messages = str | Sequence[Mapping[str, Any]]


class Pacer(Protocol):
    """What paces a live display: when it next wants to paint, and the paint itself."""

    def next_deadline(self) -> float | None: ...

    def tick(self) -> None: ...


class SyncChatStream(Protocol):
    """What `ChatCall.run` reads from `stream()`: the state, deltas, and a way to stop."""

    state: StreamState

    def __iter__(self) -> Iterator[Delta]: ...

    def close(self) -> None: ...


class SyncChatClient(Protocol):
    """The blocking client a call runs on (`io.client.Client`, `io.xpay.XPayClient`)."""

    def stream(
        self,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> SyncChatStream: ...

    def complete(
        self,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> StreamState: ...

    def interrupted(self) -> None: ...


class AsyncChatStream(Protocol):
    """What `ChatCall.arun` reads from `stream()`."""

    state: StreamState

    def __aiter__(self) -> AsyncIterator[Delta]: ...


class AsyncChatClient(Protocol):
    """The awaitable client a call runs on (`io.client.AsyncClient`, `io.xpay.AsyncXPayClient`)."""

    async def stream(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> AsyncChatStream: ...

    async def complete(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> StreamState: ...

    async def interrupted(self) -> None: ...


class _Done(NamedTuple):
    """The reader thread's last word: None, or the exception that ended the call."""

    error: BaseException | None


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request body and the catalog entry of its model."""

    body: dict[str, Any]
    model: ModelInfo

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


def prepare_request(
    messages: Messages,
    *,
    model: str | None = None,
    stream: bool = True,
    thinking: bool | None = None,
    params: Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> PreparedRequest:
    """Validate everything and build the request body; raises ParameterError, sends nothing."""
    catalog = catalog or default_catalog()
    body = build_request(
        messages,
        model=model or os.environ.get("BASETEN_MAGIC_MODEL") or DEFAULT_MODEL,
        stream=stream,
        params=dict(params or {}),
        catalog=catalog,
        thinking=thinking,
    )
    return PreparedRequest(body=body, model=catalog.resolve(body["model"]))


@dataclass(frozen=True)
class CallContext:
    """Where a call comes from and how it is priced and logged."""

    session: str
    source: Source = "api"
    cell: int | None = None
    pricing: Pricing = field(default_factory=pricing_from_env)
    ledger: Ledger | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    route: Route = "baseten"
    budget: Budget | None = None  # the spend cap every call of this context reserves against

    @property
    def billing(self) -> Pricing:
        """The pricing that applies: the route's own (xpay: $0.01 per call), else `pricing`."""
        return pricing_for_route(self.route) or self.pricing


class ChatCall:
    """One chat completion: run it (sync or async), then read `result` — also after a failure."""

    def __init__(
        self,
        request: PreparedRequest,
        context: CallContext,
        *,
        on_delta: Callable[[Delta], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.request = request
        self.context = context
        self.on_delta = on_delta
        self.result: ChatResult | None = None
        self._clock = clock
        self._state: StreamState | None = None
        self._served = False
        self._started = 0.0
        self._stream: SyncChatStream | None = None
        self._reader: threading.Thread | None = None
        self._cancel = threading.Event()
        self._reservation: Reservation | None = None

    # -- shared steps ---------------------------------------------------------------------

    def worst_case(self) -> Decimal:
        """The most this call can cost (what a budget holds while it runs)."""
        return worst_case_cost(self.request.body, self.request.model, self.context.billing)

    def _hold(self) -> None:
        """Reserve the worst case on the budget; raises BudgetExceededError, sending nothing."""
        budget = self.context.budget
        self._reservation = None if budget is None else budget.reserve(self.worst_case())

    def _begin(self) -> None:
        self._started = self._clock()
        self._state = None
        self._served = False
        self._stream = None
        self._reader = None
        self._cancel = threading.Event()

    def _attach(self, state: StreamState) -> None:
        self._state = state
        self._served = True  # the server accepted the call (HTTP 200)

    def _deliver(self, delta: Delta) -> None:
        if self.on_delta is not None:
            self.on_delta(delta)

    def _finish(self, status: Status, error: BaseException | None) -> ChatResult:
        """Price the call, write its ledger row, and keep the result (always runs once)."""
        latency = self._clock() - self._started
        state = self._state
        message = None if error is None else _one_line(error)
        cost = cost_of(
            None if state is None else state.usage,
            self.request.model,
            self.context.billing,
            served=self._served,
        )
        if state is None:
            result = ChatResult(
                model=self.request.body["model"],
                status=status,
                error=message,
                cost=cost,
                latency_s=latency,
            )
        else:
            result = state.result(status=status, cost=cost, error=message, latency_s=latency)
            if not result.model:  # cut before the first chunk named the model
                result = replace(result, model=self.request.body["model"])
        if isinstance(error, BasetenError):
            error.partial = result
        if self.context.budget is not None and self._reservation is not None:
            self.context.budget.settle(self._reservation, cost)
            self._reservation = None
        self._record(result)
        self.result = result
        return result

    def _record(self, result: ChatResult) -> None:
        ledger = self.context.ledger
        if ledger is None:
            return
        row = LedgerRow.from_result(
            result,
            session=self.context.session,
            cell=self.context.cell,
            pricing_mode=self.context.billing.mode,
            source=self.context.source,
            route=self.context.route,
        )
        try:
            ledger.record(row)
        except Exception as exc:  # the answer matters more than its log line
            warnings.warn(f"baseten_magic: could not write the cost ledger: {exc}", stacklevel=3)

    # -- the two loops ----------------------------------------------------------------------

    def _read(self, client: SyncChatClient) -> Iterator[Delta]:
        body, headers = self.request.body, dict(self.context.headers)
        if self.request.stream:
            self._stream = client.stream(body, headers=headers, cancel=self._cancel)
            self._attach(self._stream.state)
            yield from self._stream
        else:
            self._attach(client.complete(body, headers=headers, cancel=self._cancel))

    def run(self, client: SyncChatClient, *, pacer: Pacer | None = None) -> ChatResult:
        """Run to completion, blocking. On any failure the result is still set, then re-raised.

        With a `pacer` (a painter), the network is read on a worker thread and this thread
        waits on a queue until the pacer's next deadline, so painting keeps its rhythm even
        while no bytes arrive; deltas are still delivered on this thread, and a
        KeyboardInterrupt here closes the response and stops the reader.
        """
        self._hold()
        self._begin()
        try:
            if pacer is None:
                for delta in self._read(client):
                    self._deliver(delta)
            else:
                self._pump(client, pacer)
        except KeyboardInterrupt as exc:
            self._end_after_interrupt(client, exc)
            raise
        except BasetenError as exc:
            self._finish("error", exc)
            raise
        except BaseException as exc:
            self._abort(client)
            self._finish("error", exc)
            raise
        return self._finish("ok", None)

    def _end_after_interrupt(self, client: SyncChatClient, exc: KeyboardInterrupt) -> None:
        """Stop the reader and write the row, whatever further interrupts arrive meanwhile."""
        self._cancel.set()  # first: a reader waiting to retry must never send again
        with _interrupts_deferred():
            while True:  # an interrupt that landed before the deferral began: start over
                try:
                    self._abort(client)
                    if self.result is None:
                        self._finish("interrupted", exc)
                    return
                except KeyboardInterrupt:
                    continue

    def _pump(self, client: SyncChatClient, pacer: Pacer) -> None:
        inbox: queue.SimpleQueue[Delta | _Done] = queue.SimpleQueue()

        def read() -> None:
            try:
                for delta in self._read(client):
                    inbox.put(delta)
            except BaseException as exc:  # handed to the calling thread, which raises it
                inbox.put(_Done(exc))
            else:
                inbox.put(_Done(None))

        self._reader = threading.Thread(target=read, name="baseten-magic-reader", daemon=True)
        self._reader.start()
        while True:
            deadline = pacer.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                item = inbox.get(timeout=timeout)
            except queue.Empty:
                pacer.tick()
                continue
            if isinstance(item, _Done):
                self._reader.join()
                if item.error is not None:
                    raise item.error
                return
            self._deliver(item)
            pacer.tick()

    def _abort(self, client: SyncChatClient) -> None:
        """Stop reading at once: shut the pool's sockets down (a reader blocked before the first
        byte wakes), close the response, and let the reader finish."""
        self._cancel.set()
        client.interrupted()
        if self._stream is not None:
            self._stream.close()
        if self._reader is not None:
            self._reader.join(timeout=2.0)

    async def arun(self, client: AsyncChatClient) -> ChatResult:
        """Run on the current event loop. Cancellation is logged as `interrupted`."""
        self._hold()
        self._begin()
        body, headers = self.request.body, dict(self.context.headers)
        try:
            if self.request.stream:
                stream = await client.stream(body, headers=headers)
                self._attach(stream.state)
                async for delta in stream:
                    self._deliver(delta)
            else:
                self._attach(await client.complete(body, headers=headers))
        except (asyncio.CancelledError, KeyboardInterrupt) as exc:
            try:
                await client.interrupted()
            finally:  # a second cancellation during the close must not lose the row
                self._finish("interrupted", exc)
            raise
        except BasetenError as exc:
            self._finish("error", exc)
            raise
        except BaseException as exc:
            await client.interrupted()
            self._finish("error", exc)
            raise
        return self._finish("ok", None)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT while the block runs (main thread only). Presses meanwhile are absorbed: the
    caller is already handling an interrupt and re-raises it afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives KeyboardInterrupt
        return
    pressed: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pressed.append(signum)

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


def _one_line(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt | asyncio.CancelledError):
        return "interrupted by the user"
    return settings.error_line(error)
