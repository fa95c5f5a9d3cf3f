"""The HTTP client and ChatCall against the local server on loopback: retries, errors, cuts,
interrupts, cancellation, and the ledger row every call leaves behind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from baseten_magic.core import errors
from baseten_magic.core.pricing import Pricing
from baseten_magic.core.retry import RetryPolicy
from baseten_magic.engine.call import CallContext, ChatCall, prepare_request
from baseten_magic.io.client import AsyncClient, Client
from baseten_magic.io.ledger import Ledger
from baseten_magic.server import Fault, LocalServer


def _body(prompt: str = "hi", **params: Any) -> dict[str, Any]:
    return prepare_request(prompt, model="gpt-oss", params=params).body


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def _wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


@pytest.fixture
def client(local_server: LocalServer) -> Iterator[Client]:
    with Client(sleep=SleepRecorder()) as c:
        yield c


def test_stream_gives_content_reasoning_and_usage(client: Client) -> None:
    stream = client.stream(_body("What is SSE?"))
    deltas = list(stream)
    state = stream.state
    assert state.done
    assert state.finish_reason == "stop"
    assert state.content and state.reasoning
    assert "".join(d.content for d in deltas) == state.content
    assert "".join(d.reasoning for d in deltas) == state.reasoning
    assert state.usage is not None and state.usage.completion_tokens > 0
    assert state.usage.reasoning_tokens > 0


def test_sync_and_async_paths_decode_identically(local_server: LocalServer) -> None:
    body = _body("Compare the two paths", seed=7)
    with Client() as c:
        stream = c.stream(body)
        list(stream)
        sync_state = stream.state

    async def run() -> Any:
        async with AsyncClient() as ac:
            s = await ac.stream(body)
            async for _ in s:
                pass
            return s.state

    async_state = asyncio.run(run())
    assert async_state.content == sync_state.content
    assert async_state.reasoning == sync_state.reasoning
    assert async_state.usage == sync_state.usage


def test_non_streaming_matches_streaming(client: Client) -> None:
    streamed = client.stream(_body("same answer", seed=3))
    list(streamed)
    completed = client.complete(
        prepare_request("same answer", model="gpt-oss", stream=False, params={"seed": 3}).body
    )
    assert completed.content == streamed.state.content
    assert completed.usage == streamed.state.usage


def test_retry_after_is_honoured_and_retries_are_counted(local_server: LocalServer) -> None:
    local_server.inject(Fault("status", status=429, retry_after=1.5), times=2)
    sleeps = SleepRecorder()
    before = local_server.request_count
    with Client(sleep=sleeps) as c:
        stream = c.stream(_body())
        list(stream)
    assert local_server.request_count - before == 3
    assert c.attempts == 3
    assert sleeps.delays == [1.5, 1.5]


def test_retry_after_above_cap_falls_back_to_backoff(local_server: LocalServer) -> None:
    local_server.inject(Fault("status", status=503, retry_after=3600), times=1)
    sleeps = SleepRecorder()
    with Client(sleep=sleeps, retry=RetryPolicy(retry_after_cap=60.0)) as c:
        list(c.stream(_body()))
    assert len(sleeps.delays) == 1
    assert 0 < sleeps.delays[0] <= 0.5


def test_retries_stop_after_two(local_server: LocalServer) -> None:
    local_server.inject(Fault("status", status=503), times=5)
    sleeps = SleepRecorder()
    before = local_server.request_count
    with Client(sleep=sleeps) as c, pytest.raises(errors.ServerError) as info:
        c.stream(_body())
    assert local_server.request_count - before == 3
    assert len(sleeps.delays) == 2
    assert sleeps.delays[0] < sleeps.delays[1] * 1.01  # exponential growth (jitter ≤ 25%)
    assert "HTTP 503" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried(local_server: LocalServer, status: int) -> None:
    local_server.inject(Fault("status", status=status), times=1)
    before = local_server.request_count
    with Client(sleep=SleepRecorder()) as c, pytest.raises(errors.APIStatusError):
        c.stream(_body())
    assert local_server.request_count - before == 1


def test_connect_errors_are_retried_then_reported() -> None:
    sleeps = SleepRecorder()
    with (
        Client(base_url="http://127.0.0.1:9/v1", api_key="k", sleep=sleeps) as c,
        pytest.raises(errors.APIConnectionError) as info,
    ):
        c.stream(_body())
    assert c.attempts == 3
    assert len(sleeps.delays) == 2
    assert "BASETEN_BASE_URL" in str(info.value)


@pytest.mark.parametrize(
    ("shape", "status", "cls"),
    [
        ("string", 400, errors.BadRequestError),
        ("object", 429, errors.RateLimitError),
        ("flat", 500, errors.ServerError),
        ("object", 403, errors.AuthenticationError),
    ],
)
def test_every_error_shape_gives_the_servers_message(
    local_server: LocalServer, shape: str, status: int, cls: type[Exception]
) -> None:
    local_server.inject(
        Fault("status", status=status, error_shape=shape, message="the sky fell"), times=3
    )
    with Client(sleep=SleepRecorder()) as c, pytest.raises(cls) as info:
        c.stream(_body())
    text = str(info.value)
    assert "the sky fell" in text
    assert "\n" not in text


def test_wrong_key_says_check_the_key_and_never_shows_it(local_server: LocalServer) -> None:
    secret = "sk-wrong-0123456789-SECRET"
    with Client(api_key=secret) as c, pytest.raises(errors.AuthenticationError) as info:
        c.stream(_body())
    assert "BASETEN_API_KEY" in str(info.value)
    assert secret not in str(info.value)
    assert secret not in repr(c)


def test_unknown_model_lists_known_models(client: Client) -> None:
    body = _body() | {"model": "acme/not-a-model"}
    with pytest.raises(errors.ModelNotFoundError) as info:
        client.stream(body)
    assert "openai/gpt-oss-120b" in str(info.value)


def test_missing_key_is_a_configuration_error(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BASETEN_API_KEY")
    with Client() as c, pytest.raises(errors.ConfigurationError) as info:
        c.stream(_body())
    assert "BASETEN_API_KEY" in str(info.value)


def test_cut_stream_keeps_the_partial_answer(client: Client, local_server: LocalServer) -> None:
    local_server.inject(Fault("cut", after_tokens=24))
    stream = client.stream(_body("/words 200", reasoning_effort="low"))
    seen: list[str] = []
    with pytest.raises(errors.StreamInterrupted) as info:
        for delta in stream:
            seen.append(delta.content)
    partial = info.value.partial
    assert partial is not None
    assert partial.content == "".join(seen)
    assert partial.content
    assert partial.finish_reason is None


def test_mid_stream_error_event_is_raised_with_the_partial(
    client: Client, local_server: LocalServer
) -> None:
    local_server.inject(Fault("error_event", after_tokens=8, message="worker crashed"))
    stream = client.stream(_body("/words 100"))
    with pytest.raises(errors.MidStreamError) as info:
        list(stream)
    assert "worker crashed" in str(info.value)
    assert info.value.partial is not None
    assert info.value.partial.content or info.value.partial.reasoning


def test_interrupt_closes_the_response_and_the_pool(local_server: LocalServer) -> None:
    local_server.set_speed(200)
    request = prepare_request("/words 2000", model="gpt-oss")
    count = 0

    def on_delta(delta: Any) -> None:
        nonlocal count
        count += 1
        if count == 20:
            raise KeyboardInterrupt

    call = ChatCall(request, CallContext(session="t"), on_delta=on_delta)
    client = Client()
    with pytest.raises(KeyboardInterrupt):
        call.run(client)
    assert call.result is not None
    assert call.result.status == "interrupted"
    assert _wait_for(lambda: local_server.open_connections == 0)
    # The client still works after an interrupt (a fresh pool).
    with client:
        list(client.stream(_body("again")))


def test_async_cancellation_closes_the_connection(local_server: LocalServer) -> None:
    local_server.set_speed(100)
    request = prepare_request("/words 2000", model="gpt-oss")

    async def run() -> ChatCall:
        first = asyncio.Event()
        call = ChatCall(request, CallContext(session="t"), on_delta=lambda d: first.set())
        async with AsyncClient() as ac:
            task = asyncio.create_task(call.arun(ac))
            await asyncio.wait_for(first.wait(), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return call

    call = asyncio.run(run())
    assert call.result is not None and call.result.status == "interrupted"
    assert _wait_for(lambda: local_server.open_connections == 0)


def test_every_call_lands_in_the_ledger(local_server: LocalServer, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    context = CallContext(session="s1", source="api", cell=4, ledger=ledger)
    ok = ChatCall(prepare_request("hello", model="gpt-oss"), context)
    with Client() as c:
        result = ok.run(c)
        local_server.inject(Fault("status", status=404, error_shape="object"))
        with pytest.raises(errors.ModelNotFoundError):
            ChatCall(prepare_request("x", model="gpt-oss"), context).run(c)
        local_server.inject(Fault("cut", after_tokens=5))
        with pytest.raises(errors.StreamInterrupted):
            ChatCall(prepare_request("/words 50", model="gpt-oss"), context).run(c)
    rows = ledger.rows()
    assert [r.status for r in rows] == ["ok", "error", "error"]
    assert rows[0].cell == 4
    assert rows[0].cost_usd == result.cost > 0
    assert rows[0].completion_tokens == result.usage["completion_tokens"]  # type: ignore[index]
    assert rows[1].cost_usd == 0
    assert rows[1].error and "404" in rows[1].error


def test_flat_per_call_pricing(local_server: LocalServer) -> None:
    context = CallContext(session="s", pricing=Pricing(mode="per_call"))
    with Client() as c:
        result = ChatCall(prepare_request("hi", model="kimi"), context).run(c)
    assert str(result.cost) == "0.01"


def test_chat_from_plain_python(local_server: LocalServer, tmp_path: Path) -> None:
    env = dict(os.environ, BASETEN_MAGIC_LEDGER=str(tmp_path / "l.sqlite3"))
    code = (
        "import baseten_magic as b; r = b.chat('hi', model='gpt-oss'); "
        "print(r.status, r.finish_reason, bool(r.content), len(b.ledger()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "stop", "True", "1"]


def test_requests_carry_bearer_auth_and_include_usage(
    client: Client, local_server: LocalServer
) -> None:
    list(client.stream(_body()))
    recorded = local_server.requests[-1]
    assert recorded.body is not None
    assert recorded.body["stream_options"]["include_usage"] is True
    assert recorded.headers.get("authorization", recorded.headers.get("Authorization")) == (
        "<redacted>"
    )


def test_mock_transport_sees_the_key_only_in_the_header() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers["authorization"]
        seen["body"] = json.loads(request.content)
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "model": "openai/gpt-oss-120b",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            },
        )

    with Client(
        base_url="http://test/v1", api_key="sk-abc", transport=httpx.MockTransport(handler)
    ) as c:
        state = c.complete(prepare_request("hi", model="gpt-oss", stream=False).body)
    assert seen["auth"] == "Bearer sk-abc"
    assert state.content == "hi"
    assert "sk-abc" not in json.dumps(seen["body"])


class TickCounter:
    """A pacer that wants a tick every 50 ms and counts the ticks it gets."""

    def __init__(self) -> None:
        self.ticks = 0
        self.deltas_at_tick: list[int] = []
        self.deltas = 0

    def next_deadline(self) -> float:
        return time.monotonic() + 0.05

    def tick(self) -> None:
        self.ticks += 1
        self.deltas_at_tick.append(self.deltas)


def test_paced_run_ticks_while_the_server_stalls(local_server: LocalServer) -> None:
    local_server.inject(Fault("stall", after_tokens=10, stall_s=1.0))
    pacer = TickCounter()

    def on_delta(delta: Any) -> None:
        pacer.deltas += 1

    call = ChatCall(prepare_request("/words 30", model="kimi-k2"), CallContext(session="t"))
    call.on_delta = on_delta
    with Client() as c:
        result = call.run(c, pacer=pacer)
    assert result.status == "ok"
    # During the one-second stall no delta arrived, yet the pacer kept being called.
    during = Counter(n for n in pacer.deltas_at_tick if 0 < n < pacer.deltas)
    assert max(during.values()) >= 5


def test_paced_run_interrupt_stops_the_reader_and_closes_the_connection(
    local_server: LocalServer,
) -> None:
    local_server.set_speed(200)
    count = 0

    def on_delta(delta: Any) -> None:
        nonlocal count
        count += 1
        if count == 15:
            raise KeyboardInterrupt

    call = ChatCall(
        prepare_request("/words 2000", model="kimi-k2"), CallContext(session="t"), on_delta=on_delta
    )
    client = Client()
    with pytest.raises(KeyboardInterrupt):
        call.run(client, pacer=TickCounter())
    assert call.result is not None
    assert call.result.status == "interrupted"
    assert call.result.content  # the partial answer is kept
    assert _wait_for(lambda: local_server.open_connections == 0)
    with client:
        assert list(client.stream(_body("again")))  # a fresh pool works


def test_several_choices_refused_by_baseten_says_why(client: Client) -> None:
    with pytest.raises(errors.BadRequestError) as info:
        client.stream(_body("two answers please", n=2))
    assert "only n=1" in str(info.value)


def test_python_api_runs_function_tools(local_server: LocalServer, ledger_path: Path) -> None:
    import baseten_magic

    seen: list[str] = []

    def lookup_capital(country: str) -> str:
        """The capital city of a country."""
        seen.append(country)
        return "Paris" if country == "France" else "unknown"

    result = baseten_magic.chat(
        "What is the capital of France?", model="kimi-k2", tools=[lookup_capital], run_tools=True
    )
    assert seen == ["France"]
    assert result.finish_reason == "stop"
    assert "Paris" in result.content
    rows = baseten_magic.ledger()
    assert len(rows) == 2  # the tool call, then the answer to its result
    assert result.cost == sum(row.cost_usd for row in rows)

    async def run() -> Any:
        return await baseten_magic.achat(
            "What is the capital of France?", model="kimi-k2", tools=[lookup_capital]
        )

    offered = asyncio.run(run())  # without run_tools the call is returned, not executed
    assert offered.finish_reason == "tool_calls"
    assert offered.tool_calls[0]["name"] == "lookup_capital"
    assert seen == ["France"]


def _mock(handler: Any, **kwargs: Any) -> Client:
    return Client(
        base_url="http://test/v1",
        api_key=kwargs.pop("api_key", "sk-test-key"),
        transport=httpx.MockTransport(handler),
        sleep=SleepRecorder(),
        **kwargs,
    )


def test_multi_line_error_bodies_give_a_one_line_message() -> None:
    detail = "1 validation error for ChatCompletionRequest\nmessages\n  Field required"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"object": "error", "message": detail})

    with _mock(handler) as c, pytest.raises(errors.BadRequestError) as info:
        c.stream(_body())
    text = str(info.value)
    assert "\n" not in text
    assert "1 validation error for ChatCompletionRequest messages Field required" in text


def test_a_key_echoed_at_the_length_cut_is_redacted_before_the_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "sk-echoed-0123456789abcdef"
    monkeypatch.setenv("BASETEN_API_KEY", secret)
    # The key straddles the 300-character cut: cutting first would leave its prefix unredacted.
    page = "x" * 290 + " " + secret + " tail"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text=page)

    with _mock(handler, api_key=None) as c, pytest.raises(errors.ServerError) as info:
        c.stream(_body())
    assert secret[:8] not in str(info.value)


def test_a_non_json_200_body_is_a_clear_error_with_the_partial() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>\n<body>Sign in to the proxy</body></html>")

    with _mock(handler) as c:
        with pytest.raises(errors.StreamError) as info:
            c.complete(prepare_request("hi", model="gpt-oss", stream=False).body)
        text = str(info.value)
        assert "expected a JSON chat.completion" in text and "<html>" in text
        assert "BASETEN_BASE_URL" in text and "\n" not in text
        assert info.value.partial is not None and info.value.partial.status == "error"
        with pytest.raises(errors.StreamError, match="model list"):
            c.list_models()


def test_an_error_body_that_breaks_off_still_gives_the_status_error() -> None:
    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b'{"error": "half'
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, stream=Broken())

    with _mock(handler) as c, pytest.raises(errors.AuthenticationError) as info:
        c.stream(_body())
    assert "HTTP 401" in str(info.value)


def test_a_key_that_cannot_go_in_a_header_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:  # pragma: no cover - never reached
        raise AssertionError("nothing may be sent")

    pasted = "sk-pasted\u201ckey-0123456789"
    with _mock(handler, api_key=pasted) as c, pytest.raises(errors.ConfigurationError) as info:
        c.stream(_body())
    assert pasted not in str(info.value) and "position 10" in str(info.value)
    monkeypatch.setenv("BASETEN_API_KEY", "sk-two\nlines-0123456789")
    with _mock(handler, api_key=None) as c, pytest.raises(errors.ConfigurationError):
        c.stream(_body())


def test_repr_does_not_raise_on_a_bad_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASETEN_BASE_URL", "inference.baseten.co/v1")
    assert "invalid BASETEN_BASE_URL" in repr(Client())


def test_error_bodies_are_scrubbed_of_the_key() -> None:
    secret = "sk-echo-9f8e7d6c5b4a"

    def handler(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["authorization"]
        return httpx.Response(401, json={"error": {"message": "bad key", "echo": echoed}})

    with (
        Client(
            base_url="http://test/v1", api_key=secret, transport=httpx.MockTransport(handler)
        ) as c,
        pytest.raises(errors.AuthenticationError) as info,
    ):
        c.stream(_body())
    assert secret not in json.dumps(info.value.body)
    assert secret not in str(info.value)


def test_a_404_without_a_model_list_gets_one_of_offered_models(
    local_server: LocalServer,
) -> None:
    local_server.inject(Fault("status", status=404, message="no such model"))
    with Client() as c, pytest.raises(errors.ModelNotFoundError) as info:
        c.stream(_body() | {"model": "acme/gone"})
    message = str(info.value)
    assert "no such model" in message
    assert "model 'acme/gone' is not served; use one of: " in message
    assert "openai/gpt-oss-120b" in message
    assert "DeepSeek-V3-0324" not in message  # retired: never suggested
    assert "\n" not in message
