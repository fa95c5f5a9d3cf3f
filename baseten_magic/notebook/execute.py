"""Running a planned `%%baseten` cell: the call (or tool loop), painted live, always concluded.

Rule: whatever happens (an answer, an HTTP error, a cut stream, Ctrl-C), the cell's final state
is painted once, the call is remembered by the session, and the result lands in the namespace
(`_baseten`, and `-o VAR`). The call itself runs paced by the painter, a plain call and every
round of a tool loop alike, so the live display keeps its rhythm while no bytes arrive. Errors
the user can act on end as one `UsageError` line, said there only (the painted footer just
marks the answer as failed); Ctrl-C propagates so Run All stops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any, Protocol

from baseten_magic.core.errors import BasetenError, OutputParseError
from baseten_magic.core.result import ChatResult
from baseten_magic.core.stream import Delta
from baseten_magic.engine.call import CallContext, ChatCall
from baseten_magic.engine.session import Session
from baseten_magic.notebook.options import usage_error
from baseten_magic.notebook.plan import CellPlan

__all__ = ["is_terminal", "run_cell"]


class _Painter(Protocol):
    """What a cell needs from a painter (`render.painter.Painter` or the terminal printer)."""

    def add(self, delta: Delta) -> None: ...

    def tick(self) -> None: ...

    def next_deadline(self) -> float | None: ...

    def finish(
        self,
        result: ChatResult,
        *,
        pricing_mode: str,
        extra: Sequence[dict[str, Any]] = (),
        notes: Sequence[str] = (),
    ) -> None: ...


def is_terminal(shell: object) -> bool:
    """True in terminal IPython, where there is no rich front end to paint into."""
    return any(cls.__name__ == "TerminalInteractiveShell" for cls in type(shell).__mro__)


def _painter(shell: object, interval: float) -> _Painter:
    if is_terminal(shell):
        from baseten_magic.render.terminal import TerminalPrinter

        printer: _Painter = TerminalPrinter()
        return printer
    from baseten_magic.render.painter import Painter
    from baseten_magic.render.surfaces import IPythonSurface

    painter: _Painter = Painter(IPythonSurface(), interval=interval)
    return painter


def run_cell(
    plan: CellPlan,
    *,
    session: Session,
    shell: Any,
    namespace: MutableMapping[str, Any] | None,
    cell: int | None,
) -> None:
    """Run `plan` to its end; raises a one-line UsageError, or KeyboardInterrupt."""
    try:
        context = session.context_for(
            "magic", cell=cell, pricing=plan.pricing, request=plan.request
        )
    except BasetenError as exc:
        raise usage_error(exc) from None
    painter = _painter(shell, session.settings.paint_interval)
    on_delta = session.on_delta(painter.add)
    conclude = _Conclusion(plan, context, painter, session, namespace)

    result: ChatResult | None = None
    extras: list[dict[str, Any]] = []
    try:
        if plan.tools and plan.run_tools:
            result, extras = _run_tool_loop(plan, context, session, painter, on_delta)
        else:
            call = ChatCall(plan.request, context, on_delta=on_delta)
            try:
                result = call.run(session.client, pacer=painter)
            finally:
                result = call.result
    except KeyboardInterrupt:
        # ChatCall logged the row as interrupted; drop the half-read connection, paint the
        # partial answer with its mark, then let Run All stop.
        session.discard_client()
        conclude(result, extras, status="interrupted")
        raise
    except BaseException as exc:
        said_below = isinstance(exc, BasetenError)
        conclude(result or _partial(exc), extras, status="error", said_below=said_below)
        if said_below:
            raise usage_error(exc) from None
        raise
    failure = conclude(result, extras, status="ok")
    if failure is not None:
        raise usage_error(failure) from None


# The footer's error mark when the reason follows as the cell's error line.
_SEE_BELOW = "the call failed; the reason is below"


@dataclasses.dataclass(frozen=True)
class _Conclusion:
    """The end of every cell: post-process, paint the final state (always), remember it."""

    plan: CellPlan
    context: CallContext
    painter: _Painter
    session: Session
    namespace: MutableMapping[str, Any] | None

    def __call__(
        self,
        result: ChatResult | None,
        extras: list[dict[str, Any]],
        *,
        status: str,
        said_below: bool = False,
    ) -> BaseException | None:
        """Paint and remember `result`; `said_below`: a UsageError with the reason follows."""
        plan = self.plan
        failure: BaseException | None = None
        if result is None:  # failed before any result existed (for example in a tool loop)
            result = ChatResult(
                model=str(plan.request.body["model"]),
                status="interrupted" if status == "interrupted" else "error",
                error="interrupted by the user" if status == "interrupted" else "failed",
            )
        if result.status == "ok":
            result, more, failure = _post_process(plan, result)
            extras = [*extras, *more]
        shown = self.session.shown(result)
        if said_below and shown.status == "error":
            # The UsageError line under the output carries the message (and ends the cell in
            # error, so Run All stops); the footer only marks the answer as failed, so the
            # same text is not said twice. The result kept and logged is untouched.
            shown = dataclasses.replace(shown, error=_SEE_BELOW)
        try:
            self.painter.finish(
                shown,
                pricing_mode=plan.pricing.mode,
                extra=extras,
                notes=self.session.footer_notes(plan.earlier_turns),
            )
        finally:
            self.session.remember(
                result,
                self.context,
                key=plan.key if plan.memory else None,
                messages=plan.cell.messages,
            )
            if self.namespace is not None:
                self.namespace["_baseten"] = result
                if plan.out:
                    self.namespace[plan.out] = result
        return failure


def _run_tool_loop(
    plan: CellPlan,
    context: CallContext,
    session: Session,
    painter: _Painter,
    on_delta: Callable[[Delta], None],
) -> tuple[ChatResult, list[dict[str, Any]]]:
    from baseten_magic.engine.toolloop import run_tool_loop
    from baseten_magic.render.extras import tool_calls_bundle

    outcome = run_tool_loop(
        plan.request,
        list(plan.tools),
        context=context,
        client=session.client,
        on_round_start=_round_separator(on_delta),
        pacer=painter,
    )
    extras: list[dict[str, Any]] = []
    calls = [call for r in outcome.rounds for call in r.tool_calls]
    if calls:
        extras.append(tool_calls_bundle(calls, outcome.tool_outputs))
    # The result of the cell is the final answer, costed over every round.
    final = dataclasses.replace(outcome.final, cost=outcome.cost)
    return final, extras


def _post_process(
    plan: CellPlan, result: ChatResult
) -> tuple[ChatResult, list[dict[str, Any]], BaseException | None]:
    """Parse `--json` / `--schema` replies and gather the extra output blocks."""
    from baseten_magic.render import extras as render_extras

    extras: list[dict[str, Any]] = []
    failure: BaseException | None = None
    if plan.json_mode or plan.schema is not None:
        from baseten_magic.core.structured import parse_reply

        try:
            parsed = parse_reply(result.content, plan.schema)
        except OutputParseError as exc:
            failure = exc
        else:
            result = dataclasses.replace(result, parsed=parsed)
            extras.append(render_extras.json_bundle(parsed))
    if result.tool_calls and not plan.run_tools:
        extras.append(render_extras.tool_calls_bundle(result.tool_calls))
    if result.logprobs:
        extras.append(render_extras.logprobs_bundle(result.logprobs))
    if len(result.choices) > 1:
        extras.append(render_extras.choices_bundle(result.choices))
    return result, extras, failure


def _partial(error: BaseException) -> ChatResult | None:
    partial = getattr(error, "partial", None)
    return partial if isinstance(partial, ChatResult) else None


def _round_separator(
    on_delta: Callable[[Delta], None],
) -> Callable[[int], Callable[[Delta], None]]:
    """Paint the rounds of a tool loop one after another, each round's text starting afresh."""
    seen = {"reasoning": False, "content": False}

    def deliver(delta: Delta) -> None:
        seen["reasoning"] |= bool(delta.reasoning)
        seen["content"] |= bool(delta.content)
        on_delta(delta)

    def start(index: int) -> Callable[[Delta], None]:
        if index:
            on_delta(
                Delta(
                    reasoning="\n\n" if seen["reasoning"] else "",
                    content="\n\n" if seen["content"] else "",
                )
            )
        return deliver

    return start
