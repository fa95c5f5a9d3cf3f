"""The automatic tool loop against the local server: rounds, ids, errors, limits, Kimi."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from baseten_magic.core.errors import ParameterError
from baseten_magic.core.result import ChatResult
from baseten_magic.core.stream import Delta
from baseten_magic.core.tools import ToolOutput, tool_specs
from baseten_magic.engine.call import CallContext, prepare_request
from baseten_magic.engine.toolloop import ToolLoopOutcome, arun_tool_loop, run_tool_loop
from baseten_magic.io.client import AsyncClient, Client
from baseten_magic.io.ledger import Ledger
from baseten_magic.server import LocalServer


def get_weather(city: str) -> dict[str, Any]:
    """The current weather in a city."""
    return {"city": city, "sky": "sunny", "temp_c": 21}


def get_time(city: str) -> str:
    """The local time in a city."""
    return "12:00"


def get_population(city: str) -> int:
    """How many people live in a city."""
    raise LookupError(f"no census data for {city}")


TOOLS = [get_weather, get_time, get_population]


@pytest.fixture
def server(local_server: LocalServer) -> LocalServer:
    """A fresh server per test: tests read its recorded requests."""
    return local_server


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.db")


def _chat_bodies(server: LocalServer, since: int) -> list[dict[str, Any]]:
    return [
        r.body
        for r in server.requests[since:]
        if r.path.endswith("/chat/completions") and r.body is not None
    ]


def _run(
    server: LocalServer,
    ledger: Ledger,
    prompt: str,
    *,
    model: str = "gpt-oss",
    fns: list[Callable[..., Any]] = TOOLS,
    max_rounds: int = 5,
    **params: Any,
) -> ToolLoopOutcome:
    request = prepare_request(prompt, model=model, params={"tools": tool_specs(fns), **params})
    with Client(base_url=server.url, api_key=server.api_key) as client:
        return run_tool_loop(
            request,
            fns,
            context=CallContext(session="loop", ledger=ledger),
            client=client,
            max_rounds=max_rounds,
        )


def test_sequential_calls_take_three_rounds_then_answer(
    server: LocalServer, ledger: Ledger
) -> None:
    since = len(server.requests)
    outcome = _run(server, ledger, "Tell me about Paris", parallel_tool_calls=False)
    assert [r.finish_reason for r in outcome.rounds] == ["tool_calls"] * 3 + ["stop"]
    assert [[o.name for o in outs] for outs in outcome.outputs] == [
        ["get_weather"],
        ["get_time"],
        ["get_population"],
        [],
    ]
    assert outcome.final is outcome.rounds[-1]
    assert not outcome.stopped_by_limit
    assert outcome.cost == sum(r.cost for r in outcome.rounds)
    assert outcome.cost > 0
    # One ledger row per request.
    assert len(ledger.rows()) == 4
    bodies = _chat_bodies(server, since)
    assert len(bodies) == 4
    # Each request carries the same parameters, plus the messages so far.
    assert all(b["parallel_tool_calls"] is False for b in bodies)
    assert [len(b["messages"]) for b in bodies] == [1, 3, 5, 7]
    # Ids go back verbatim, each matched by its tool message.
    last = bodies[-1]["messages"]
    for round_index, result in enumerate(outcome.rounds[:3]):
        assistant, tool = last[1 + 2 * round_index], last[2 + 2 * round_index]
        assert assistant["tool_calls"][0]["id"] == result.tool_calls[0]["id"]
        assert tool["tool_call_id"] == result.tool_calls[0]["id"]
    assert "sunny" in outcome.final.content


def test_a_failing_tool_reaches_the_model_and_the_loop_goes_on(
    server: LocalServer, ledger: Ledger
) -> None:
    since = len(server.requests)
    outcome = _run(server, ledger, "Tell me about Lyon")  # parallel: one round of 3 calls
    assert len(outcome.rounds) == 2
    failed = [o for o in outcome.outputs[0] if not o.ok]
    assert [o.name for o in failed] == ["get_population"]
    assert failed[0].error == "ToolError: LookupError: no census data for Lyon"
    sent = _chat_bodies(server, since)[-1]["messages"]
    tool_messages = {m["tool_call_id"]: m["content"] for m in sent if m["role"] == "tool"}
    assert tool_messages[failed[0].call_id] == failed[0].error
    assert "ToolError: LookupError" in outcome.final.content


def test_max_rounds_stops_the_loop(server: LocalServer, ledger: Ledger) -> None:
    outcome = _run(server, ledger, "About Rome", parallel_tool_calls=False, max_rounds=2)
    assert len(outcome.rounds) == 2
    assert outcome.stopped_by_limit
    assert outcome.final.finish_reason == "tool_calls"
    # The last round's calls are not run: their results could not reach the model.
    assert [len(outs) for outs in outcome.outputs] == [1, 0]
    assert len(ledger.rows()) == 2
    with pytest.raises(ParameterError, match="max_rounds"):
        _run(server, ledger, "About Rome", max_rounds=0)


def test_required_tool_choice_is_forced_only_once(server: LocalServer, ledger: Ledger) -> None:
    since = len(server.requests)
    outcome = _run(server, ledger, "About Oslo", tool_choice="required")
    assert not outcome.stopped_by_limit
    assert [b["tool_choice"] for b in _chat_bodies(server, since)] == ["required", "auto"]


def test_kimi_thinking_loop_sends_reasoning_back(server: LocalServer, ledger: Ledger) -> None:
    from baseten_magic.server import Fault

    since = len(server.requests)
    server.inject(Fault("reasoning_required"), times=2)  # a deployment that requires it back
    outcome = _run(
        server, ledger, "Weather in Tokyo", model="moonshotai/Kimi-K2-Thinking", fns=[get_weather]
    )
    assert [r.finish_reason for r in outcome.rounds] == ["tool_calls", "stop"]
    first = outcome.rounds[0]
    assert first.tool_calls[0]["id"] == "functions.get_weather:0"
    assert first.reasoning
    assistant = _chat_bodies(server, since)[-1]["messages"][1]
    assert assistant["tool_calls"][0]["id"] == "functions.get_weather:0"
    assert assistant["reasoning_content"] == first.reasoning


def test_kimi_thinking_rejects_a_loop_without_reasoning(server: LocalServer) -> None:
    """The server's opt-in 400 is real: what `tool_messages` adds is what makes the loop above
    work against a deployment that requires the reasoning back."""
    import httpx

    from baseten_magic.server import Fault

    server.inject(Fault("reasoning_required"))

    messages = [
        {"role": "user", "content": "Weather in Tokyo"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "functions.get_weather:0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "sunny"},
    ]
    response = httpx.post(
        f"{server.url}/chat/completions",
        headers={"Authorization": f"Bearer {server.api_key}"},
        json={"model": "moonshotai/Kimi-K2-Thinking", "messages": messages, "stream": False},
    )
    assert response.status_code == 400
    assert "reasoning_content" in response.text


def test_round_callbacks(server: LocalServer, ledger: Ledger) -> None:
    started: list[int] = []
    streamed: dict[int, str] = {}
    ended: list[tuple[int, str | None, int]] = []

    def on_start(index: int) -> Callable[[Delta], None]:
        started.append(index)
        streamed[index] = ""

        def on_delta(delta: Delta) -> None:
            streamed[index] += delta.content

        return on_delta

    def on_end(index: int, result: ChatResult, outputs: list[ToolOutput]) -> None:
        ended.append((index, result.finish_reason, len(outputs)))

    request = prepare_request(
        "About Nice", model="gpt-oss", params={"tools": tool_specs([get_weather])}
    )
    with Client(base_url=server.url, api_key=server.api_key) as client:
        outcome = run_tool_loop(
            request,
            [get_weather],
            context=CallContext(session="cb", ledger=ledger),
            client=client,
            on_round_start=on_start,
            on_round_end=on_end,
        )
    assert started == [0, 1]
    assert ended == [(0, "tool_calls", 1), (1, "stop", 0)]
    assert streamed[1] == outcome.final.content


class RecordingPacer:
    """A pacer that notes, per round, how often it was asked to paint and on which thread."""

    def __init__(self) -> None:
        self.round = -1
        self.ticks: dict[int, int] = {}
        self.threads: set[str] = set()

    def next_deadline(self) -> float | None:
        return time.monotonic() + 0.005

    def tick(self) -> None:
        self.ticks[self.round] = self.ticks.get(self.round, 0) + 1
        self.threads.add(threading.current_thread().name)


def test_every_round_is_paced_like_a_plain_call(server: LocalServer, ledger: Ledger) -> None:
    pacer = RecordingPacer()
    readers: list[str] = []

    def on_start(index: int) -> Callable[[Delta], None]:
        pacer.round = index

        def on_delta(delta: Delta) -> None:
            readers.append(threading.current_thread().name)

        return on_delta

    request = prepare_request(
        "About Oslo", model="gpt-oss", params={"tools": tool_specs([get_weather])}
    )
    with Client(base_url=server.url, api_key=server.api_key) as client:
        outcome = run_tool_loop(
            request,
            [get_weather],
            context=CallContext(session="paced", ledger=ledger),
            client=client,
            on_round_start=on_start,
            pacer=pacer,
        )
    assert len(outcome.rounds) == 2
    # Both rounds painted through the pacer, on the calling thread, with deltas delivered there.
    assert sorted(pacer.ticks) == [0, 1]
    assert all(count > 0 for count in pacer.ticks.values())
    assert pacer.threads == {threading.current_thread().name}
    assert set(readers) == {threading.current_thread().name}


def test_tools_are_added_when_the_request_has_none(server: LocalServer, ledger: Ledger) -> None:
    since = len(server.requests)
    request = prepare_request("About Bern", model="gpt-oss")
    with Client(base_url=server.url, api_key=server.api_key) as client:
        outcome = run_tool_loop(
            request, [get_time], context=CallContext(session="t", ledger=ledger), client=client
        )
    assert outcome.outputs[0][0].result == "12:00"
    assert _chat_bodies(server, since)[0]["tools"] == tool_specs([get_time])


def test_async_loop_awaits_async_tools(server: LocalServer, ledger: Ledger) -> None:
    async def get_tide(city: str) -> str:
        """High tide time."""
        await asyncio.sleep(0)
        return "high at 14:00"

    async def main() -> ToolLoopOutcome:
        request = prepare_request(
            "Tide in Brest", model="kimi", params={"tools": tool_specs([get_tide, get_time])}
        )
        async with AsyncClient(base_url=server.url, api_key=server.api_key) as client:
            return await arun_tool_loop(
                request,
                [get_tide, get_time],
                context=CallContext(session="async", ledger=ledger),
                client=client,
            )

    outcome = asyncio.run(main())
    assert [o.result for o in outcome.outputs[0]] == ["high at 14:00", "12:00"]
    assert [o.call_id for o in outcome.outputs[0]] == [
        "functions.get_tide:0",
        "functions.get_time:1",
    ]
    assert outcome.final.finish_reason == "stop"
    assert len(ledger.rows()) == 2
