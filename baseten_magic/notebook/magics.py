"""The `%%baseten` cell magic and the `%baseten` line magic.

Rule: a thin adapter. Options are parsed and checked first (any problem is one `UsageError`
line, before a request is sent); the cell becomes messages through `cells`, `interpolate` and
`conversation`; `api.ChatCall` runs the request on the shell's one `Client` (which prices it and
writes its ledger row); a painter draws it and always finishes, whatever happened. Per-shell
state (settings, conversation, session results, client, ledger) lives on the `BasetenMagics`
instance, never in module globals. Settings are traitlets traits, so `%config
BasetenMagics.model = "glm"`, `ipython_config.py` and the widget panel all share them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import keyword
import os
import shlex
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from IPython.core import magic as _magic
from IPython.core import magic_arguments as _magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from traitlets import Bool, Dict, Float, Int, TraitError, Unicode, default, validate

from baseten_magic.core import settings
from baseten_magic.core.catalog import Catalog, default_catalog
from baseten_magic.core.errors import BasetenError, OutputParseError, ParameterError
from baseten_magic.core.params import PARAMETERS, parse_assignment, validate_params
from baseten_magic.core.pricing import PRICING_ENV, PRICING_MODES, Pricing, PricingMode
from baseten_magic.core.result import ChatResult
from baseten_magic.core.stream import Delta
from baseten_magic.engine.call import CallContext, ChatCall, PreparedRequest, prepare_request
from baseten_magic.engine.conversation import Conversation, cell_key
from baseten_magic.io.ledger import Ledger, LedgerRow
from baseten_magic.notebook.cells import ParsedCell, parse_cell
from baseten_magic.notebook.interpolate import interpolate
from baseten_magic.render.tables import cost_table, models_table

if TYPE_CHECKING:
    from IPython.core.interactiveshell import ExecutionInfo, InteractiveShell

    from baseten_magic.io.client import Client
    from baseten_magic.server import LocalServer

MODEL_ENV = "BASETEN_MAGIC_MODEL"
DEFAULT_MODEL_ALIAS = "gpt-oss"
SUBCOMMANDS = ("cost", "models", "reset", "help", "panel", "local", "config")
# Parameters with their own trait and option; `params` holds any of the others.
_NAMED_PARAMS = ("temperature", "top_p", "max_tokens", "reasoning_effort")
_RESERVED = ("model", "messages", "stream")

_F = TypeVar("_F", bound=Callable[..., Any])


class _Decorator(Protocol):
    def __call__(self, func: _F, /) -> _F: ...


# IPython's argument helpers are untyped; these aliases give them the types they have.
magic_arguments: Callable[[], _Decorator] = _magic_arguments.magic_arguments
argument: Callable[..., _Decorator] = _magic_arguments.argument
line_cell_magic: _Decorator = _magic.line_cell_magic


class _Painter(Protocol):
    """What the magic needs from a painter (`render.painter.Painter` or the terminal printer)."""

    def add(self, delta: Delta) -> None: ...

    def tick(self) -> None: ...

    def next_deadline(self) -> float | None: ...

    def finish(
        self, result: ChatResult, *, pricing_mode: str, extra: Sequence[dict[str, Any]] = ()
    ) -> None: ...


@dataclass(frozen=True)
class CellPlan:
    """Everything one `%%baseten` cell will do, decided before anything is sent."""

    request: PreparedRequest
    cell: ParsedCell
    key: str
    memory: bool
    pricing: Pricing
    out: str | None
    tools: tuple[Callable[..., Any], ...]
    run_tools: bool
    json_mode: bool
    schema: object | None


def _usage(error: BaseException) -> UsageError:
    """One red line: the first line of the message, with any secret removed."""
    return UsageError(settings.error_line(error))


def _as_value(raw: str) -> Any:
    """An option's text as JSON when it parses (`0.7`, `null`), else the string itself."""
    return parse_assignment(f"x={raw}")[1]


@magics_class
class BasetenMagics(Magics):
    """`%%baseten` / `%baseten`: Baseten's Chat Completions in a notebook."""

    model = Unicode(help="Model slug or alias (gpt-oss, glm, kimi, deepseek, ...).").tag(
        config=True
    )
    system = Unicode("", help="System prompt sent first with every cell.").tag(config=True)
    temperature = Float(None, allow_none=True, help="Sampling temperature (0–4).").tag(config=True)
    top_p = Float(None, allow_none=True, help="Nucleus sampling (0–1].").tag(config=True)
    max_tokens = Int(None, allow_none=True, help="Answer length limit, reasoning included.").tag(
        config=True
    )
    reasoning_effort = Unicode(None, allow_none=True, help="low, medium or high.").tag(config=True)
    thinking = Bool(None, allow_none=True, help="Switch reasoning on/off where a model can.").tag(
        config=True
    )
    params = Dict(help="Any other request parameters, e.g. {'top_k': 40}.").tag(config=True)
    pricing_mode = Unicode(help="per_token (list prices) or per_call (flat fee).").tag(config=True)
    memory = Bool(True, help="Cells see earlier cells' exchanges (the conversation).").tag(
        config=True
    )
    stream = Bool(True, help="Stream answers as they arrive.").tag(config=True)
    show_reasoning = Bool(True, help="Show the model's reasoning above the answer.").tag(
        config=True
    )
    # 90 ms leaves room for scheduling within the 100 ms a token may wait to be shown.
    paint_interval = Float(0.09, help="Seconds between repaints while streaming.").tag(config=True)

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        # Plain state first: config loading (in super().__init__) may already call __repr__.
        self.session_id: str = uuid.uuid4().hex
        self.conversation = Conversation()
        self.rows: list[LedgerRow] = []
        self.history: list[ChatResult] = []
        self.last_prompt: str = ""
        self.catalog: Catalog | None = None  # set by `%baseten models --refresh`
        self.local_server: LocalServer | None = None
        # The variables `%baseten local` replaced, as they were before (None: unset then).
        self._environment_before_local: dict[str, str | None] | None = None
        self._client: Client | None = None
        self._ledger: Ledger | None = None
        self._last_run: tuple[str, str] | None = None  # (cell id, raw cell) from pre_run_cell
        super().__init__(shell=shell, **kwargs)  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return (
            f"BasetenMagics(model={self.model!r}, session={self.session_id[:8]!r}, "
            f"exchanges={len(self.conversation)}, calls={len(self.history)})"
        )

    # -- trait defaults and validation -------------------------------------------------------

    @default("model")
    def _default_model(self) -> str:
        return os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL_ALIAS

    @default("pricing_mode")
    def _default_pricing_mode(self) -> str:
        raw = os.environ.get(PRICING_ENV, "").strip().lower().replace("-", "_")
        return raw if raw in PRICING_MODES else "per_token"

    @validate("model")
    def _check_model(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"]).strip()
        try:
            (self.catalog or default_catalog()).resolve(value)
        except ParameterError as exc:
            raise TraitError(str(exc)) from None
        return value

    @validate(*_NAMED_PARAMS)
    def _check_named_param(self, proposal: Mapping[str, Any]) -> Any:
        name, value = proposal["trait"].name, proposal["value"]
        if value is None:
            return None
        try:
            return validate_params({name: value})[name]
        except ParameterError as exc:
            raise TraitError(str(exc)) from None

    @validate("params")
    def _check_params(self, proposal: Mapping[str, Any]) -> dict[str, Any]:
        value = dict(proposal["value"])
        for name in _RESERVED:
            if name in value:
                raise TraitError(
                    f"BasetenMagics.params cannot hold {name!r}, got it; set it through its "
                    "own setting (model, the cell body, stream)"
                )
        try:
            return validate_params(value)
        except ParameterError as exc:
            raise TraitError(str(exc)) from None

    @validate("pricing_mode")
    def _check_pricing_mode(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"]).strip().lower().replace("-", "_")
        if value not in PRICING_MODES:
            raise TraitError(
                f"pricing_mode must be per_token or per_call, got {proposal['value']!r}; "
                'pass e.g. %config BasetenMagics.pricing_mode = "per_call"'
            )
        return value

    @validate("paint_interval")
    def _check_paint_interval(self, proposal: Mapping[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 10:
            raise TraitError(
                f"paint_interval must be from 0 to 10 seconds, got {value}; pass e.g. 0.1"
            )
        return value

    # -- state shared with the panel ---------------------------------------------------------

    def defaults(self) -> dict[str, Any]:
        """The request parameters the settings give (named settings win over `params`)."""
        out = dict(self.params)
        for name in _NAMED_PARAMS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @property
    def ledger(self) -> Ledger:
        """The cost ledger at `BASETEN_MAGIC_LEDGER` (reopened when that variable changes)."""
        path = settings.ledger_path()
        if self._ledger is None or self._ledger.path != path:
            self._ledger = Ledger(path)
        return self._ledger

    @property
    def client(self) -> Client:
        """The HTTP client shared by this shell's cells (a new one after an interrupt)."""
        if self._client is None:
            from baseten_magic.io.client import (
                Client,  # httpx loads with the first cell, not with %load_ext
            )

            self._client = Client()
        return self._client

    def close(self) -> None:
        """Release the client; stop a `%baseten local` server and restore the variables it set."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.local_server is not None:
            self.local_server.stop()
            self.local_server = None
        if self._environment_before_local is not None:
            # Otherwise the kernel would keep pointing at a stopped server, the user's key lost.
            for name, value in self._environment_before_local.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._environment_before_local = None

    def _pre_run_cell(self, info: ExecutionInfo) -> None:
        # The front end's cell id identifies a cell across edits (see conversation.py).
        cell_id = getattr(info, "cell_id", None)
        self._last_run = (str(cell_id), str(info.raw_cell)) if cell_id else None

    def _cell_id(self, cell: str) -> str | None:
        # Only trust the id when it belongs to the cell being run (the magic may be called
        # directly, without pre_run_cell).
        if self._last_run is not None and cell.strip() in self._last_run[1]:
            return self._last_run[0]
        shell = self.shell
        get_parent = getattr(shell, "get_parent", None)
        if callable(get_parent):
            try:
                metadata = get_parent().get("metadata") or {}
            except Exception:
                return None
            cell_id = metadata.get("cellId")
            return str(cell_id) if cell_id else None
        return None

    # -- the magic ---------------------------------------------------------------------------

    @magic_arguments()
    @argument("-m", "--model", help="model slug or alias (gpt-oss, glm, kimi, deepseek, ...)")
    @argument("--system", metavar="TEXT", help="system prompt for this cell")
    @argument("--temperature", metavar="X", help="sampling temperature, 0 to 4")
    @argument("--top-p", metavar="X", help="nucleus sampling, above 0 up to 1")
    @argument("--max-tokens", metavar="N", help="answer length limit (reasoning included)")
    @argument("--reasoning-effort", metavar="low|medium|high", help="reasoning depth")
    @argument(
        "--thinking",
        dest="thinking",
        action="store_const",
        const=True,
        default=None,
        help="switch reasoning on (models where it is optional)",
    )
    @argument(
        "--no-thinking",
        dest="thinking",
        action="store_const",
        const=False,
        help="switch reasoning off (models where it is optional)",
    )
    @argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any request parameter; repeatable; VALUE is JSON if it parses, else a string",
    )
    @argument("-o", "--out", metavar="VAR", help="store the result object as VAR")
    @argument("--no-stream", action="store_true", help="one request without streaming")
    @argument("--tools", metavar="NAME[,NAME...]", help="notebook functions offered as tools")
    @argument("--run-tools", action="store_true", help="run the tools the model calls, and loop")
    @argument("--json", action="store_true", help="JSON mode; the reply is parsed into .parsed")
    @argument("--schema", metavar="NAME", help="structured output against a schema in the notebook")
    @argument("-i", "--interpolate", action="store_true", help="replace {{name}} with values")
    @argument("--no-memory", action="store_true", help="this cell neither reads nor writes memory")
    @argument("--pricing", metavar="per_token|per_call", help="how this call is priced")
    @line_cell_magic
    def baseten(self, line: str, cell: str | None = None) -> None:
        """Ask a Baseten model: the cell body is the prompt, the answer streams below.

        As a line magic: %baseten cost | models [--refresh] | reset | help [params] | panel |
        local [--tps N] | config.
        """
        if cell is None:
            self._line(line)
        else:
            self._cell(line, cell)

    # -- cells -------------------------------------------------------------------------------

    def _cell(self, line: str, cell: str) -> None:
        args = _parse_options(line)
        try:
            plan = self._plan(args, line, cell)
        except BasetenError as exc:  # ParameterError, ConfigurationError: nothing was sent
            raise _usage(exc) from None
        self.last_prompt = cell
        self._execute(plan)

    def _plan(self, args: Any, line: str, cell: str) -> CellPlan:
        namespace: Mapping[str, Any] = self.shell.user_ns if self.shell is not None else {}
        out = args.out
        if out is not None and (not out.isidentifier() or keyword.iskeyword(out)):
            raise ParameterError(
                f"-o expects a Python variable name, got {out!r}; pass e.g. -o answer"
            )
        text = interpolate(cell, namespace) if args.interpolate else cell
        parsed = parse_cell(text)
        memory = self.memory and not args.no_memory
        key = cell_key(self._cell_id(cell), line, cell)
        default_system = args.system if args.system is not None else self.system
        if memory:
            system = parsed.system_prompt(default_system)
            messages = self.conversation.messages_for(key, parsed.messages, system)
        else:
            messages = parsed.request_messages(default_system)

        params = self._cell_params(args)
        tools = self._tools(args, namespace, params)
        schema = self._schema(args, namespace)
        if args.json or schema is not None:
            from baseten_magic.core.structured import response_format_for

            response_format = response_format_for(bool(args.json), schema)
            if response_format is not None:
                params["response_format"] = response_format

        pricing = Pricing(mode=self._pricing_mode(args.pricing))
        request = prepare_request(
            messages,
            model=args.model if args.model is not None else self.model,
            stream=self.stream and not args.no_stream,
            thinking=args.thinking if args.thinking is not None else self.thinking,
            params=params,
            catalog=self.catalog,
        )
        # Fail here, not inside the call, so a missing key or bad URL sends nothing.
        settings.api_key()
        settings.base_url()
        return CellPlan(
            request=request,
            cell=parsed,
            key=key,
            memory=memory,
            pricing=pricing,
            out=out,
            tools=tuple(tools),
            run_tools=bool(args.run_tools),
            json_mode=bool(args.json),
            schema=schema,
        )

    def _cell_params(self, args: Any) -> dict[str, Any]:
        """Settings, then `--param`s, then the named options: later ones win."""
        params = self.defaults()
        for assignment in args.param:
            name, value = parse_assignment(assignment)
            params[name] = value
        for name in _NAMED_PARAMS:
            raw = getattr(args, name)
            if raw is not None:
                params[name] = _as_value(raw) if name != "reasoning_effort" else raw
        return params

    def _pricing_mode(self, raw: str | None) -> PricingMode:
        wanted = str(self.pricing_mode if raw is None else raw).strip().lower().replace("-", "_")
        for mode in PRICING_MODES:
            if mode == wanted:
                return mode
        raise ParameterError(
            f"--pricing must be per_token or per_call, got {raw!r}; pass e.g. --pricing per_call"
        )

    def _tools(
        self, args: Any, namespace: Mapping[str, Any], params: dict[str, Any]
    ) -> list[Callable[..., Any]]:
        if not args.tools:
            if args.run_tools:
                raise ParameterError(
                    "--run-tools needs --tools NAME[,NAME...], got no tools; "
                    "name the functions to offer, e.g. --tools get_weather --run-tools"
                )
            return []
        from baseten_magic.core.tools import resolve_tools, tool_specs

        names = [name.strip() for name in args.tools.split(",") if name.strip()]
        fns = resolve_tools(names, namespace)
        params["tools"] = tool_specs(fns)
        return fns

    def _schema(self, args: Any, namespace: Mapping[str, Any]) -> object | None:
        if args.schema is None:
            return None
        name = args.schema.strip()
        if name not in namespace:
            close = difflib.get_close_matches(name, [str(k) for k in namespace], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ParameterError(
                f"--schema names {name!r}, which is not defined in the notebook; {hint}"
                "define the dataclass, TypedDict, pydantic model or JSON schema first"
            )
        schema: object = namespace[name]
        return schema

    def _painter(self) -> _Painter:
        if _is_terminal(self.shell):
            from baseten_magic.render.terminal import TerminalPrinter

            printer: _Painter = TerminalPrinter()
            return printer
        from baseten_magic.render.painter import Painter
        from baseten_magic.render.surfaces import IPythonSurface

        painter: _Painter = Painter(IPythonSurface(), interval=self.paint_interval)
        return painter

    def _context(self, plan: CellPlan) -> CallContext:
        count = getattr(self.shell, "execution_count", None)
        return CallContext(
            session=self.session_id,
            source="magic",
            cell=count if isinstance(count, int) else None,
            pricing=plan.pricing,
            ledger=self.ledger,
            # A stable id per conversation raises the prompt-cache hit rate (BASETEN.md).
            headers={"x-session-affinity": self.session_id},
        )

    def _execute(self, plan: CellPlan) -> None:
        try:
            context = self._context(plan)
        except BasetenError as exc:
            raise _usage(exc) from None
        painter = self._painter()
        show_reasoning = bool(self.show_reasoning)

        def on_delta(delta: Delta) -> None:
            if not show_reasoning and delta.reasoning:
                delta = Delta(delta.content, "", delta.tool_calls_changed)
            painter.add(delta)
            painter.tick()  # also on keep-alive reads (tool loops read without a pacer)

        result: ChatResult | None = None
        extras: list[dict[str, Any]] = []
        failure: BaseException | None = None
        try:
            if plan.tools and plan.run_tools:
                result, extras = self._run_tool_loop(plan, context, on_delta)
            else:
                call = ChatCall(plan.request, context, on_delta=on_delta)
                try:
                    # Paced: the painter paints on time even while no bytes arrive.
                    result = call.run(self.client, pacer=painter)
                finally:
                    result = call.result
        except KeyboardInterrupt:
            # ChatCall logged the row as interrupted; drop the half-read connection, paint the
            # partial answer with its mark, then let Run All stop.
            self._discard_client()
            self._conclude(
                plan=plan,
                context=context,
                painter=painter,
                result=result,
                extras=extras,
                status="interrupted",
            )
            raise
        except BaseException as exc:
            self._conclude(
                plan=plan,
                context=context,
                painter=painter,
                result=result or _partial(exc),
                extras=extras,
                status="error",
            )
            if isinstance(exc, BasetenError):
                raise _usage(exc) from None
            raise
        failure = self._conclude(
            plan=plan, context=context, painter=painter, result=result, extras=extras, status="ok"
        )
        if failure is not None:
            raise _usage(failure) from None

    def _conclude(
        self,
        *,
        plan: CellPlan,
        context: CallContext,
        painter: _Painter,
        result: ChatResult | None,
        extras: list[dict[str, Any]],
        status: str,
    ) -> BaseException | None:
        """Post-process, paint the final state (always) and remember the result."""
        failure: BaseException | None = None
        if result is None:  # failed before any result existed (for example in a tool loop)
            result = ChatResult(
                model=str(plan.request.body["model"]),
                status="interrupted" if status == "interrupted" else "error",
                error="interrupted by the user" if status == "interrupted" else "failed",
            )
        if result.status == "ok":
            result, more, failure = self._post_process(plan, result)
            extras = [*extras, *more]
        shown = result if self.show_reasoning else dataclasses.replace(result, reasoning="")
        try:
            painter.finish(shown, pricing_mode=plan.pricing.mode, extra=extras)
        finally:
            self._remember(plan, result, context)
        return failure

    def _run_tool_loop(
        self, plan: CellPlan, context: CallContext, on_delta: Callable[[Delta], None]
    ) -> tuple[ChatResult, list[dict[str, Any]]]:
        from baseten_magic.engine.toolloop import run_tool_loop
        from baseten_magic.render.extras import tool_calls_bundle

        outcome = run_tool_loop(
            plan.request,
            list(plan.tools),
            context=context,
            client=self.client,
            on_round_start=_round_separator(on_delta),
        )
        extras: list[dict[str, Any]] = []
        calls = [call for r in outcome.rounds for call in r.tool_calls]
        if calls:
            extras.append(tool_calls_bundle(calls, outcome.tool_outputs))
        # The result of the cell is the final answer, costed over every round.
        final = dataclasses.replace(outcome.final, cost=outcome.cost)
        return final, extras

    def _post_process(
        self, plan: CellPlan, result: ChatResult
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

    def _remember(self, plan: CellPlan, result: ChatResult, context: CallContext) -> None:
        self.history.append(result)
        self.rows.append(
            LedgerRow.from_result(
                result,
                session=self.session_id,
                cell=context.cell,
                pricing_mode=plan.pricing.mode,
                source="magic",
            )
        )
        if plan.memory:
            self.conversation.record(plan.key, plan.cell.messages, result.content, result.status)
        if self.shell is not None:
            self.shell.user_ns["_baseten"] = result
            if plan.out:
                self.shell.user_ns[plan.out] = result

    def _discard_client(self) -> None:
        if self._client is not None:
            self._client.interrupted()
            self._client.close()
            self._client = None

    # -- line subcommands --------------------------------------------------------------------

    def _line(self, line: str) -> None:
        words = _split(line)
        if not words:
            words = ["help"]
        name, rest = words[0].lower(), words[1:]
        if name not in SUBCOMMANDS:
            close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(
                f"unknown %baseten subcommand {words[0]!r}; {hint}"
                f"expected one of {', '.join(SUBCOMMANDS)} (a prompt needs %%baseten, two %)"
            )
        handler: Callable[[list[str]], None] = getattr(self, f"_sub_{name}")
        try:
            handler(rest)
        except BasetenError as exc:
            raise _usage(exc) from None

    @staticmethod
    def _no_args(name: str, rest: list[str]) -> None:
        if rest:
            raise UsageError(
                f"%baseten {name} takes no arguments, got {' '.join(rest)!r}; run %baseten {name}"
            )

    def _sub_cost(self, rest: list[str]) -> None:
        self._no_args("cost", rest)
        _display(cost_table(self.rows))

    def _sub_models(self, rest: list[str]) -> None:
        if rest not in ([], ["--refresh"]):
            raise UsageError(
                f"%baseten models takes only --refresh, got {' '.join(rest)!r}; "
                "run %baseten models or %baseten models --refresh"
            )
        if rest:
            payload = self.client.list_models()
            self.catalog = (self.catalog or default_catalog()).refreshed(payload)
        _display(models_table(self.catalog or default_catalog()))

    def _sub_reset(self, rest: list[str]) -> None:
        self._no_args("reset", rest)
        count = len(self.conversation)
        self.conversation.reset()
        print(f"Conversation reset ({count} exchange{'s' if count != 1 else ''} forgotten).")

    def _sub_help(self, rest: list[str]) -> None:
        if rest not in ([], ["params"]):
            raise UsageError(
                f"%baseten help takes only 'params', got {' '.join(rest)!r}; "
                "run %baseten help or %baseten help params"
            )
        print(parameters_help() if rest else help_text(_options_help()))

    def _sub_panel(self, rest: list[str]) -> None:
        self._no_args("panel", rest)
        from baseten_magic.panel.app import show_panel

        show_panel(self)

    def _sub_local(self, rest: list[str]) -> None:
        tps: float | None = None
        if rest:
            if len(rest) != 2 or rest[0] != "--tps":
                raise UsageError(
                    f"%baseten local takes only --tps N, got {' '.join(rest)!r}; "
                    "run %baseten local or %baseten local --tps 40"
                )
            try:
                tps = float(rest[1])
            except ValueError:
                tps = -1.0
            if not tps > 0:
                raise UsageError(
                    f"--tps must be a positive number of tokens per second, got {rest[1]!r}; "
                    "pass e.g. --tps 40"
                )
        from baseten_magic.server import use_local_server

        if self.local_server is not None:
            self.local_server.stop()
        if self._environment_before_local is None:
            self._environment_before_local = {
                name: os.environ.get(name) for name in (settings.BASE_URL_ENV, settings.API_KEY_ENV)
            }
        self.local_server = use_local_server(tokens_per_second=tps)
        self._discard_client()  # the next cell connects to the new server
        speed = f" at {tps:g} tokens/s" if tps else ""
        print(
            f"Local server running at {self.local_server.url}{speed}; BASETEN_BASE_URL and "
            "BASETEN_API_KEY now point at it for this kernel (until %unload_ext baseten_magic)."
        )

    def _sub_config(self, rest: list[str]) -> None:
        self._no_args("config", rest)
        print(self.config_text())

    def config_text(self) -> str:
        """The effective settings, as text (the API key is never shown, only whether it is set)."""
        try:
            model = (self.catalog or default_catalog()).resolve(self.model).slug
        except ParameterError:
            model = self.model
        key_state = "set" if os.environ.get(settings.API_KEY_ENV, "").strip() else "NOT SET"
        try:
            base_url = settings.base_url()
        except BasetenError as exc:
            base_url = f"invalid ({settings.redact(str(exc).splitlines()[0])})"
        lines = [
            f"model            {self.model} ({model})",
            f"system           {self.system!r}",
            f"parameters       {self.defaults() or '{}'}",
            f"thinking         {self.thinking}",
            f"pricing_mode     {self.pricing_mode}",
            f"memory           {self.memory} ({len(self.conversation)} exchanges)",
            f"stream           {self.stream}",
            f"show_reasoning   {self.show_reasoning}",
            f"paint_interval   {self.paint_interval}",
            f"base URL         {base_url}",
            f"API key          {key_state} ({settings.API_KEY_ENV})",
            f"ledger           {settings.ledger_path()}",
            f"session          {self.session_id}",
        ]
        return "\n".join(lines)


def _display(bundle: Mapping[str, str]) -> None:
    from IPython import display as ipython_display

    show: Callable[..., Any] = ipython_display.display
    show(dict(bundle), raw=True)


def _is_terminal(shell: object) -> bool:
    """True in terminal IPython, where there is no rich front end to paint into."""
    return any(cls.__name__ == "TerminalInteractiveShell" for cls in type(shell).__mro__)


def parameters_help() -> str:
    """The request parameters, one line each."""
    width = max(len(name) for name in PARAMETERS)
    lines = [f"Request parameters ({len(PARAMETERS)}); pass any with --param NAME=VALUE:"]
    lines.extend(f"  {name:<{width}}  {spec.help}" for name, spec in PARAMETERS.items())
    return "\n".join(lines)


def help_text(options: str) -> str:
    """`%baseten help`: options, subcommands, multi-turn syntax, memory, interpolation, params."""
    from baseten_magic.engine import conversation
    from baseten_magic.notebook import cells
    from baseten_magic.notebook import interpolate as interpolation

    def section(title: str, doc: str | None) -> str:
        return f"{title}\n{'=' * len(title)}\n{(doc or '').strip()}\n"

    subcommands = "\n".join(
        [
            "%baseten cost               this session's calls, tokens and cost, with totals",
            "%baseten models [--refresh] the models, aliases, context and prices",
            "%baseten reset              forget the conversation",
            "%baseten help [params]      this help (or only the request parameters)",
            "%baseten panel              the widget panel",
            "%baseten local [--tps N]    start a local offline server and point this kernel at it",
            "%baseten config             the effective settings (%config BasetenMagics.<name>)",
        ]
    )
    return "\n".join(
        [
            section("%%baseten options", options),
            section("%baseten subcommands", subcommands),
            section("Multi-turn cells", cells.__doc__),
            section("Conversation memory", conversation.__doc__),
            section("Interpolation (-i)", interpolation.__doc__),
            parameters_help(),
        ]
    )


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the magics on this shell; loading twice keeps the existing instance."""
    shell: Any = ipython
    if isinstance(shell.magics_manager.registry.get(BasetenMagics.__name__), BasetenMagics):
        return
    try:
        magics = BasetenMagics(shell=ipython)  # Magics adds itself to shell.configurables
    except TraitError as exc:
        # A bad value in the shell's config must not make the magics unusable: say which, and
        # start from the defaults.
        shell.configurables[:] = [c for c in shell.configurables if type(c) is not BasetenMagics]
        warnings.warn(
            f"baseten_magic: ignoring the BasetenMagics configuration ({exc}); fix it with "
            "%config BasetenMagics.<name> = <value>",
            stacklevel=2,
        )
        magics = BasetenMagics(shell=ipython, parent=None)
    shell.register_magics(magics)
    shell.events.register("pre_run_cell", magics._pre_run_cell)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Unregister the magics and release this shell's client and local server."""
    shell: Any = ipython
    manager = shell.magics_manager
    magics = manager.registry.pop(BasetenMagics.__name__, None)
    if not isinstance(magics, BasetenMagics):
        return
    for kind in ("line", "cell"):
        manager.magics[kind].pop("baseten", None)
    if magics in shell.configurables:
        shell.configurables.remove(magics)
    with contextlib.suppress(ValueError):
        shell.events.unregister("pre_run_cell", magics._pre_run_cell)
    magics.close()


def _partial(error: BaseException) -> ChatResult | None:
    partial = getattr(error, "partial", None)
    return partial if isinstance(partial, ChatResult) else None


def _split(line: str) -> list[str]:
    """Shell-like words (quotes removed, so --system "Be terse." is one value)."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"could not split the options ({exc}); check the quotes") from None


def _parse_options(line: str) -> Any:
    magic: Any = BasetenMagics.baseten
    return magic.parser.parse_args(_split(line))


def _options_help() -> str:
    """The `%%baseten` options, as argparse formats them."""
    magic: Any = BasetenMagics.baseten
    return str(magic.parser.format_help())


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
