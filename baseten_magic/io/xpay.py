"""The xpay route: Baseten Chat Completions through the reseller's MCP tool, on the `mcp` SDK.

Rule: `XPayClient` and `AsyncXPayClient` have exactly the methods the engine uses of
`io.client.Client` and `AsyncClient` (`stream`, `complete`, `interrupted`, `close`/`aclose`,
`list_models`, context managers), so `ChatCall`, the tool loop and the batch engine run either
route without special cases. There is no token streaming on this route: `stream()` waits for
the whole answer and its iterator yields it as one delta.

One client holds one MCP session (streamable HTTP, `initialize` then one `tools/list` to read
the tool's input schema); arguments are encoded to that schema and results decoded by
`core.xpay`. The session is opened and closed by a task of its own, because anyio scopes must
exit in the task that entered them, while calls may come from any task of that loop (a batch
runs many at once). The sync client runs the same async code on a private event loop in a
worker thread: a notebook already has a running loop, so nothing runs `asyncio.run` on the
caller's thread. A KeyboardInterrupt or task cancellation cancels the call in flight, and
`interrupted()` drops the session so the next call starts afresh.

The key (`XPAY_KEY`) goes in the URL query, as the listing asks, but only where the request
leaves: a transport adds `key=` to each outgoing request, so the SDK, httpx2's request log and
every error only ever see the URL without it. `mcp` is imported on first use (the `xpay` extra).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from baseten_magic._version import __version__ as _version
from baseten_magic.core import settings
from baseten_magic.core.errors import (
    APIConnectionError,
    APITimeoutError,
    BasetenError,
    ConfigurationError,
    StreamError,
)
from baseten_magic.core.stream import NO_DELTA, Delta, StreamState
from baseten_magic.core.xpay import TOOL_NAME, completion_from_result, encode_arguments, rpc_error

if TYPE_CHECKING:
    import httpx2

#: Called with (progress, total, message) when the server sends MCP progress notifications; on
#: the sync client it runs on the client's worker thread.
ProgressCallback = Callable[[float, float | None, str | None], None]
#: The longest wait for one tool call: the answer arrives whole, so this bounds a full answer.
DEFAULT_TIMEOUT_S = 600.0
CONNECT_TIMEOUT_S = 30.0
_LIST_PAGES = 20
_T = TypeVar("_T")


# The SDK loggers that print raw JSON-RPC messages or URLs at debug/info level ("client" is the
# name mcp's ClientSession logs under). The key never goes into what they see, but a server may
# echo it back inside an error message, so their records are redacted too.
_SDK_LOGGERS = (
    "httpx2",
    "client",
    "mcp.client.client",
    "mcp.client.streamable_http",
    "mcp.shared.dispatcher",
    "mcp.shared.jsonrpc_dispatcher",
)


class _RedactingFilter(logging.Filter):
    """Rewrites a log record with secrets removed (`settings.redact`), traceback text included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = settings.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = settings.redact(logging.Formatter().formatException(record.exc_info))
        return True


def _redact_sdk_logs() -> None:
    """Put the redacting filter on the SDK's loggers (once: adding it again changes nothing)."""
    for name in _SDK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
            logger.addFilter(_RedactingFilter())


def _require_mcp() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "the xpay route needs the mcp package, which is not installed; "
            "install it with pip install 'baseten_magic[xpay]'"
        ) from None


def _keyed_transport(key: str) -> httpx2.AsyncBaseTransport:
    """An httpx2 transport that adds `key=` to each request as it leaves, and remembers the
    last HTTP error status (the SDK reports a 401 or a 429 as a bare JSON-RPC error)."""
    import httpx2

    class KeyedTransport(httpx2.AsyncBaseTransport):
        def __init__(self) -> None:
            self._inner = httpx2.AsyncHTTPTransport()
            self.last_error_status: int | None = None

        def __repr__(self) -> str:
            return "KeyedTransport(key=***)"

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            keyed = httpx2.Request(
                request.method,
                request.url.copy_merge_params({"key": key}),
                headers=request.headers,
                stream=request.stream,
                extensions=request.extensions,
            )
            response = await self._inner.handle_async_request(keyed)
            if response.status_code >= 400:
                self.last_error_status = response.status_code
            return response

        async def aclose(self) -> None:
            await self._inner.aclose()

    return KeyedTransport()


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


class _Connection:
    """One MCP session on the running loop: initialize, the tool's schema, then calls."""

    def __init__(
        self, url: str, key: str, timeout: float, on_progress: ProgressCallback | None = None
    ) -> None:
        self.url = url
        # What messages show: a URL someone wrote a `?key=` into must not carry it further.
        self.shown = settings.redact(url)
        self._on_progress = on_progress
        self.fingerprint = hash((url, key))
        self._key = key
        self._timeout = timeout
        self._transport: Any = None
        self._session: Any = None
        self.schema: dict[str, Any] = {}
        self._ready: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"_Connection(url={self.shown!r})"

    async def open(self) -> None:
        """Connect, initialize and read the tool's schema; raises one of the project's errors."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._owner = loop.create_task(self._own(self._ready), name="baseten-xpay-session")
        try:
            await asyncio.shield(self._ready)
        except asyncio.CancelledError:
            self._owner.cancel()
            raise

    async def _own(self, ready: asyncio.Future[None]) -> None:
        import httpx2
        import mcp
        import mcp_types
        from mcp.client.streamable_http import streamable_http_client

        _redact_sdk_logs()
        try:
            self._transport = _keyed_transport(self._key)
            timeout = httpx2.Timeout(CONNECT_TIMEOUT_S, read=self._timeout)
            async with httpx2.AsyncClient(transport=self._transport, timeout=timeout) as http:
                client = mcp.Client(
                    streamable_http_client(self.url, http_client=http),
                    mode="legacy",  # the initialize handshake every MCP server understands
                    read_timeout_seconds=self._timeout,
                    client_info=mcp_types.Implementation(name="baseten_magic", version=_version),
                    cache=None,
                )
                async with client:
                    self.schema = await self._tool_schema(client)
                    self._session = client
                    ready.set_result(None)
                    await self._stop.wait()
        except BaseException as exc:
            translated = self.translate(exc)
            if ready.done():
                pass  # the session ended after it opened: calls in flight report their own error
            elif isinstance(translated, asyncio.CancelledError):
                ready.cancel()
            else:
                ready.set_exception(translated)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._session = None
            self.closed = True

    async def _tool_schema(self, client: Any) -> dict[str, Any]:
        cursor: str | None = None
        names: list[str] = []
        for _ in range(_LIST_PAGES):
            page = await client.list_tools(cursor=cursor)
            for tool in page.tools:
                if tool.name == TOOL_NAME:
                    return dict(tool.input_schema)
                names.append(tool.name)
            cursor = page.next_cursor
            if cursor is None:
                break
        listed = ", ".join(names[:10]) or "no tools"
        raise ConfigurationError(
            f"expected the tool {TOOL_NAME} at {self.shown}, got {listed}; point XPAY_MCP_URL at "
            f"the Baseten listing ({settings.DEFAULT_XPAY_URL})"
        )

    async def call(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """One `tools/call`; the chat.completion body it answered."""
        from mcp.shared.exceptions import MCPError

        session = self._session
        if session is None:
            raise APIConnectionError(
                f"the MCP session with {self.shown} has closed; retry (a new one will be opened)"
            )
        arguments = encode_arguments(body, self.schema)
        on_progress = self._on_progress

        async def progress(done: float, total: float | None, message: str | None) -> None:
            if on_progress is not None:
                on_progress(done, total, message)

        try:
            result = await session.call_tool(
                TOOL_NAME,
                arguments,
                read_timeout_seconds=self._timeout,
                progress_callback=progress if on_progress is not None else None,
            )
        except MCPError as exc:
            raise self.translate(exc) from None
        except (asyncio.CancelledError, KeyboardInterrupt, BasetenError):
            raise
        except Exception as exc:
            raise self.translate(exc) from None
        content = [block.model_dump(mode="json", by_alias=True) for block in result.content]
        return completion_from_result(
            content, result.structured_content, is_error=bool(result.is_error)
        )

    def translate(self, error: BaseException) -> BaseException:
        """The project's exception for anything the SDK or the network raised (one line, the
        key never in it); cancellation and interrupts pass through unchanged."""
        import httpx2
        from mcp.shared.exceptions import MCPError

        leaves = _leaves(error)
        for leaf in leaves:
            if isinstance(leaf, asyncio.CancelledError | KeyboardInterrupt):
                return leaf
        for leaf in leaves:
            if isinstance(leaf, BasetenError):
                return leaf
        for leaf in leaves:
            if isinstance(leaf, MCPError):
                status = getattr(self._transport, "last_error_status", None)
                return rpc_error(leaf.code, settings.redact(leaf.message), http_status=status)
        for leaf in leaves:
            if isinstance(leaf, httpx2.TimeoutException | TimeoutError):
                return APITimeoutError(
                    f"timed out talking to the reseller at {self.shown} ({type(leaf).__name__}); "
                    f"retry, or raise the timeout ({settings.TIMEOUT_HINT})"
                )
            if isinstance(leaf, httpx2.HTTPError | OSError):
                return APIConnectionError(
                    f"could not reach the reseller at {self.shown} ({type(leaf).__name__}); "
                    "check XPAY_MCP_URL and the network"
                )
        first = leaves[0] if leaves else error
        text = settings.error_line(first)
        return StreamError(
            f"the MCP exchange with {self.shown} failed ({type(first).__name__}: {text}); "
            "retry, or use the baseten route"
        )

    async def close(self) -> None:
        """End the session (its own task closes it)."""
        self._stop.set()
        owner = self._owner
        if owner is not None and not owner.done():
            try:
                await asyncio.wait_for(asyncio.shield(owner), CONNECT_TIMEOUT_S)
            except (TimeoutError, asyncio.CancelledError):
                owner.cancel()
            except BaseException:  # the session failed while closing: it is closed all the same
                owner.cancel()


class _Base:
    """What both clients share without I/O: where calls go, and answers → stream state."""

    def __init__(
        self,
        *,
        url: str | None = None,
        key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self._url = url
        self._key = key
        self._timeout = timeout
        self._clock = clock
        self.on_progress = on_progress
        self.attempts = 0  # tool calls sent by the last call (no retries on this route)

    def __repr__(self) -> str:
        # Never show the key; show where calls go (a repr must not raise on a bad URL).
        try:
            where = self._url or settings.xpay_url()
        except ConfigurationError:
            where = "<invalid XPAY_MCP_URL>"
        return f"{type(self).__name__}(url={settings.redact(where)!r})"

    def _endpoint(self) -> tuple[str, str]:
        _require_mcp()
        url = self._url or settings.xpay_url()
        key = self._key if self._key is not None else settings.xpay_key()
        return url, key

    def _new_state(self) -> StreamState:
        return StreamState(clock=self._clock, started_at=self._clock())

    @staticmethod
    def _load(state: StreamState, completion: Mapping[str, Any]) -> StreamState:
        state.load_completion(completion)
        if state.error is not None:
            from baseten_magic.core.xpay import result_error

            raise result_error(str(state.error), completion)
        return state

    @staticmethod
    def list_models() -> dict[str, Any]:
        """No model list on this route: ConfigurationError saying what to do instead."""
        raise ConfigurationError(
            "the xpay route has no model list (every call costs $0.01, whatever the model); "
            "run %baseten models without --refresh, or refresh on the baseten route"
        )


def _whole(state: StreamState) -> Delta:
    """The whole answer as one delta."""
    content, reasoning = state.content, state.reasoning
    if not (content or reasoning or state.tool_calls):
        return NO_DELTA
    return Delta(content=content, reasoning=reasoning, tool_calls_changed=bool(state.tool_calls))


class XPayStream:
    """A finished answer shaped as a stream: one delta, then the end."""

    def __init__(self, state: StreamState) -> None:
        self.state = state

    def __iter__(self) -> Iterator[Delta]:
        yield _whole(self.state)

    def close(self) -> None:
        """Nothing is open: the answer arrived whole."""


class AsyncXPayStream:
    """The async twin of XPayStream."""

    def __init__(self, state: StreamState) -> None:
        self.state = state

    async def __aiter__(self) -> AsyncIterator[Delta]:
        yield _whole(self.state)

    async def aclose(self) -> None:
        """Nothing is open: the answer arrived whole."""


class AsyncXPayClient(_Base):
    """Awaitable client for the xpay route, on the caller's running loop (like AsyncClient)."""

    _connection: _Connection | None = None
    _connecting: asyncio.Lock | None = None

    async def _connected(self) -> _Connection:
        url, key = self._endpoint()
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        # Calls that start together (a batch) share the one session the first of them opens.
        async with self._connecting:
            return await self._connect(url, key)

    async def _connect(self, url: str, key: str) -> _Connection:
        connection = self._connection
        fingerprint = hash((url, key))
        if connection is not None and (connection.closed or connection.fingerprint != fingerprint):
            # The key or URL changed since (read at call time), or the session died: reconnect.
            self._connection = None
            await connection.close()
            connection = None
        if connection is None:
            connection = _Connection(url, key, self._timeout, self.on_progress)
            await connection.open()
            self._connection = connection
        return connection

    async def _call(self, body: Mapping[str, Any]) -> StreamState:
        state = self._new_state()
        self.attempts = 0
        connection = await self._connected()
        self.attempts = 1
        return self._load(state, await connection.call(body))

    async def stream(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> AsyncXPayStream:
        """Send the call and wait for the whole answer; `async for` yields it as one delta.
        `headers` are not sent: a tool call has no HTTP headers of its own."""
        return AsyncXPayStream(await self._call(body))

    async def complete(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> StreamState:
        """One completion, loaded into a StreamState."""
        return await self._call(body)

    async def interrupted(self) -> None:
        """Drop the session after a cancellation so the next call starts afresh."""
        await self.aclose()

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def __aenter__(self) -> AsyncXPayClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _LoopThread:
    """A private event loop on a daemon thread, where the sync client's async work runs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="baseten-xpay-loop", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run `coroutine` there and wait; a KeyboardInterrupt here cancels it."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        with self._lock:
            self._pending.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            # Cancelled by interrupted() from another thread: report it as an interrupt.
            raise KeyboardInterrupt from None
        except BaseException:
            future.cancel()
            raise
        finally:
            with self._lock:
                self._pending.discard(future)

    def cancel_all(self) -> None:
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.cancel()

    def stop(self) -> None:
        self.cancel_all()
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(CONNECT_TIMEOUT_S)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


class XPayClient(_Base):
    """Blocking client for the xpay route (like Client). Use as a context manager, or `close()`."""

    _worker: _LoopThread | None = None
    _async: AsyncXPayClient | None = None

    def _loop(self) -> _LoopThread:
        if self._worker is None:
            self._worker = _LoopThread()
        return self._worker

    def _inner(self) -> AsyncXPayClient:
        inner = self._async
        if inner is None:
            inner = AsyncXPayClient(
                url=self._url,
                key=self._key,
                timeout=self._timeout,
                clock=self._clock,
                on_progress=self.on_progress,
            )
            self._async = inner
        return inner

    def _call(self, body: Mapping[str, Any]) -> StreamState:
        inner = self._inner()
        try:
            return self._loop().run(inner.complete(body))
        finally:
            self.attempts = inner.attempts

    def stream(
        self,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> XPayStream:
        """Send the call and wait for the whole answer; iterating yields it as one delta.
        `headers` are not sent: a tool call has no HTTP headers of its own. `cancel` is not
        needed: an interrupt reaches the call through `interrupted()` (this route never
        retries, so there is no wait to cut short)."""
        return XPayStream(self._call(body))

    def complete(
        self,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> StreamState:
        """One completion, loaded into a StreamState."""
        return self._call(body)

    def interrupted(self) -> None:
        """Cancel the call in flight and drop the session so the next call starts afresh."""
        worker = self._worker
        if worker is None:
            return
        worker.cancel_all()
        # A session that fails to close is gone anyway; the next call opens a new one.
        with contextlib.suppress(BaseException):
            asyncio.run_coroutine_threadsafe(self._inner().aclose(), worker.loop).result(
                CONNECT_TIMEOUT_S
            )

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        # Closing must not fail: the loop stops next, whatever the session did.
        with contextlib.suppress(BaseException):
            asyncio.run_coroutine_threadsafe(self._inner().aclose(), worker.loop).result(
                CONNECT_TIMEOUT_S
            )
        worker.stop()

    def __enter__(self) -> XPayClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
