"""The `%baseten` line subcommands: cost, history, models, reset, help, panel, local, config,
key.

Rule: one table says what each subcommand takes; one argparse parser with a subparser each
reads the line; any problem is one `UsageError` line that says what the subcommand takes and
how to run it. Subcommands act on the session (and `local` on the kernel's environment, which
`LocalSwitch.close` restores; `key` sets a key in it from a hidden prompt, never echoed or
shown); they print or display, and never send a chat request.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError

from baseten_magic.core import settings as environment
from baseten_magic.core import transcript
from baseten_magic.core.budget import BUDGET_ENV, Budget
from baseten_magic.core.errors import BasetenError, ParameterError
from baseten_magic.core.pricing import format_usd
from baseten_magic.core.transcript import to_markdown
from baseten_magic.engine.session import Session
from baseten_magic.notebook.help import HELP_TOPICS, help_bundle
from baseten_magic.notebook.options import split_words, usage_error
from baseten_magic.render.tables import (
    GROUPINGS,
    cost_table,
    history_table,
    models_table,
    summary_table,
    with_note,
)

if TYPE_CHECKING:
    from baseten_magic.server import LocalServer

__all__ = ["SUBCOMMANDS", "LocalSwitch", "Subcommands", "config_text", "subcommands_help"]


@dataclass(frozen=True)
class _Spec:
    """One subcommand: its arguments for the help line, what it takes, how to run it."""

    name: str
    arguments: str  # as the help shows them, e.g. "[--refresh]"
    summary: str
    takes: str | None = None  # for "takes only ..."; None: takes no arguments
    example: str = ""  # the arguments of a run with them, e.g. "--refresh"

    def misuse(self, words: list[str]) -> UsageError:
        got = " ".join(words)
        run = f"%baseten {self.name}"
        if self.takes is None:
            return UsageError(f"{run} takes no arguments, got {got!r}; run {run}")
        return UsageError(
            f"{run} takes only {self.takes}, got {got!r}; run {run} or {run} {self.example}"
        )


_SPECS = (
    _Spec(
        "cost",
        "[--by model|day|cell] [--plot] [--all]",
        "this session's calls and cost against the budget; sums, a chart, every session",
        takes="--by model|day|cell, --plot and --all",
        example="--by model",
    ),
    _Spec(
        "history",
        "[--json [FILE] | --markdown [FILE]]",
        "the conversation the next cell sends; export it",
        takes="--json [FILE] or --markdown [FILE]",
        example="--markdown chat.md",
    ),
    _Spec(
        "models",
        "[--refresh]",
        "the models, aliases, context and prices",
        takes="--refresh",
        example="--refresh",
    ),
    _Spec("reset", "", "forget the conversation"),
    _Spec(
        "help",
        "[options|params]",
        "this help (or every cell option, or the request parameters)",
        takes="'options' or 'params'",
        example="params",
    ),
    _Spec("panel", "", "the widget panel"),
    _Spec(
        "local",
        "[--tps N]",
        "start a local offline server and point this kernel at it",
        takes="--tps N",
        example="--tps 40",
    ),
    _Spec("config", "", "the effective settings (%config BasetenMagics.<name>)"),
    _Spec(
        "key",
        "[--route baseten|xpay]",
        "set the API key (or XPAY_KEY) from a hidden prompt; never echoed or saved",
        takes="--route baseten|xpay",
        example="--route xpay",
    ),
)
SUBCOMMANDS = tuple(spec.name for spec in _SPECS)


def subcommands_help() -> str:
    """The subcommands, one aligned line each."""
    lines = [f"%baseten {spec.name} {spec.arguments}".rstrip() for spec in _SPECS]
    width = max(len(line) for line in lines) + 1
    return "\n".join(
        f"{line:<{width}}{spec.summary}" for line, spec in zip(lines, _SPECS, strict=True)
    )


class _Misuse(Exception):
    """argparse found a problem; the caller words the message (argparse's would be several)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Misuse(message)


def _parser() -> _Parser:
    parser = _Parser(prog="%baseten", add_help=False, allow_abbrev=False)
    commands = parser.add_subparsers(dest="subcommand", required=True)
    made = {
        name: commands.add_parser(name, add_help=False, allow_abbrev=False) for name in SUBCOMMANDS
    }
    made["cost"].add_argument("--by", choices=GROUPINGS)
    made["cost"].add_argument("--plot", action="store_true")
    made["cost"].add_argument("--all", action="store_true")
    export = made["history"].add_mutually_exclusive_group()
    export.add_argument("--json", nargs="?", const="-", metavar="FILE")
    export.add_argument("--markdown", nargs="?", const="-", metavar="FILE")
    made["models"].add_argument("--refresh", action="store_true")
    made["help"].add_argument("topic", nargs="?", choices=HELP_TOPICS)
    made["local"].add_argument("--tps", metavar="N")
    made["key"].add_argument("--route", choices=list(environment.ROUTES))
    return parser


class LocalSwitch:
    """`%baseten local`: a local server, and the environment variables it replaced, put back."""

    def __init__(self) -> None:
        self.server: LocalServer | None = None
        # The variables replaced, as they were before (None: unset then); kept from the first
        # start, so a second `%baseten local` does not take the first server's URL as original.
        self._before: dict[str, str | None] | None = None

    def start(self, tokens_per_second: float | None) -> LocalServer:
        """Start a new server (stopping the last) and point this process's variables at it."""
        from baseten_magic.server import use_local_server

        if self.server is not None:
            self.server.stop()
        if self._before is None:
            names = (environment.BASE_URL_ENV, environment.API_KEY_ENV)
            self._before = {name: os.environ.get(name) for name in names}
        self.server = use_local_server(tokens_per_second=tokens_per_second)
        return self.server

    def close(self) -> None:
        """Stop the server and restore the variables it replaced."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._before is not None:
            # Otherwise the kernel would keep pointing at a stopped server, the user's key lost.
            for name, value in self._before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._before = None


@dataclass(frozen=True)
class Subcommands:
    """Runs `%baseten LINE` against a session."""

    session: Session
    local: LocalSwitch
    options_help: Callable[[], Sequence[tuple[str, str]]]  # the cell options, for the help

    def run(self, line: str) -> None:
        """Parse `line` and run its subcommand; a problem is one UsageError line."""
        words = split_words(line) or ["help"]
        name = words[0].lower()
        if name not in SUBCOMMANDS:
            close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(
                f"unknown %baseten subcommand {words[0]!r}; {hint}"
                f"expected one of {', '.join(SUBCOMMANDS)} (a prompt needs %%baseten, two %)"
            )
        try:
            args = _parser().parse_args([name, *words[1:]])
        except _Misuse:
            (spec,) = (spec for spec in _SPECS if spec.name == name)
            raise spec.misuse(words[1:]) from None
        handlers: Mapping[str, Callable[[Any], None]] = {
            "cost": self._cost,
            "history": self._history,
            "models": self._models,
            "reset": self._reset,
            "help": self._help,
            "panel": self._panel,
            "local": self._local,
            "config": self._config,
            "key": self._key,
        }
        try:
            handlers[name](args)
        except BasetenError as exc:
            raise usage_error(exc) from None

    def _cost(self, args: Any) -> None:
        session = self.session
        # This session's calls as it remembers them; --all: every session in the ledger file.
        rows = session.ledger.rows() if args.all else session.rows
        budget = session.budget
        if args.plot:
            if not rows:
                print("No calls to plot yet: run a %%baseten cell, then %baseten cost --plot.")
                return
            if args.by == "model":
                raise UsageError(
                    "--plot draws spend per cell or per day, got --by model; run "
                    "%baseten cost --plot or %baseten cost --plot --by day"
                )
            from baseten_magic.render.costplot import cost_chart

            bundle, metadata = cost_chart(rows, by=args.by or "cell", cap=budget.cap)
            _display(bundle, metadata)
            return
        table = cost_table(rows) if args.by is None else summary_table(rows, args.by)
        cached = cache_line(session)
        if cached is not None:  # hits have no ledger row: their count stands beside the table
            table = with_note(table, cached)
        _display(with_note(table, budget_line(budget)))

    def _history(self, args: Any) -> None:
        turns = self.session.turns()
        if args.json is None and args.markdown is None:
            _display(history_table(turns))
            return
        target = args.json if args.json is not None else args.markdown
        text = transcript.to_json(turns) if args.json is not None else to_markdown(turns)
        if target == "-":
            print(text)
            return
        path = Path(target).expanduser()
        try:
            path.write_text(text, encoding="utf-8")  # as is: the export must read back exactly
        except OSError as exc:
            raise UsageError(
                f"could not write the history to {str(path)!r} ({exc.strerror}); "
                "pass a writable file path"
            ) from None
        count = len(turns)
        print(
            f"Wrote {count} message{'s' if count != 1 else ''} to {path} "
            "(read it back with baseten_magic.read_history(text))."
        )

    def _models(self, args: Any) -> None:
        catalog = self.session.refresh_models() if args.refresh else self.session.catalog
        _display(models_table(catalog))

    def _reset(self, _args: Any) -> None:
        conversation = self.session.conversation
        count = len(conversation)
        conversation.reset()
        print(f"Conversation reset ({count} exchange{'s' if count != 1 else ''} forgotten).")

    def _help(self, args: Any) -> None:
        rows = [(f"%baseten {s.name} {s.arguments}".rstrip(), s.summary) for s in _SPECS]
        _display(help_bundle(args.topic, options=self.options_help(), subcommands=rows))

    def _panel(self, _args: Any) -> None:
        from baseten_magic.panel import show_panel

        show_panel(self.session)

    def _local(self, args: Any) -> None:
        tps = None if args.tps is None else _tokens_per_second(args.tps)
        server = self.local.start(tps)
        self.session.discard_client()  # the next cell connects to the new server
        speed = f" at {tps:g} tokens/s" if tps else ""
        print(
            f"Local server running at {server.url}{speed}; BASETEN_BASE_URL and "
            "BASETEN_API_KEY now point at it for this kernel (until %unload_ext baseten_magic)."
        )

    def _config(self, _args: Any) -> None:
        print(config_text(self.session))

    def _key(self, args: Any) -> None:
        route = args.route or self.session.route()
        name = environment.XPAY_KEY_ENV if route == "xpay" else environment.API_KEY_ENV
        key = _prompt_key(name)
        before = os.environ.get(name)
        os.environ[name] = key
        try:  # the same checks a call makes (a key that cannot be sent is refused now)
            if route == "xpay":
                environment.xpay_key()
            else:
                environment.api_key()
        except BasetenError:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before
            raise
        self.session.discard_client()  # the next call starts with the new key
        print(
            f"{name} is set for this kernel (not shown); it is not saved in the notebook and "
            "is gone when the kernel stops."
        )


def _tokens_per_second(raw: str) -> float:
    try:
        tps = float(raw)
    except ValueError:
        tps = -1.0
    if not tps > 0:  # also NaN
        raise UsageError(
            f"--tps must be a positive number of tokens per second, got {raw!r}; pass e.g. --tps 40"
        )
    return tps


def _prompt_key(name: str) -> str:
    """The key typed at a hidden prompt (getpass: ipykernel asks the front end for a password
    field, so the key never reaches an output or the saved notebook)."""
    import getpass

    try:
        key = getpass.getpass(f"{name} (hidden, kept for this kernel only): ")
    except Exception as exc:  # e.g. a front end without input (nbclient, voila)
        raise UsageError(
            f"expected a hidden prompt for {name}, got no input channel ({type(exc).__name__}); "
            f"set {name} in the shell or a .env file before starting Jupyter"
        ) from None
    key = key.strip()
    if not key:
        raise UsageError(f"no key was entered for {name}; run %baseten key again and paste it")
    return key


def config_text(session: Session) -> str:
    """The effective settings, as text (the API key is never shown, only whether it is set)."""
    s = session.settings
    try:
        model = session.catalog.resolve(s.model).slug
    except ParameterError:
        model = s.model
    key_state = "set" if os.environ.get(environment.API_KEY_ENV, "").strip() else "NOT SET"
    try:
        base_url = environment.base_url()
    except BasetenError as exc:
        base_url = f"invalid ({environment.redact(str(exc).splitlines()[0])})"
    lines = [
        f"model            {s.model} ({model})",
        f"system           {s.system!r}",
        f"parameters       {session.defaults() or '{}'}",
        f"thinking         {s.thinking}",
        f"pricing_mode     {s.pricing_mode}",
        f"memory           {s.memory} ({len(session.conversation)} exchanges)",
        f"stream           {s.stream}",
        f"show_reasoning   {s.show_reasoning}",
        f"paint_interval   {s.paint_interval}",
        f"budget_usd       {s.budget_usd} ({budget_line(session.budget)})",
        f"route            {_route_text(session)}",
        f"timeout          {_timeout_text(session)}",
        f"base URL         {base_url}",
        f"API key          {key_state} ({environment.API_KEY_ENV})",
        f"ledger           {environment.ledger_path()}",
        f"cache            {session.cache_enabled} ({_cache_text()})",
        f"session          {session.id}",
    ]
    return "\n".join(lines)


def cache_line(session: Session) -> str | None:
    """This session's answers from the response cache, one line; None before the first."""
    hits, saved = session.cache_saved()
    if not hits:
        return None
    calls = "call" if hits == 1 else "calls"
    return (
        f"Response cache: {hits} {calls} answered from the cache this session, $0 each, "
        f"saved {format_usd(saved)} (nothing was sent, so the ledger has no row for them)."
    )


def _cache_text() -> str:
    from baseten_magic.io.cache import CACHE_ENV, cache_path

    return f"{cache_path()}, {CACHE_ENV}"


def budget_line(budget: Budget) -> str:
    """Spend against the cap, one line (and how to set a cap when there is none)."""
    spent = format_usd(budget.spent)
    if budget.cap is None:
        return (
            f"Session spend {spent}; no budget set (%config BasetenMagics.budget_usd = 5, "
            f"or the env variable {BUDGET_ENV})."
        )
    used = budget.used() or Decimal(0)
    return (
        f"Session spend {spent} of the {format_usd(budget.cap)} budget ({used:.0%}); "
        "cells, the panel and chat() in this kernel count."
    )


def _route_text(session: Session) -> str:
    try:
        route = session.route()
    except BasetenError as exc:
        return f"invalid ({environment.error_line(exc)})"
    if route != "xpay":
        return route
    state = "set" if os.environ.get(environment.XPAY_KEY_ENV, "").strip() else "NOT SET"
    try:
        url = environment.xpay_url()
    except BasetenError as exc:
        url = f"invalid ({environment.error_line(exc)})"
    return f"xpay ({url}, {environment.XPAY_KEY_ENV} {state}, $0.01 a call)"


def _timeout_text(session: Session) -> str:
    own = session.timeout()
    if own is not None:
        return f"{own:g} s (BasetenMagics.timeout)"
    try:
        seconds = environment.timeout_s()
    except BasetenError as exc:
        return f"invalid ({environment.error_line(exc)})"
    source = environment.TIMEOUT_ENV if os.environ.get(environment.TIMEOUT_ENV) else "default"
    return f"{seconds:g} s ({source})"


def _display(bundle: Mapping[str, str], metadata: Mapping[str, Any] | None = None) -> None:
    from IPython import display as ipython_display

    show: Callable[..., Any] = ipython_display.display
    show(dict(bundle), raw=True, metadata=dict(metadata or {}))
