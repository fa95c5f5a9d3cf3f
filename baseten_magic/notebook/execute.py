"""Running a planned `%%baseten` cell: the call (or tool loop), painted live, always concluded.

Rule: whatever happens (an answer, an HTTP error, a cut stream, Ctrl-C), the cell's final state
is painted once, the call is remembered by the session, and the result lands in the namespace
(`_baseten`, and `-o VAR`). The call itself runs paced by the painter, a plain call and every
round of a tool loop alike, so the live display keeps its rhythm while no bytes arrive.
With the cache on (`--cache`, the `cache` setting), a request the response cache holds is
answered from it before anything else (no budget check, nothing sent, no ledger row), painted
and concluded like a live answer with "cached · saved $X" in the footer; a miss is sent as
usual and stored only when the call ends `ok`. Errors
the user can act on end as one `UsageError` line, said there only (the painted footer just
marks the answer as failed); Ctrl-C ends as one `CellInterrupted` line (a
KeyboardInterrupt, so Run All stops). An interrupted tool loop keeps every finished round: each
round's row in the session, and its text in the result. On a route that sends the answer whole
(`xpay`), a "waiting for the answer… N s" line stands above it until the answer arrives.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, MutableMapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from baseten_magic.core.errors import BasetenError, BasetenWarning, OutputParseError
from baseten_magic.core.result import ChatResult, Status
from baseten_magic.core.settings import error_line, redact
from baseten_magic.core.stream import Delta
from baseten_magic.engine.call import CallContext, ChatCall, SyncChatClient
from baseten_magic.engine.session import Session, cached_notes
from baseten_magic.notebook.options import usage_error
from baseten_magic.notebook.plan import CellPlan

__all__ = ["CellInterrupted", "is_terminal", "run_cell"]


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
    """Run `plan` to its end; raises a one-line UsageError, or CellInterrupted."""
    if plan.cache and _answer_from_cache(
        plan, session=session, shell=shell, namespace=namespace, cell=cell
    ):
        return
    try:
        context = session.context_for(
            "magic", cell=cell, pricing=plan.pricing, request=plan.request, route=plan.route
        )
        client = session.client_on(plan.route)
    except BasetenError as exc:
        raise usage_error(exc) from None
    painter = _painter(shell, session.settings.paint_interval)
    if plan.route == "xpay" and not is_terminal(shell):
        from baseten_magic.render.surfaces import IPythonSurface

        painter = _WaitingLine(painter, IPythonSurface())
    on_delta = session.on_delta(painter.add)
    conclude = _Conclusion(plan, context, painter, session, namespace)

    result: ChatResult | None = None
    extras: list[dict[str, Any]] = []
    rounds: list[ChatCall] = []  # a tool loop's calls, each holding its round's result
    try:
        with session.progress_to(_progress_listener(painter)):
            if plan.tools and plan.run_tools:
                result, extras = _run_tool_loop(
                    plan, context, client, painter, on_delta, round_calls=rounds
                )
            else:
                call = ChatCall(plan.request, context, on_delta=on_delta)
                try:
                    result = call.run(client, pacer=painter)
                finally:
                    result = call.result
    except KeyboardInterrupt:
        # ChatCall logged the row as interrupted; drop the half-read connection, paint the
        # partial answer with its mark, then stop Run All with one line, not a traceback.
        session.discard_client()
        finished = _finished(rounds)
        conclude(
            _so_far(finished, "interrupted") or result,
            extras,
            status="interrupted",
            rounds=finished,
        )
        raise CellInterrupted() from None
    except BaseException as exc:
        finished = _finished(rounds)
        said_below = isinstance(exc, BasetenError)
        conclude(
            _so_far(finished, "error") or result or _partial(exc),
            extras,
            status="error",
            rounds=finished,
            said_below=said_below,
        )
        if said_below:
            raise usage_error(exc) from None
        raise
    if plan.cache and result is not None:
        _store_answer(plan, session, result)
    failure = conclude(result, extras, status="ok", rounds=_finished(rounds))
    if failure is not None:
        raise usage_error(failure) from None


# -- the response cache ----------------------------------------------------------------------


def _answer_from_cache(
    plan: CellPlan,
    *,
    session: Session,
    shell: Any,
    namespace: MutableMapping[str, Any] | None,
    cell: int | None,
) -> bool:
    """Paint and remember the stored answer to the plan's request; False on a miss.

    A hit is looked up before the budget is checked: it sends nothing and costs nothing, so
    it is answered even when the cap is reached, and no ledger row is written.
    """
    try:
        hit = session.cached_answer(plan.request, plan.route)
        if hit is None:
            return False
        context = session.context_for("magic", cell=cell, pricing=plan.pricing, route=plan.route)
    except BasetenError as exc:
        raise usage_error(exc) from None
    painter = _painter(shell, session.settings.paint_interval)
    conclude = _Conclusion(plan, context, painter, session, namespace, saved=hit.saved_usd)
    failure = conclude(hit.result, [], status="ok")
    if failure is not None:
        raise usage_error(failure) from None
    return True


def _store_answer(plan: CellPlan, session: Session, result: ChatResult) -> None:
    """Keep an `ok` answer for the next identical request; a cache that fails only warns
    (the answer is shown and paid for either way)."""
    try:
        session.store_answer(plan.request, plan.route, result)
    except BasetenError as exc:
        warnings.warn(f"baseten_magic: {error_line(exc)}", BasetenWarning, stacklevel=2)


# The footer's error mark when the reason follows as the cell's error line.
_SEE_BELOW = "the call failed; the reason is below"


class CellInterrupted(KeyboardInterrupt):
    """The interrupt of a `%%baseten` cell, shown as one line instead of a traceback.

    Still a KeyboardInterrupt, so the execute reply is an error and Run All stops; IPython (and
    ipykernel, which sends the lines as the error's traceback) show `_render_traceback_`.
    """

    MESSAGE = (
        "interrupted by the user; the answer so far and its cost are kept in _baseten "
        "(and -o VAR); run the cell again for a full answer"
    )

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mKeyboardInterrupt\x1b[0m: {self.MESSAGE}"]


# Front ends and tools read the exception's class name (the reply's `ename`): it stays the
# name every Jupyter user knows for an interrupt.
CellInterrupted.__name__ = CellInterrupted.__qualname__ = "KeyboardInterrupt"


def _finished(calls: Sequence[ChatCall]) -> list[ChatResult]:
    """The results the calls of a tool loop ended with (each call keeps its own)."""
    return [call.result for call in calls if call.result is not None]


def _so_far(rounds: Sequence[ChatResult], status: Status) -> ChatResult | None:
    """What an unfinished tool loop gives the cell: every round's text as the screen shows it
    (rounds apart by a blank line), the last round's other fields, the cost of them all."""
    if not rounds:
        return None
    last = rounds[-1]
    result = dataclasses.replace(
        last,
        content="\n\n".join(r.content for r in rounds if r.content),
        reasoning="\n\n".join(r.reasoning for r in rounds if r.reasoning),
        cost=sum((r.cost for r in rounds), Decimal(0)),
    )
    if result.status == "ok":  # interrupted between rounds (while a tool ran)
        error = "interrupted by the user" if status == "interrupted" else "failed"
        result = dataclasses.replace(result, status=status, error=error)
    return result


@dataclasses.dataclass(frozen=True)
class _Conclusion:
    """The end of every cell: post-process, paint the final state (always), remember it."""

    plan: CellPlan
    context: CallContext
    painter: _Painter
    session: Session
    namespace: MutableMapping[str, Any] | None
    saved: Decimal | None = None  # a cache hit: what the stored answer cost when bought

    def __call__(
        self,
        result: ChatResult | None,
        extras: list[dict[str, Any]],
        *,
        status: str,
        rounds: Sequence[ChatResult] = (),
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
                pricing_mode=self.context.billing.mode,
                extra=extras,
                notes=self._notes(),
            )
        finally:
            self.session.remember(
                result,
                self.context,
                key=plan.key if plan.memory else None,
                messages=plan.cell.messages,
                rounds=rounds,
                saved=self.saved,
            )
            if self.namespace is not None:
                self.namespace["_baseten"] = result
                if plan.out:
                    self.namespace[plan.out] = result
        return failure

    def _notes(self) -> list[str]:
        notes = self.session.footer_notes(self.plan.earlier_turns)
        return notes if self.saved is None else [*cached_notes(self.saved), *notes]


def _run_tool_loop(
    plan: CellPlan,
    context: CallContext,
    client: SyncChatClient,
    painter: _Painter,
    on_delta: Callable[[Delta], None],
    *,
    round_calls: list[ChatCall],
) -> tuple[ChatResult, list[dict[str, Any]]]:
    from baseten_magic.engine.toolloop import run_tool_loop
    from baseten_magic.render.extras import tool_calls_bundle

    outcome = run_tool_loop(
        plan.request,
        list(plan.tools),
        context=context,
        client=client,
        on_round_start=_round_separator(on_delta),
        pacer=painter,
        on_call=round_calls.append,
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


class _WaitingLine:
    """A painter with a "waiting for the answer… N s" line above the answer, for a route that
    sends the answer whole: repainted on the call's ticks (the seconds) and after the server's
    progress reports, blanked when the answer (or the end) arrives."""

    #: How often the line is looked at while waiting; it is resent only when its text changes.
    POLL_S = 0.25

    def __init__(
        self, painter: _Painter, surface: Any, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._painter = painter
        self._surface = surface
        self._clock = clock
        self._started = clock()
        self._progress = ""  # set on the client's worker thread; a str swap is atomic
        self._shown = ""
        self._waiting = True
        self._slot = self._surface.show(self._bundle())

    @property
    def text(self) -> str:
        """The line as it reads now."""
        seconds = int(self._clock() - self._started)
        line = f"waiting for the answer… {seconds} s"
        return f"{line} · {self._progress}" if self._progress else line

    def _bundle(self) -> dict[str, str]:
        from baseten_magic.render.bundle import waiting_bundle

        self._shown = self.text
        return waiting_bundle(self._shown)

    def progress(self, done: float, total: float | None, message: str | None) -> None:
        """An MCP progress report: shown on the line at the next tick."""
        parts = [f"{done:g}/{total:g}" if total else f"{done:g}"]
        if message and message.strip():
            parts.append(redact(message.strip().splitlines()[0])[:80])
        self._progress = " · ".join(parts)

    def _stop_waiting(self) -> None:
        if self._waiting:
            from baseten_magic.render.bundle import empty_bundle

            self._waiting = False
            self._surface.update(self._slot, empty_bundle())

    def add(self, delta: Delta) -> None:
        if delta.content or delta.reasoning:
            self._stop_waiting()
        self._painter.add(delta)

    def tick(self) -> None:
        if self._waiting and self.text != self._shown:
            self._surface.update(self._slot, self._bundle())
        self._painter.tick()

    def next_deadline(self) -> float | None:
        own = self._clock() + self.POLL_S if self._waiting else None
        theirs = self._painter.next_deadline()
        if own is None or theirs is None:
            return own if theirs is None else theirs
        return min(own, theirs)

    def finish(
        self,
        result: ChatResult,
        *,
        pricing_mode: str,
        extra: Sequence[dict[str, Any]] = (),
        notes: Sequence[str] = (),
    ) -> None:
        self._stop_waiting()
        self._painter.finish(result, pricing_mode=pricing_mode, extra=extra, notes=notes)


def _progress_listener(painter: _Painter) -> Callable[[float, float | None, str | None], None]:
    """Where the session sends the server's progress reports for this cell."""
    if isinstance(painter, _WaitingLine):
        return painter.progress
    return lambda _done, _total, _message: None
