"""HTTP client for Baseten's Chat Completions API.

Rule: this is the only module that imports httpx. All decisions that need no I/O (URLs, headers,
status → exception, retry delays, bytes → stream state) live in `_Core` and `_StreamDecoder`;
`Client` and `AsyncClient` are thin loops over them, so the sync and async paths cannot drift.

Retries happen only before the first byte of a 200 response (connect errors, connect and pool
timeouts, 408, 409, 429, 5xx). A read timeout after the request was sent is not retried (the
timeout is the longest wait, not a third of it). Once a stream has begun nothing is retried: the
partial result is reported instead. Every response is closed on every path, including
`KeyboardInterrupt` and task cancellation; after an interrupt the connection pool is discarded
(its sockets shut down at once, so a worker thread blocked in a read wakes) and a call's
`threading.Event` stops its retry loop for good: no request is sent after it is set.

What the server sends is bounded (one event, an error body, a JSON completion) and its text
(model, id, request id, error messages) is redacted with the key actually sent. The key is never
held in a local variable of a frame that can raise: headers are built inside `build_request`'s
argument list, from an object whose repr shows no key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from baseten_magic._version import __version__ as _version
from baseten_magic.core import settings
from baseten_magic.core.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CallCancelled,
    ConfigurationError,
    MidStreamError,
    ModelNotFoundError,
    RateLimitError,
    ServerError,
    StreamError,
    StreamInterrupted,
)
from baseten_magic.core.retry import RetryPolicy, parse_retry_after, retry_after_from_headers
from baseten_magic.core.sse import EventTooLarge, SSEDecoder
from baseten_magic.core.stream import NO_DELTA, Delta, StreamState, error_text

DEFAULT_TIMEOUT = httpx.Timeout(
    connect=10.0, read=settings.DEFAULT_TIMEOUT_S, write=30.0, pool=10.0
)
# An error body is a message, never megabytes; a whole non-streaming answer stays far below this.
MAX_ERROR_BODY = 1024 * 1024
MAX_COMPLETION_BODY = 64 * 1024 * 1024

# A read timeout once the request is out is not retried: the server had the request and went
# silent, and retrying would turn one timeout into three.
_RETRYABLE_EXCEPTIONS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)
# A body that stops arriving once the status line is in: the connection dropped or went silent.
_READ_ERRORS = (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout)
# 200 bodies read as an event stream; JSON is read as a whole completion; anything else (an HTML
# login page, an XML error from a proxy) is reported as what it is.
_STREAM_TYPES = ("", "text/event-stream", "text/plain", "application/octet-stream")


def _error_message(body: Any, scrub: Callable[[str], str] = settings.redact) -> str:
    """The message of any of Baseten's three error-body shapes (or a text body): one line,
    secrets redacted (by `scrub`) before it is cut to length, so no part of a key survives."""
    return scrub(" ".join(error_text(body).split()))[:300]


def _scrubbed(body: Any, scrub: Callable[[str], str]) -> Any:
    """A copy of an error body with every secret replaced, strings nested anywhere included
    (a proxy may echo the request's headers back)."""
    text = body if isinstance(body, str) else json.dumps(body)
    text = scrub(text)
    return text if isinstance(body, str) else json.loads(text)


def _unsendable(exc: Exception) -> ConfigurationError:
    # httpx's own message (and its frames' locals) may quote every header, the key included.
    return ConfigurationError(
        f"the request could not be built ({type(exc).__name__}): a header or the base URL "
        "holds a character HTTP cannot carry; check extra headers and BASETEN_BASE_URL"
    )


def _is_open(stream: Any) -> bool:
    sock = stream.get_extra_info("socket")
    return isinstance(sock, socket.socket) and sock.fileno() != -1


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def _too_large(what: str, limit: int) -> str:
    return (
        f"expected {what} of at most {limit // (1024 * 1024)} MB, got more; the server (or a "
        "proxy in between) sent an oversized body: check BASETEN_BASE_URL"
    )


class _Headers:
    """A request's headers, Authorization made only inside `build()` (never bound to a local
    variable, so a traceback with frame locals, `%xmode Verbose`, cannot show the key)."""

    __slots__ = ("_core", "_extra")

    def __init__(self, core: _Core, extra: Mapping[str, str]) -> None:
        self._core = core
        self._extra = dict(extra)

    def __repr__(self) -> str:
        return f"<headers {sorted(self._extra)} + Authorization (redacted)>"

    def check(self) -> None:
        """Raise ConfigurationError now (before anything is sent) if the key is missing or bad."""
        self.build()

    def build(self) -> dict[str, str]:
        try:
            return {**self._core.headers(), **self._extra}
        except ConfigurationError as exc:
            error = exc
        # Raised again from here with a fresh traceback: the frames that read the key are gone.
        raise error.with_traceback(None)


def _parse_body(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", errors="replace")


def _json_object(
    content: bytes,
    what: str,
    state: StreamState | None = None,
    scrub: Callable[[str], str] = settings.redact,
) -> dict[str, Any]:
    """A 200 body that must be a JSON object (`what` names it); else a one-line StreamError."""
    body = _parse_body(content)
    if isinstance(body, dict):
        return body
    preview = scrub(" ".join(str(body).split()))
    preview = preview if len(preview) <= 80 else preview[:77] + "..."
    message = (
        f"expected a JSON {what} in the response, got {preview!r}; "
        "check that BASETEN_BASE_URL points at an OpenAI-compatible /v1 endpoint"
    )
    partial = None if state is None else state.result(status="error", error=message)
    raise StreamError(message, partial=partial)


class _Core:
    """Everything a request needs that involves no I/O."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        retry: RetryPolicy,
        rng: random.Random | None,
    ) -> None:
        self._base_url = base_url
        self._api_key = api_key
        self.retry = retry
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return "<_Core (key redacted)>"

    def scrub(self, text: str) -> str:
        """`text` with the env key, the key this client was given and auth tokens redacted."""
        return settings.redact(text, self._api_key)

    def url(self, path: str) -> str:
        base = (self._base_url or settings.base_url()).rstrip("/")
        return f"{base}/{path.lstrip('/')}"

    def headers(self) -> dict[str, str]:
        # The key is read at call time, so a key set after import (or rotated) is picked up; it
        # is only ever an expression here, never a local (see _Headers).
        return {
            "Authorization": "Bearer "
            + (
                settings.check_api_key(self._api_key)
                if self._api_key is not None
                else settings.api_key()
            ),
            "Accept": "application/json, text/event-stream",
            "User-Agent": f"baseten_magic/{_version}",
        }

    def status_error(
        self,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        request: Mapping[str, Any] | None,
    ) -> APIStatusError:
        """Translate an HTTP error response into one exception whose message says what to do."""
        body = _scrubbed(_parse_body(content), self.scrub)
        detail = _error_message(body, self.scrub) or f"HTTP {status}"
        request_id = headers.get("x-request-id")
        request_id = None if request_id is None else self.scrub(request_id)
        cls: type[APIStatusError]
        request = request or {}
        model = request.get("model")
        if status == 400 and (request.get("n", 1) != 1 or request.get("best_of", 1) != 1):
            cls = BadRequestError
            hint = "Baseten accepts only n=1 and best_of=1: send one request per answer"
        elif status == 400:
            cls, hint = BadRequestError, "fix the request parameter the server names"
        elif status in (401, 403):
            cls = AuthenticationError
            hint = "check BASETEN_API_KEY (is it set to a valid, active key for this workspace?)"
        elif status == 404:
            cls = ModelNotFoundError
            hint = self._unknown_model_hint(model, detail)
        elif status == 429:
            cls, hint = RateLimitError, "slow down or retry later (rate or token limit reached)"
        elif status >= 500:
            cls, hint = ServerError, "the server failed; retry later"
        elif 300 <= status < 400:
            # Redirects are never followed: the Authorization header must not go elsewhere.
            location = self.scrub(headers.get("location", "") or "nowhere")[:200]
            detail = f"a redirect to {location!r} instead of a completion"
            cls, hint = APIStatusError, "set BASETEN_BASE_URL to the final address"
        else:
            cls, hint = APIStatusError, "see the server's message"
        message = f"HTTP {status}: {detail} ({hint})" if hint else f"HTTP {status}: {detail}"
        error = cls(message, status_code=status, body=body, request_id=request_id)
        error.retry_after = parse_retry_after(retry_after_from_headers(headers))
        return error

    @staticmethod
    def _unknown_model_hint(model: str | None, detail: str) -> str:
        from baseten_magic.core.catalog import default_catalog

        offered = [m.slug for m in default_catalog().offered()]
        if any(slug in detail for slug in offered):
            return ""  # the server already named the models to use: one list, not two
        subject = f"model {model!r}" if model else "the model"
        return f"{subject} is not served; use one of: {', '.join(offered)}"

    def connection_error(
        self, exc: Exception, timeout_s: float | None = None
    ) -> APIConnectionError:
        where = self._base_url or settings.base_url()
        if isinstance(exc, httpx.ReadTimeout) and timeout_s is not None:
            return APITimeoutError(
                f"expected an answer from {where} within {timeout_s:g} s, got none; retry, or "
                f"raise the timeout ({settings.TIMEOUT_HINT})"
            )
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(
                f"timed out talking to {where} ({type(exc).__name__}); retry, or raise the "
                f"timeout ({settings.TIMEOUT_HINT})"
            )
        return APIConnectionError(
            f"could not reach {where} ({type(exc).__name__}); "
            "check BASETEN_BASE_URL and the network"
        )

    def delay_after_status(
        self, attempt: int, status: int, headers: Mapping[str, str]
    ) -> float | None:
        """Seconds to wait before retrying, or None when this status must not be retried."""
        if attempt >= self.retry.max_retries or not self.retry.should_retry_status(status):
            return None
        return self.retry.delay(attempt, retry_after_from_headers(headers), self._rng)

    def delay_after_exception(self, attempt: int, exc: Exception) -> float | None:
        if attempt >= self.retry.max_retries or not isinstance(exc, _RETRYABLE_EXCEPTIONS):
            return None
        return self.retry.delay(attempt, None, self._rng)


class _StreamDecoder:
    """Bytes of one SSE response → deltas on a StreamState; raises on errors and cut streams."""

    def __init__(
        self, state: StreamState, core: _Core, timeout_s: float, clock: Callable[[], float]
    ) -> None:
        self.state = state
        self._core = core
        self._sse = SSEDecoder()
        self._timeout_s = timeout_s
        self._clock = clock
        self._progress_at = clock()

    def feed(self, chunk: bytes) -> list[Delta]:
        try:
            events = self._sse.feed(chunk)
        except EventTooLarge as exc:
            message = str(exc)
            partial = self.state.result(status="error", error=message)
            raise StreamError(message, partial=partial) from None
        deltas = [self.state.feed_data(event.data) for event in events]
        self._raise_if_error()
        now = self._clock()
        if deltas:
            self._progress_at = now
        elif now - self._progress_at > self._timeout_s:
            # Only comments (keep-alives) arrived since the last event: they prove the connection
            # lives, not that the answer progresses.
            raise self.timed_out()
        return deltas

    def timed_out(self) -> StreamInterrupted:
        message = (
            f"expected the next piece of the answer within {self._timeout_s:g} s, got none "
            "(only keep-alives or silence); the partial answer is kept — raise the timeout "
            f"({settings.TIMEOUT_HINT}) or re-run"
        )
        return StreamInterrupted(message, partial=self.state.result(status="error", error=message))

    def finish(self) -> list[Delta]:
        deltas = [self.state.feed_data(event.data) for event in self._sse.close()]
        self._raise_if_error()
        if not self.state.done and self.state.finish_reason is None:
            raise StreamInterrupted(
                "the stream ended before the answer was complete (connection cut); "
                "the partial answer is kept — re-run to get the rest",
                partial=self.state.result(status="error", error="stream cut"),
            )
        return deltas

    def cut(self, exc: Exception) -> StreamInterrupted:
        if isinstance(exc, httpx.ReadTimeout):
            return self.timed_out()
        return StreamInterrupted(
            f"the connection dropped mid-stream ({type(exc).__name__}); "
            "the partial answer is kept — re-run to get the rest",
            partial=self.state.result(status="error", error="stream cut"),
        )

    def _raise_if_error(self) -> None:
        error = self.state.error
        if error is None:
            return
        scrub = self._core.scrub
        message = _error_message({"error": error}, scrub) or "unknown error"
        raise MidStreamError(
            f"the server reported an error mid-stream: {message} (the partial answer is kept)",
            partial=self.state.result(status="error", error=message),
            body=_scrubbed(error, scrub),
        )


class ChatStream:
    """A streaming chat completion: iterate for deltas; `state` holds everything so far.

    With `response=None` the whole answer is already in `state` (a server that ignored `stream`
    and sent one JSON completion): iterating yields it as one delta."""

    def __init__(
        self, response: httpx.Response | None, state: StreamState, decoder: _StreamDecoder
    ) -> None:
        self.response = response
        self.state = state
        self._decoder = decoder

    def __iter__(self) -> Iterator[Delta]:
        if self.response is None:
            yield from _whole(self.state, self._decoder)
            return
        try:
            # iter_bytes, not iter_raw: a server or proxy may gzip the stream.
            for chunk in self.response.iter_bytes():
                deltas = self._decoder.feed(chunk)
                # One NO_DELTA per read that carried only comments, so painters can still tick.
                yield from deltas or (NO_DELTA,)
            yield from self._decoder.finish()
        except _READ_ERRORS as exc:
            raise self._decoder.cut(exc) from None
        finally:
            self.response.close()

    def close(self) -> None:
        if self.response is not None:
            self.response.close()


class AsyncChatStream:
    """The async twin of ChatStream."""

    def __init__(
        self, response: httpx.Response | None, state: StreamState, decoder: _StreamDecoder
    ) -> None:
        self.response = response
        self.state = state
        self._decoder = decoder

    async def __aiter__(self) -> AsyncIterator[Delta]:
        if self.response is None:
            for delta in _whole(self.state, self._decoder):
                yield delta
            return
        try:
            async for chunk in self.response.aiter_bytes():
                deltas = self._decoder.feed(chunk)
                for delta in deltas or (NO_DELTA,):
                    yield delta
            for delta in self._decoder.finish():
                yield delta
        except _READ_ERRORS as exc:
            raise self._decoder.cut(exc) from None
        finally:
            await self.response.aclose()

    async def aclose(self) -> None:
        if self.response is not None:
            await self.response.aclose()


def _whole(state: StreamState, decoder: _StreamDecoder) -> Iterator[Delta]:
    """A completion loaded at once, as the one delta a stream of it would have added up to."""
    decoder._raise_if_error()
    yield Delta(
        content=state.content, reasoning=state.reasoning, tool_calls_changed=bool(state.tool_calls)
    )


class _Capped:
    """Bytes of a body, read up to a cap (an error body is never read whole, nor re-read)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.over = False

    def add(self, chunk: bytes) -> bool:
        """Keep `chunk`; False once the cap is passed (stop reading)."""
        self.parts.append(chunk)
        self.size += len(chunk)
        self.over = self.size > self.limit
        return not self.over

    def content(self) -> bytes:
        return b"".join(self.parts)[: self.limit]


class _ClientBase:
    """Constructor and bookkeeping shared by Client and AsyncClient (no I/O)."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] | None = None,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`timeout`: seconds to wait for the next piece of the answer (keep-alives do not
        count), default `BASETEN_MAGIC_TIMEOUT` or 120; an `httpx.Timeout` sets every phase."""
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._core = _Core(
            base_url=base_url, api_key=api_key, retry=retry or RetryPolicy(), rng=rng
        )
        if isinstance(timeout, int | float) and not 0 < timeout < float("inf"):
            raise ConfigurationError(
                f"timeout must be a positive number of seconds, got {timeout!r}; pass e.g. 300"
            )
        self._timeout_setting = timeout
        self._transport = transport
        self._clock = clock
        self.attempts = 0  # HTTP requests sent by the last call, retries included
        self._lock = threading.Lock()
        # Streams of the current pool's connections, so an interrupt can shut their sockets down:
        # closing a socket does not wake a thread blocked reading it, shutting it down does.
        self._streams: list[Any] = []

    def __repr__(self) -> str:
        # Never show the key; show where requests go (a repr must not raise on a bad URL).
        try:
            where = self._core.url("")
        except ConfigurationError:
            where = "<invalid BASETEN_BASE_URL>"
        return f"{type(self).__name__}(base_url={where!r})"

    @property
    def timeout(self) -> httpx.Timeout:
        """The timeouts of the next request (the environment is read now)."""
        setting = self._timeout_setting
        if isinstance(setting, httpx.Timeout):
            return setting
        read = settings.timeout_s() if setting is None else float(setting)
        return httpx.Timeout(connect=min(10.0, read), read=read, write=30.0, pool=10.0)

    def _read_timeout(self, timeout: httpx.Timeout) -> float:
        return settings.DEFAULT_TIMEOUT_S if timeout.read is None else timeout.read

    def _request_parts(
        self, body: Mapping[str, Any], headers: Mapping[str, str] | None
    ) -> tuple[str, _Headers, bytes, StreamState]:
        """URL, headers and bytes of one chat request, and the state its answer will fill."""
        all_headers = _Headers(self._core, {**(headers or {}), "Content-Type": "application/json"})
        all_headers.check()  # a missing key fails here, before anything is sent
        return (
            self._core.url("chat/completions"),
            all_headers,
            json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
            StreamState(clock=self._clock, started_at=self._clock(), scrub=self._core.scrub),
        )

    def _decoder(self, state: StreamState, timeout: httpx.Timeout) -> _StreamDecoder:
        return _StreamDecoder(state, self._core, self._read_timeout(timeout), self._clock)

    def _not_a_stream(self, response: httpx.Response, preview: bytes) -> StreamError:
        """A 200 that is neither an event stream nor JSON: say what arrived."""
        text = " ".join(preview.decode("utf-8", "replace").split())[:80]
        return StreamError(
            f"expected an event stream (text/event-stream), got HTTP {response.status_code} "
            f"{_media_type(response.headers) or 'without a content type'} "
            f"({self._core.scrub(text)!r}); a login page or proxy answered instead of the API: "
            "check BASETEN_BASE_URL"
        )

    def _completion(self, content: bytes, over: bool, state: StreamState) -> None:
        if over:
            message = _too_large("a JSON chat.completion", MAX_COMPLETION_BODY)
            raise StreamError(message, partial=state.result(status="error", error=message))
        state.load_completion(_json_object(content, "chat.completion", state, self._core.scrub))


class Client(_ClientBase):
    """Blocking client. Use as a context manager, or call `close()`."""

    _http: httpx.Client | None = None

    def _client(self) -> httpx.Client:
        if self._http is None:
            transport = self._transport
            if transport is not None and not isinstance(transport, httpx.BaseTransport):
                raise TypeError("Client needs a sync transport (httpx.BaseTransport)")
            self._http = httpx.Client(timeout=DEFAULT_TIMEOUT, transport=transport)
            self._streams = []
        return self._http

    def _trace(self, name: str, info: Mapping[str, Any]) -> None:
        stream = info.get("return_value")
        if name.endswith(".complete") and hasattr(stream, "get_extra_info"):
            with self._lock:
                # Forget connections already closed, so a long session holds only live ones.
                self._streams = [s for s in self._streams if _is_open(s)]
                self._streams.append(stream)

    def _discard(self) -> None:
        with self._lock:
            http, self._http = self._http, None
            streams, self._streams = self._streams, []
        for stream in streams:
            sock = stream.get_extra_info("socket")
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)
        if http is not None:
            http.close()

    def close(self) -> None:
        self._discard()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _wait(self, delay: float, cancel: threading.Event | None) -> None:
        if self._sleep is not None:
            self._sleep(delay)
        elif cancel is not None:
            cancel.wait(delay)  # an interrupt ends the wait at once
        else:
            time.sleep(delay)
        if cancel is not None and cancel.is_set():
            raise CallCancelled("the call was interrupted before it was sent again")

    def _send(
        self,
        method: str,
        url: str,
        headers: _Headers,
        content: bytes | None,
        payload: Mapping[str, Any] | None,
        *,
        timeout: httpx.Timeout,
        cancel: threading.Event | None = None,
    ) -> httpx.Response:
        attempt = 0
        self.attempts = 0
        while True:
            with self._lock:
                if cancel is not None and cancel.is_set():
                    raise CallCancelled("the call was interrupted before it was sent")
            http = self._client()
            self.attempts += 1
            try:
                request = http.build_request(
                    method,
                    url,
                    headers=headers.build(),
                    content=content,
                    timeout=timeout,
                    extensions={"trace": self._trace},
                )
            except (ValueError, TypeError) as exc:
                raise _unsendable(exc) from None
            try:
                response = http.send(request, stream=True)
            except (httpx.HTTPError, RuntimeError) as exc:
                if cancel is not None and cancel.is_set():
                    raise CallCancelled("the call was interrupted while it was sent") from None
                if not isinstance(exc, httpx.HTTPError):
                    raise
                delay = self._core.delay_after_exception(attempt, exc)
                if delay is None:
                    raise self._core.connection_error(exc, self._read_timeout(timeout)) from None
                self._wait(delay, cancel)
                attempt += 1
                continue
            if cancel is not None and cancel.is_set():
                response.close()
                raise CallCancelled("the call was interrupted while it was sent")
            if response.status_code < 300:
                return response
            error_body = self._read_error_body(response)
            delay = self._core.delay_after_status(attempt, response.status_code, response.headers)
            if delay is None:
                raise self._core.status_error(
                    response.status_code, response.headers, error_body, payload
                ) from None
            self._wait(delay, cancel)
            attempt += 1

    @staticmethod
    def _read_error_body(response: httpx.Response) -> bytes:
        capped = _Capped(MAX_ERROR_BODY)
        try:
            for chunk in response.iter_bytes():
                if not capped.add(chunk):
                    break
        except httpx.HTTPError:
            pass  # the body broke off: what arrived (maybe nothing) and the status decide
        finally:
            response.close()
        return capped.content()

    def _read_capped(self, response: httpx.Response, limit: int) -> _Capped:
        capped = _Capped(limit)
        for chunk in response.iter_bytes():
            if not capped.add(chunk):
                break
        return capped

    def stream(
        self,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> ChatStream:
        """Start a streaming completion; iterate the returned ChatStream for deltas."""
        url, all_headers, content, state = self._request_parts(body, headers)
        timeout = self.timeout
        response = self._send(
            "POST", url, all_headers, content, body, timeout=timeout, cancel=cancel
        )
        decoder = self._decoder(state, timeout)
        kind = _media_type(response.headers)
        if kind in _STREAM_TYPES:
            return ChatStream(response, state, decoder)
        if kind == "application/json" or kind.endswith("+json"):
            # A server or proxy that ignored `stream`: its JSON completion is the answer.
            self._load_completion(response, state, timeout)
            return ChatStream(None, state, decoder)
        try:
            preview = self._read_capped(response, 200).content()
        except _READ_ERRORS as exc:
            raise self._core.connection_error(exc, self._read_timeout(timeout)) from None
        finally:
            response.close()
        raise self._not_a_stream(response, preview)

    def complete(
        self,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> StreamState:
        """One non-streaming completion, loaded into a StreamState."""
        url, all_headers, content, state = self._request_parts(body, headers)
        timeout = self.timeout
        response = self._send(
            "POST", url, all_headers, content, body, timeout=timeout, cancel=cancel
        )
        self._load_completion(response, state, timeout)
        return state

    def _load_completion(
        self, response: httpx.Response, state: StreamState, timeout: httpx.Timeout
    ) -> None:
        """Read a JSON completion (up to its cap) into `state`, then close the response."""
        try:
            capped = self._read_capped(response, MAX_COMPLETION_BODY)
            self._completion(capped.content(), capped.over, state)
        except _READ_ERRORS as exc:
            raise self._core.connection_error(exc, self._read_timeout(timeout)) from None
        finally:
            response.close()

    def list_models(self) -> dict[str, Any]:
        """The server's `/v1/models` payload."""
        response = self._send(
            "GET",
            self._core.url("models"),
            _Headers(self._core, {}),
            None,
            None,
            timeout=self.timeout,
        )
        try:
            capped = self._read_capped(response, MAX_COMPLETION_BODY)
            if capped.over:
                raise StreamError(_too_large("a model list", MAX_COMPLETION_BODY))
            payload = _json_object(capped.content(), "model list", None, self._core.scrub)
        finally:
            response.close()
        return payload

    def interrupted(self) -> None:
        """Drop the pool after an interrupt so no half-read connection is ever reused; its
        sockets are shut down first, so a thread blocked reading one wakes at once."""
        self._discard()


class AsyncClient(_ClientBase):
    """Awaitable client for code already running on an event loop (no nested loops)."""

    _http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            transport = self._transport
            if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
                raise TypeError("AsyncClient needs an async transport (httpx.AsyncBaseTransport)")
            self._http = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, transport=transport)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(
        self,
        method: str,
        url: str,
        headers: _Headers,
        content: bytes | None,
        payload: Mapping[str, Any] | None,
        *,
        timeout: httpx.Timeout,
    ) -> httpx.Response:
        attempt = 0
        self.attempts = 0
        while True:
            self.attempts += 1
            try:
                request = self._client().build_request(
                    method, url, headers=headers.build(), content=content, timeout=timeout
                )
            except (ValueError, TypeError) as exc:
                raise _unsendable(exc) from None
            try:
                response = await self._client().send(request, stream=True)
            except httpx.HTTPError as exc:
                delay = self._core.delay_after_exception(attempt, exc)
                if delay is None:
                    raise self._core.connection_error(exc, self._read_timeout(timeout)) from None
                await self._async_sleep(delay)
                attempt += 1
                continue
            if response.status_code < 300:
                return response
            error_body = await self._read_error_body(response)
            delay = self._core.delay_after_status(attempt, response.status_code, response.headers)
            if delay is None:
                raise self._core.status_error(
                    response.status_code, response.headers, error_body, payload
                ) from None
            await self._async_sleep(delay)
            attempt += 1

    @staticmethod
    async def _read_error_body(response: httpx.Response) -> bytes:
        capped = _Capped(MAX_ERROR_BODY)
        try:
            async for chunk in response.aiter_bytes():
                if not capped.add(chunk):
                    break
        except httpx.HTTPError:
            pass  # the body broke off: what arrived (maybe nothing) and the status decide
        finally:
            await response.aclose()
        return capped.content()

    async def _read_capped(self, response: httpx.Response, limit: int) -> _Capped:
        capped = _Capped(limit)
        async for chunk in response.aiter_bytes():
            if not capped.add(chunk):
                break
        return capped

    async def stream(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> AsyncChatStream:
        """Start a streaming completion; `async for` over the returned stream for deltas."""
        url, all_headers, content, state = self._request_parts(body, headers)
        timeout = self.timeout
        response = await self._send("POST", url, all_headers, content, body, timeout=timeout)
        decoder = self._decoder(state, timeout)
        kind = _media_type(response.headers)
        if kind in _STREAM_TYPES:
            return AsyncChatStream(response, state, decoder)
        if kind == "application/json" or kind.endswith("+json"):
            # A server or proxy that ignored `stream`: its JSON completion is the answer.
            await self._load_completion(response, state, timeout)
            return AsyncChatStream(None, state, decoder)
        try:
            preview = (await self._read_capped(response, 200)).content()
        except _READ_ERRORS as exc:
            raise self._core.connection_error(exc, self._read_timeout(timeout)) from None
        finally:
            await response.aclose()
        raise self._not_a_stream(response, preview)

    async def complete(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> StreamState:
        """One non-streaming completion, loaded into a StreamState."""
        url, all_headers, content, state = self._request_parts(body, headers)
        timeout = self.timeout
        response = await self._send("POST", url, all_headers, content, body, timeout=timeout)
        await self._load_completion(response, state, timeout)
        return state

    async def _load_completion(
        self, response: httpx.Response, state: StreamState, timeout: httpx.Timeout
    ) -> None:
        """Read a JSON completion (up to its cap) into `state`, then close the response."""
        try:
            capped = await self._read_capped(response, MAX_COMPLETION_BODY)
            self._completion(capped.content(), capped.over, state)
        except _READ_ERRORS as exc:
            raise self._core.connection_error(exc, self._read_timeout(timeout)) from None
        finally:
            await response.aclose()

    async def list_models(self) -> dict[str, Any]:
        """The server's `/v1/models` payload."""
        response = await self._send(
            "GET",
            self._core.url("models"),
            _Headers(self._core, {}),
            None,
            None,
            timeout=self.timeout,
        )
        try:
            capped = await self._read_capped(response, MAX_COMPLETION_BODY)
            if capped.over:
                raise StreamError(_too_large("a model list", MAX_COMPLETION_BODY))
            payload = _json_object(capped.content(), "model list", None, self._core.scrub)
        finally:
            await response.aclose()
        return payload

    async def interrupted(self) -> None:
        """Drop the pool after a cancellation so no half-read connection is ever reused."""
        await self.aclose()
