"""HTTP client for Baseten's Chat Completions API.

Rule: this is the only module that imports httpx. All decisions that need no I/O (URLs, headers,
status → exception, retry delays, bytes → stream state) live in `_Core` and `_StreamDecoder`;
`Client` and `AsyncClient` are thin loops over them, so the sync and async paths cannot drift.

Retries happen only before the first byte of a 200 response (connect errors, timeouts, 408, 409,
429, 5xx). Once a stream has begun nothing is retried: the partial result is reported instead.
Every response is closed on every path, including `KeyboardInterrupt` and task cancellation;
after an interrupt the connection pool is discarded so no half-read connection is reused.
"""

from __future__ import annotations

import asyncio
import json
import random
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
    ConfigurationError,
    MidStreamError,
    ModelNotFoundError,
    RateLimitError,
    ServerError,
    StreamError,
    StreamInterrupted,
)
from baseten_magic.core.retry import RetryPolicy, parse_retry_after, retry_after_from_headers
from baseten_magic.core.sse import SSEDecoder
from baseten_magic.core.stream import NO_DELTA, Delta, StreamState, error_text

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=10.0)


def timeout_after(seconds: float | None) -> httpx.Timeout:
    """The default timeouts, with the wait for the next piece of the answer set to `seconds`."""
    if seconds is None:
        return DEFAULT_TIMEOUT
    return httpx.Timeout(connect=10.0, read=seconds, write=30.0, pool=10.0)


_RETRYABLE_EXCEPTIONS = (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError)
# A body that stops arriving once the status line is in: the connection dropped or went silent.
_READ_ERRORS = (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout)


def _error_message(body: Any) -> str:
    """The message of any of Baseten's three error-body shapes (or a text body): one line,
    secrets redacted before it is cut to length, so no part of a key can survive the cut."""
    return settings.redact(" ".join(error_text(body).split()))[:300]


def _scrubbed(body: Any, key: str | None) -> Any:
    """A copy of an error body with every secret replaced, strings nested anywhere included
    (a proxy may echo the request's headers back)."""
    text = body if isinstance(body, str) else json.dumps(body)
    text = settings.redact(text)
    if key and len(key) >= 4:
        text = text.replace(key, "***")
    return text if isinstance(body, str) else json.loads(text)


def _parse_body(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", errors="replace")


def _json_object(content: bytes, what: str, state: StreamState | None = None) -> dict[str, Any]:
    """A 200 body that must be a JSON object (`what` names it); else a one-line StreamError."""
    body = _parse_body(content)
    if isinstance(body, dict):
        return body
    preview = " ".join(str(body).split())
    preview = preview if len(preview) <= 80 else preview[:77] + "..."
    message = (
        f"expected a JSON {what} in the response, got {settings.redact(preview)!r}; "
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

    def url(self, path: str) -> str:
        base = (self._base_url or settings.base_url()).rstrip("/")
        return f"{base}/{path.lstrip('/')}"

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        # The key is read at call time, so a key set after import (or rotated) is picked up.
        key = (
            settings.check_api_key(self._api_key)
            if self._api_key is not None
            else settings.api_key()
        )
        headers = {
            "Authorization": f"Bearer {key}",
            "Accept": "application/json, text/event-stream",
            "User-Agent": f"baseten_magic/{_version}",
        }
        if extra:
            headers.update(extra)
        return headers

    def status_error(
        self,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        request: Mapping[str, Any] | None,
    ) -> APIStatusError:
        """Translate an HTTP error response into one exception whose message says what to do."""
        body = _scrubbed(_parse_body(content), self._api_key)
        detail = _error_message(body) or f"HTTP {status}"
        request_id = headers.get("x-request-id")
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
            hint = self._unknown_model_hint(model)
        elif status == 429:
            cls, hint = RateLimitError, "slow down or retry later (rate or token limit reached)"
        elif status >= 500:
            cls, hint = ServerError, "the server failed; retry later"
        else:
            cls, hint = APIStatusError, "see the server's message"
        message = f"HTTP {status}: {detail} ({hint})"
        error = cls(message, status_code=status, body=body, request_id=request_id)
        error.retry_after = parse_retry_after(retry_after_from_headers(headers))
        return error

    @staticmethod
    def _unknown_model_hint(model: str | None) -> str:
        from baseten_magic.core.catalog import default_catalog

        known = ", ".join(m.slug for m in default_catalog().models)
        subject = f"model {model!r}" if model else "the model"
        return f"{subject} is unknown or retired; known models: {known}"

    def connection_error(self, exc: Exception) -> APIConnectionError:
        where = self._base_url or settings.base_url()
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(
                f"timed out talking to {where} ({type(exc).__name__}); retry, or raise the timeout"
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

    def __init__(self, state: StreamState) -> None:
        self.state = state
        self._sse = SSEDecoder()

    def feed(self, chunk: bytes) -> list[Delta]:
        deltas = [self.state.feed_data(event.data) for event in self._sse.feed(chunk)]
        self._raise_if_error()
        return deltas

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
        return StreamInterrupted(
            f"the connection dropped mid-stream ({type(exc).__name__}); "
            "the partial answer is kept — re-run to get the rest",
            partial=self.state.result(status="error", error="stream cut"),
        )

    def _raise_if_error(self) -> None:
        error = self.state.error
        if error is None:
            return
        message = _error_message({"error": error}) or "unknown error"
        raise MidStreamError(
            f"the server reported an error mid-stream: {message} (the partial answer is kept)",
            partial=self.state.result(status="error", error=message),
            body=_scrubbed(error, None),
        )


class ChatStream:
    """A streaming chat completion: iterate for deltas; `state` holds everything so far."""

    def __init__(self, response: httpx.Response, state: StreamState) -> None:
        self.response = response
        self.state = state
        self._decoder = _StreamDecoder(state)

    def __iter__(self) -> Iterator[Delta]:
        try:
            for chunk in self.response.iter_raw():
                deltas = self._decoder.feed(chunk)
                # One NO_DELTA per read that carried only comments, so painters can still tick.
                yield from deltas or (NO_DELTA,)
            yield from self._decoder.finish()
        except _READ_ERRORS as exc:
            raise self._decoder.cut(exc) from None
        finally:
            self.response.close()

    def close(self) -> None:
        self.response.close()


class AsyncChatStream:
    """The async twin of ChatStream."""

    def __init__(self, response: httpx.Response, state: StreamState) -> None:
        self.response = response
        self.state = state
        self._decoder = _StreamDecoder(state)

    async def __aiter__(self) -> AsyncIterator[Delta]:
        try:
            async for chunk in self.response.aiter_raw():
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
        await self.response.aclose()


class _ClientBase:
    """Constructor and bookkeeping shared by Client and AsyncClient (no I/O)."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._core = _Core(
            base_url=base_url, api_key=api_key, retry=retry or RetryPolicy(), rng=rng
        )
        self._timeout = timeout
        self._transport = transport
        self._clock = clock
        self.attempts = 0  # HTTP requests sent by the last call, retries included

    def __repr__(self) -> str:
        # Never show the key; show where requests go (a repr must not raise on a bad URL).
        try:
            where = self._core.url("")
        except ConfigurationError:
            where = "<invalid BASETEN_BASE_URL>"
        return f"{type(self).__name__}(base_url={where!r})"

    def _request_parts(
        self, body: Mapping[str, Any], headers: Mapping[str, str] | None
    ) -> tuple[str, dict[str, str], bytes, StreamState]:
        """URL, headers and bytes of one chat request, and the state its answer will fill."""
        return (
            self._core.url("chat/completions"),
            {**self._core.headers(headers), "Content-Type": "application/json"},
            json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
            StreamState(clock=self._clock, started_at=self._clock()),
        )


class Client(_ClientBase):
    """Blocking client. Use as a context manager, or call `close()`."""

    _http: httpx.Client | None = None

    def _client(self) -> httpx.Client:
        if self._http is None:
            transport = self._transport
            if transport is not None and not isinstance(transport, httpx.BaseTransport):
                raise TypeError("Client needs a sync transport (httpx.BaseTransport)")
            self._http = httpx.Client(timeout=self._timeout, transport=transport)
        return self._http

    def _discard(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def close(self) -> None:
        self._discard()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        payload: Mapping[str, Any] | None,
    ) -> httpx.Response:
        attempt = 0
        self.attempts = 0
        while True:
            self.attempts += 1
            request = self._client().build_request(method, url, headers=headers, content=content)
            try:
                response = self._client().send(request, stream=True)
            except httpx.HTTPError as exc:
                delay = self._core.delay_after_exception(attempt, exc)
                if delay is None:
                    raise self._core.connection_error(exc) from None
                self._sleep(delay)
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            try:
                error_body = response.read()
            except httpx.HTTPError:
                error_body = b""  # the body broke off: the status alone decides
            finally:
                response.close()
            delay = self._core.delay_after_status(attempt, response.status_code, response.headers)
            if delay is None:
                raise self._core.status_error(
                    response.status_code, response.headers, error_body, payload
                ) from None
            self._sleep(delay)
            attempt += 1

    def stream(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> ChatStream:
        """Start a streaming completion; iterate the returned ChatStream for deltas."""
        url, all_headers, content, state = self._request_parts(body, headers)
        response = self._send("POST", url, all_headers, content, body)
        return ChatStream(response, state)

    def complete(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> StreamState:
        """One non-streaming completion, loaded into a StreamState."""
        url, all_headers, content, state = self._request_parts(body, headers)
        response = self._send("POST", url, all_headers, content, body)
        try:
            state.load_completion(_json_object(response.read(), "chat.completion", state))
        except _READ_ERRORS as exc:
            raise self._core.connection_error(exc) from None
        finally:
            response.close()
        return state

    def list_models(self) -> dict[str, Any]:
        """The server's `/v1/models` payload."""
        response = self._send("GET", self._core.url("models"), self._core.headers(), None, None)
        try:
            payload = _json_object(response.read(), "model list")
        finally:
            response.close()
        return payload

    def interrupted(self) -> None:
        """Drop the pool after an interrupt so no half-read connection is ever reused."""
        self._discard()


class AsyncClient(_ClientBase):
    """Awaitable client for code already running on an event loop (no nested loops)."""

    _http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            transport = self._transport
            if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
                raise TypeError("AsyncClient needs an async transport (httpx.AsyncBaseTransport)")
            self._http = httpx.AsyncClient(timeout=self._timeout, transport=transport)
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
        headers: dict[str, str],
        content: bytes | None,
        payload: Mapping[str, Any] | None,
    ) -> httpx.Response:
        attempt = 0
        self.attempts = 0
        while True:
            self.attempts += 1
            request = self._client().build_request(method, url, headers=headers, content=content)
            try:
                response = await self._client().send(request, stream=True)
            except httpx.HTTPError as exc:
                delay = self._core.delay_after_exception(attempt, exc)
                if delay is None:
                    raise self._core.connection_error(exc) from None
                await self._async_sleep(delay)
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            try:
                error_body = await response.aread()
            except httpx.HTTPError:
                error_body = b""  # the body broke off: the status alone decides
            finally:
                await response.aclose()
            delay = self._core.delay_after_status(attempt, response.status_code, response.headers)
            if delay is None:
                raise self._core.status_error(
                    response.status_code, response.headers, error_body, payload
                ) from None
            await self._async_sleep(delay)
            attempt += 1

    async def stream(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> AsyncChatStream:
        """Start a streaming completion; `async for` over the returned stream for deltas."""
        url, all_headers, content, state = self._request_parts(body, headers)
        response = await self._send("POST", url, all_headers, content, body)
        return AsyncChatStream(response, state)

    async def complete(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> StreamState:
        """One non-streaming completion, loaded into a StreamState."""
        url, all_headers, content, state = self._request_parts(body, headers)
        response = await self._send("POST", url, all_headers, content, body)
        try:
            state.load_completion(_json_object(await response.aread(), "chat.completion", state))
        except _READ_ERRORS as exc:
            raise self._core.connection_error(exc) from None
        finally:
            await response.aclose()
        return state

    async def list_models(self) -> dict[str, Any]:
        """The server's `/v1/models` payload."""
        response = await self._send(
            "GET", self._core.url("models"), self._core.headers(), None, None
        )
        try:
            payload = _json_object(await response.aread(), "model list")
        finally:
            await response.aclose()
        return payload

    async def interrupted(self) -> None:
        """Drop the pool after a cancellation so no half-read connection is ever reused."""
        await self.aclose()
