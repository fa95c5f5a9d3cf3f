"""The Python API, and the one place a call is run, priced and written to the ledger.

Rule: every call that was attempted ends in exactly one ledger row — `ok`, `error` or
`interrupted` — whatever happened (HTTP error, cut stream, KeyboardInterrupt, task
cancellation). The magic, the widget panel and `chat()` all go through `ChatCall`, so they
price and log identically; `ChatCall.run` and `ChatCall.arun` are thin loops over shared steps.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from baseten_magic.core import settings
from baseten_magic.core.catalog import Catalog, ModelInfo, default_catalog
from baseten_magic.core.errors import BasetenError
from baseten_magic.core.params import build_request
from baseten_magic.core.pricing import Pricing, cost_of, pricing_from_env
from baseten_magic.core.result import ChatResult, Status
from baseten_magic.core.stream import Delta, StreamState
from baseten_magic.io.ledger import Ledger, LedgerRow

if TYPE_CHECKING:  # the client (and httpx) load on the first call, not on import
    from baseten_magic.io.client import AsyncClient, ChatStream, Client

DEFAULT_MODEL = "openai/gpt-oss-120b"

Messages = str | Sequence[Mapping[str, Any]]
Source = Literal["magic", "panel", "api", "batch"]


class Pacer(Protocol):
    """What paces a live display: when it next wants to paint, and the paint itself."""

    def next_deadline(self) -> float | None: ...

    def tick(self) -> None: ...


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
        self._stream: ChatStream | None = None
        self._reader: threading.Thread | None = None

    # -- shared steps ---------------------------------------------------------------------

    def _begin(self) -> None:
        self._started = self._clock()
        self._state = None
        self._served = False
        self._stream = None
        self._reader = None

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
            self.context.pricing,
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
            pricing_mode=self.context.pricing.mode,
            source=self.context.source,
        )
        try:
            ledger.record(row)
        except Exception as exc:  # the answer matters more than its log line
            warnings.warn(f"baseten_magic: could not write the cost ledger: {exc}", stacklevel=3)

    # -- the two loops ----------------------------------------------------------------------

    def _read(self, client: Client) -> Iterator[Delta]:
        body, headers = self.request.body, dict(self.context.headers)
        if self.request.stream:
            self._stream = client.stream(body, headers=headers)
            self._attach(self._stream.state)
            yield from self._stream
        else:
            self._attach(client.complete(body, headers=headers))

    def run(self, client: Client, *, pacer: Pacer | None = None) -> ChatResult:
        """Run to completion, blocking. On any failure the result is still set, then re-raised.

        With a `pacer` (a painter), the network is read on a worker thread and this thread
        waits on a queue until the pacer's next deadline, so painting keeps its rhythm even
        while no bytes arrive; deltas are still delivered on this thread, and a
        KeyboardInterrupt here closes the response and stops the reader.
        """
        self._begin()
        try:
            if pacer is None:
                for delta in self._read(client):
                    self._deliver(delta)
            else:
                self._pump(client, pacer)
        except KeyboardInterrupt as exc:
            self._abort(client)
            self._finish("interrupted", exc)
            raise
        except BasetenError as exc:
            self._finish("error", exc)
            raise
        except BaseException as exc:
            self._abort(client)
            self._finish("error", exc)
            raise
        return self._finish("ok", None)

    def _pump(self, client: Client, pacer: Pacer) -> None:
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

    def _abort(self, client: Client) -> None:
        """Stop reading at once: close the response and the pool, let the reader finish."""
        if self._stream is not None:
            self._stream.close()
        client.interrupted()
        if self._reader is not None:
            self._reader.join(timeout=2.0)

    async def arun(self, client: AsyncClient) -> ChatResult:
        """Run on the current event loop. Cancellation is logged as `interrupted`."""
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
            await client.interrupted()
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


def _one_line(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt | asyncio.CancelledError):
        return "interrupted by the user"
    return settings.error_line(error)
