"""The xpay route end to end: the real `mcp` client against the local MCP stand-in on loopback.

Every behaviour here was checked against `LocalMCPServer` only; nothing reaches the reseller.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from baseten_magic.api import achat, chat, ledger
from baseten_magic.core.errors import (
    AuthenticationError,
    BadRequestError,
    BasetenError,
    ConfigurationError,
    RateLimitError,
)
from baseten_magic.engine.call import CallContext, ChatCall, prepare_request
from baseten_magic.io.ledger import Ledger
from baseten_magic.io.routes import async_client_for, client_for
from baseten_magic.io.xpay import AsyncXPayClient, XPayClient
from baseten_magic.server.faults import Fault
from baseten_magic.server.xpay import LocalMCPServer

pytest.importorskip("mcp")

GPT = "openai/gpt-oss-120b"
KEY = "xpay-test-key-5f0c9a7d3e21"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module", params=["sse", "json"])
def server(request: pytest.FixtureRequest) -> Iterator[LocalMCPServer]:
    """The stand-in answering as an SSE stream (the SDK's default) and as one JSON body."""
    with LocalMCPServer(key=KEY, json_response=request.param == "json") as running:
        yield running


@pytest.fixture
def xpay_env(
    server: LocalMCPServer, monkeypatch: pytest.MonkeyPatch, ledger_path: Path
) -> LocalMCPServer:
    monkeypatch.setenv("XPAY_MCP_URL", server.url)
    monkeypatch.setenv("XPAY_KEY", KEY)
    server.set_speed(None)
    return server


def _last_row(path: Path) -> dict[str, object]:
    return Ledger(path).rows()[-1].as_dict()


def test_chat_on_the_xpay_route(xpay_env: LocalMCPServer, ledger_path: Path) -> None:
    result = chat("/echo Hello over MCP", model="gpt-oss", route="xpay")
    assert result.content == "Hello over MCP"
    assert result.reasoning
    assert result.finish_reason == "stop"
    assert result.usage is not None and result.usage.completion_tokens > 0
    assert result.cost == Decimal("0.01")
    row = _last_row(ledger_path)
    assert row["route"] == "xpay"
    assert row["pricing_mode"] == "per_call"
    assert row["cost_usd"] == Decimal("0.01")
    assert row["status"] == "ok"
    assert row["model"] == GPT


def test_achat_on_the_route_the_env_names(
    xpay_env: LocalMCPServer, ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASETEN_MAGIC_ROUTE", "xpay")
    result = asyncio.run(achat("/echo async", model="gpt-oss", stream=False))
    assert result.content == "async"
    assert _last_row(ledger_path)["route"] == "xpay"


def test_tool_calls_come_back_as_on_the_baseten_route(xpay_env: LocalMCPServer) -> None:
    result = chat("Weather in Paris?", model="gpt-oss", route="xpay", tools=[WEATHER])
    assert result.finish_reason == "tool_calls"
    (call,) = result.tool_calls
    assert call["name"] == "get_weather"
    assert '"city"' in call["arguments"]
    sent = xpay_env.arguments[-1]
    assert isinstance(sent["tools"], str)  # the listing types tools as a string


def test_arguments_are_encoded_as_the_served_schema_wants(
    xpay_env: LocalMCPServer, monkeypatch: pytest.MonkeyPatch, ledger_path: Path
) -> None:
    chat("/echo a", model="gpt-oss", route="xpay", stop=["zz"], logit_bias={"7": 1})
    listing = xpay_env.arguments[-1]
    assert isinstance(listing["messages"], str)
    assert isinstance(listing["stop"], str)
    assert listing["logit_bias"] == {"7": 1}
    split = {"messages": "array", "stop": "array", "logit_bias": "string"}
    with LocalMCPServer(key=KEY, schema_types=split) as other:
        monkeypatch.setenv("XPAY_MCP_URL", other.url)
        result = chat("/echo b", model="gpt-oss", route="xpay", stop=["zz"], logit_bias={"7": 1})
        sent = other.arguments[-1]
    assert result.content == "b"
    assert sent["messages"] == [{"role": "user", "content": "/echo b"}]
    assert sent["stop"] == ["zz"]
    assert sent["logit_bias"] == '{"7":1}'


def test_an_mcp_error_result_is_one_clear_line(xpay_env: LocalMCPServer, ledger_path: Path) -> None:
    xpay_env.inject(Fault("status", status=429))
    with pytest.raises(RateLimitError) as info:
        chat("/echo x", model="gpt-oss", route="xpay")
    message = str(info.value)
    assert message.startswith("xpay 429: ")
    assert "\n" not in message
    row = _last_row(ledger_path)
    assert row["status"] == "error"
    assert row["cost_usd"] == Decimal(0)  # only an answered call is charged
    assert row["error"] == message


def test_a_json_rpc_error_is_one_clear_line(xpay_env: LocalMCPServer) -> None:
    xpay_env.inject_rpc_error(-32602, "arguments rejected:\nmessages is malformed")
    with pytest.raises(BadRequestError) as info:
        chat("/echo x", model="gpt-oss", route="xpay")
    message = str(info.value)
    assert message.startswith("xpay rejected the call (JSON-RPC -32602): arguments rejected")
    assert "\n" not in message
    assert info.value.rpc_code == -32602


def test_a_missing_key_is_a_configuration_error_and_nothing_is_sent(
    xpay_env: LocalMCPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XPAY_KEY")
    before = len(xpay_env.arguments)
    with pytest.raises(ConfigurationError, match="XPAY_KEY is not set"):
        chat("/echo x", model="gpt-oss", route="xpay")
    assert len(xpay_env.arguments) == before


def test_the_key_never_shows_even_though_it_is_in_the_url(
    xpay_env: LocalMCPServer,
    monkeypatch: pytest.MonkeyPatch,
    ledger_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "xpay-wrong-key-77aa99bb"
    shown: list[str] = []
    with XPayClient() as client:
        shown.append(repr(client))
        result = chat("/echo fine", model="gpt-oss", route="xpay")
        shown += [repr(result), str(result)]
    xpay_env.inject_rpc_error(-32603, f"upstream said url=http://x/mcp?key={KEY}")
    errors: list[BaseException] = []
    with pytest.raises(BasetenError) as info:
        chat("/echo x", model="gpt-oss", route="xpay")
    errors.append(info.value)
    monkeypatch.setenv("XPAY_KEY", wrong)
    with pytest.raises(AuthenticationError) as info:
        chat("/echo x", model="gpt-oss", route="xpay")
    errors.append(info.value)
    for error in errors:
        shown += [str(error), repr(error), "".join(traceback.format_exception(error))]
    shown += [repr(row) for row in ledger()]
    shown.append(ledger_path.read_bytes().decode("latin-1"))
    # What this process logged as the client (the stand-in's own logs are the server's side).
    client_side = ("httpx", "httpcore", "client", "mcp.client", "mcp.shared", "baseten_magic")
    shown += [
        caplog.handler.format(record)
        for record in caplog.records
        if record.name.startswith(client_side)
    ]
    captured = capsys.readouterr()
    shown += [captured.out, captured.err]
    everything = "\n".join(shown)
    assert "HTTP Request: POST" in everything  # httpx2's request log was captured...
    assert KEY not in everything  # ...without the key
    assert wrong not in everything
    assert "key=" + KEY[:6] not in everything


def test_cancelling_achat_cancels_the_call_promptly(
    xpay_env: LocalMCPServer, ledger_path: Path
) -> None:
    xpay_env.set_speed(5)  # ~200 tokens: about 40 s if not cancelled

    async def run() -> float:
        task = asyncio.create_task(achat("Tell me a story", model="gpt-oss", route="xpay"))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert asyncio.run(run()) < 2.0
    row = _last_row(ledger_path)
    assert (row["status"], row["route"]) == ("interrupted", "xpay")
    deadline = time.monotonic() + 5
    while xpay_env.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert xpay_env.cancelled >= 1  # the server saw the call go away


def test_ctrl_c_during_chat_cancels_the_call(xpay_env: LocalMCPServer, ledger_path: Path) -> None:
    xpay_env.set_speed(5)
    assert threading.current_thread() is threading.main_thread()
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            chat("Tell me a story", model="gpt-oss", route="xpay")
    finally:
        timer.cancel()
    assert time.monotonic() - started < 3.0
    row = _last_row(ledger_path)
    assert (row["status"], row["route"]) == ("interrupted", "xpay")


class _InterruptingPacer:
    """A painter that is interrupted (as the magic is, by SIGINT on its thread) after 0.5 s."""

    def __init__(self) -> None:
        self.until = time.monotonic() + 0.5

    def next_deadline(self) -> float:
        return time.monotonic() + 0.05

    def tick(self) -> None:
        if time.monotonic() > self.until:
            raise KeyboardInterrupt


def test_an_interrupt_while_the_magic_paints_stops_the_reader(
    xpay_env: LocalMCPServer, ledger_path: Path
) -> None:
    xpay_env.set_speed(5)
    request = prepare_request("Tell me a story", model="gpt-oss")
    call = ChatCall(request, CallContext(session="t", ledger=Ledger(), route="xpay"))
    client = client_for("xpay")
    assert isinstance(client, XPayClient)
    started = time.monotonic()
    with client, pytest.raises(KeyboardInterrupt):
        call.run(client, pacer=_InterruptingPacer())
    assert time.monotonic() - started < 3.5
    assert call._reader is not None and not call._reader.is_alive()
    assert call.result is not None and call.result.status == "interrupted"


def test_the_async_client_serves_concurrent_calls_on_one_session(
    xpay_env: LocalMCPServer, ledger_path: Path
) -> None:
    listed = xpay_env.listings

    async def run() -> list[str]:
        client = async_client_for("xpay")
        assert isinstance(client, AsyncXPayClient)
        async with client:
            context = CallContext(session="batch", ledger=Ledger(), route="xpay")
            calls = [
                ChatCall(prepare_request(f"/echo row {i}", model="gpt-oss"), context)
                for i in range(6)
            ]
            results = await asyncio.gather(*(call.arun(client) for call in calls))
        return [r.content for r in results]

    assert asyncio.run(run()) == [f"row {i}" for i in range(6)]
    assert xpay_env.listings == listed + 1  # one session, one tools/list, for all six calls
    rows = [r for r in Ledger(ledger_path).rows() if r.session == "batch"]
    assert len(rows) == 6
    assert sum((r.cost_usd for r in rows), Decimal(0)) == Decimal("0.06")


def test_the_tool_loop_runs_on_the_xpay_route(xpay_env: LocalMCPServer) -> None:
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    result = chat(
        "Weather in Paris?", model="gpt-oss", route="xpay", tools=[get_weather], run_tools=True
    )
    assert "sunny in" in result.content
    assert result.cost == Decimal("0.02")  # two calls, one cent each


def test_the_command_line_serves_the_mcp_stand_in() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "baseten_magic.server",
            "--mcp",
            "--port",
            "0",
            "--print-url-only",
            "--quiet",
            "--api-key",
            KEY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        with XPayClient(url=url, key=KEY) as client:
            state = client.complete(
                {"model": GPT, "messages": [{"role": "user", "content": "/echo cli"}]}
            )
        assert state.content == "cli"
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert KEY not in err
