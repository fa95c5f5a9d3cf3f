"""The automatic tool loop: ask, run the tools the model called, send the results back, repeat.

Rule: each round is its own `ChatCall`, so each request is priced and gets its own ledger row.
All decisions (whether to go on, what the next request is, the outcome) live in `_ToolLoop`,
which does no I/O; `run_tool_loop` and `arun_tool_loop` are thin loops over it that differ only
in the awaits. The loop stops when the model answers without calling tools, or after
`max_rounds` requests (`stopped_by_limit`); an error in a round propagates with `.partial` set.
A blocking loop takes the same `pacer` as a plain `ChatCall.run`, so a tool-loop cell paints on
time in every round. `on_call` is handed each round's `ChatCall` before it runs, so a caller
that is interrupted mid-loop still holds every round's result (each call keeps its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from baseten_magic.core.errors import ParameterError
from baseten_magic.core.result import ChatResult, ToolCall
from baseten_magic.core.stream import Delta
from baseten_magic.core.tools import (
    ToolOutput,
    Tools,
    aexecute_tool_calls,
    execute_tool_calls,
    tool_messages,
    tool_specs,
)
from baseten_magic.engine.call import (
    AsyncChatClient,
    CallContext,
    ChatCall,
    Pacer,
    PreparedRequest,
    SyncChatClient,
)

__all__ = [
    "RoundCall",
    "RoundEnd",
    "RoundStart",
    "ToolLoopOutcome",
    "arun_tool_loop",
    "run_tool_loop",
]

#: Called before round `i` (0-based); may return the `on_delta` callback for that round.
RoundStart = Callable[[int], Callable[[Delta], None] | None]
#: Called after round `i` with its result and the outputs of the tools it called.
RoundEnd = Callable[[int, ChatResult, list[ToolOutput]], None]
#: Called with each round's call just before it runs.
RoundCall = Callable[[ChatCall], None]


@dataclass(frozen=True)
class ToolLoopOutcome:
    """All rounds of a tool loop; `final` is the last answer and `cost` the sum over rounds."""

    rounds: tuple[ChatResult, ...]
    outputs: tuple[tuple[ToolOutput, ...], ...]
    final: ChatResult
    cost: Decimal
    stopped_by_limit: bool

    @property
    def tool_outputs(self) -> list[ToolOutput]:
        """Every tool output of every round, in order."""
        return [out for round_outputs in self.outputs for out in round_outputs]


class _ToolLoop:
    """The loop's state and decisions, without I/O."""

    def __init__(
        self,
        request: PreparedRequest,
        fns: Tools,
        *,
        context: CallContext,
        max_rounds: int,
        on_round_start: RoundStart | None,
        on_round_end: RoundEnd | None,
        on_call: RoundCall | None = None,
    ) -> None:
        if max_rounds < 1:
            raise ParameterError(
                f"max_rounds must be 1 or more, got {max_rounds}; pass the number of requests "
                "the loop may send"
            )
        body = dict(request.body)
        if not body.get("tools"):
            body["tools"] = tool_specs(fns)
        self.body = body
        self.model = request.model
        self.fns = fns
        self.context = context
        self.max_rounds = max_rounds
        self.on_round_start = on_round_start
        self.on_round_end = on_round_end
        self.on_call = on_call
        self.rounds: list[ChatResult] = []
        self.outputs: list[tuple[ToolOutput, ...]] = []
        self.done = False
        self.stopped_by_limit = False

    def next_call(self) -> ChatCall | None:
        """The call for the next round, or None when the loop is over."""
        if self.done:
            return None
        index = len(self.rounds)
        on_delta = self.on_round_start(index) if self.on_round_start is not None else None
        request = PreparedRequest(body=dict(self.body), model=self.model)
        call = ChatCall(request, self.context, on_delta=on_delta)
        if self.on_call is not None:
            self.on_call(call)
        return call

    def calls_to_run(self, result: ChatResult) -> list[ToolCall]:
        """The tool calls of this round to execute (none when the loop ends with this round)."""
        self.rounds.append(result)
        wants_tools = bool(result.tool_calls) and result.finish_reason in ("tool_calls", "stop")
        if not wants_tools or len(self.rounds) >= self.max_rounds:
            self.done = True
            self.stopped_by_limit = wants_tools
            return []
        return list(result.tool_calls)

    def end_round(self, outputs: list[ToolOutput]) -> None:
        """Keep the outputs, report the round, and build the next request when there is one."""
        result = self.rounds[-1]
        self.outputs.append(tuple(outputs))
        if self.on_round_end is not None:
            self.on_round_end(len(self.rounds) - 1, result, outputs)
        if self.done:
            return
        messages = list(self.body["messages"])
        messages.extend(tool_messages(result, outputs, model=self.model))
        self.body["messages"] = messages
        choice = self.body.get("tool_choice")
        if choice == "required" or isinstance(choice, Mapping):
            # A forced call is wanted once; forcing it every round would never let the model
            # answer, so later rounds leave the choice to the model.
            self.body["tool_choice"] = "auto"

    def outcome(self) -> ToolLoopOutcome:
        final = self.rounds[-1]
        return ToolLoopOutcome(
            rounds=tuple(self.rounds),
            outputs=tuple(self.outputs),
            final=final,
            cost=sum((r.cost for r in self.rounds), Decimal(0)),
            stopped_by_limit=self.stopped_by_limit,
        )


def run_tool_loop(
    request: PreparedRequest,
    fns: Tools,
    *,
    context: CallContext,
    client: SyncChatClient,
    max_rounds: int = 5,
    on_round_start: RoundStart | None = None,
    on_round_end: RoundEnd | None = None,
    pacer: Pacer | None = None,
    on_call: RoundCall | None = None,
) -> ToolLoopOutcome:
    """Run the tool loop, blocking: at most `max_rounds` requests, one ledger row each.

    With a `pacer` (a painter) every round runs paced, as `ChatCall.run(client, pacer=...)`.
    """
    loop = _ToolLoop(
        request,
        fns,
        context=context,
        max_rounds=max_rounds,
        on_round_start=on_round_start,
        on_round_end=on_round_end,
        on_call=on_call,
    )
    while (call := loop.next_call()) is not None:
        calls = loop.calls_to_run(call.run(client, pacer=pacer))
        loop.end_round(execute_tool_calls(calls, fns) if calls else [])
    return loop.outcome()


async def arun_tool_loop(
    request: PreparedRequest,
    fns: Tools,
    *,
    context: CallContext,
    client: AsyncChatClient,
    max_rounds: int = 5,
    on_round_start: RoundStart | None = None,
    on_round_end: RoundEnd | None = None,
    on_call: RoundCall | None = None,
) -> ToolLoopOutcome:
    """The async twin of `run_tool_loop`; async tools are awaited."""
    loop = _ToolLoop(
        request,
        fns,
        context=context,
        max_rounds=max_rounds,
        on_round_start=on_round_start,
        on_round_end=on_round_end,
        on_call=on_call,
    )
    while (call := loop.next_call()) is not None:
        calls = loop.calls_to_run(await call.arun(client))
        loop.end_round(await aexecute_tool_calls(calls, fns) if calls else [])
    return loop.outcome()
