"""The `%%baseten` cell options, and reading a magic line into words.

Rule: options are declared once, with IPython's `magic_arguments` (argparse), so `%%baseten?`,
`%baseten help` and the parser cannot disagree. Anything wrong with a line is one plain
`UsageError` line, with any secret removed.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import shlex
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from IPython.core import magic_arguments as _magic_arguments
from IPython.core.error import UsageError

from baseten_magic.core.settings import error_line

_F = TypeVar("_F", bound=Callable[..., Any])


class _Decorator(Protocol):
    def __call__(self, func: _F, /) -> _F: ...


# IPython's argument helpers are untyped; these aliases give them the types they have.
_magic_arguments_decorator: Callable[[], _Decorator] = _magic_arguments.magic_arguments
_argument: Callable[..., _Decorator] = _magic_arguments.argument


def _options() -> list[_Decorator]:
    """The options, in the order `%%baseten?` lists them."""
    return [
        _argument("-m", "--model", help="model slug or alias (gpt-oss, glm, kimi, deepseek, ...)"),
        _argument("--system", metavar="TEXT", help="system prompt for this cell"),
        _argument("--temperature", metavar="X", help="sampling temperature, 0 to 4"),
        _argument("--top-p", metavar="X", help="nucleus sampling, above 0 up to 1"),
        _argument("--max-tokens", metavar="N", help="answer length limit (reasoning included)"),
        _argument("--reasoning-effort", metavar="low|medium|high", help="reasoning depth"),
        _argument(
            "--thinking",
            dest="thinking",
            action="store_const",
            const=True,
            default=None,
            help="switch reasoning on (models where it is optional)",
        ),
        _argument(
            "--no-thinking",
            dest="thinking",
            action="store_const",
            const=False,
            help="switch reasoning off (models where it is optional)",
        ),
        _argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="any request parameter; repeatable; VALUE is JSON if it parses, else a string",
        ),
        _argument("-o", "--out", metavar="VAR", help="store the result object as VAR"),
        _argument("--no-stream", action="store_true", help="one request without streaming"),
        _argument("--tools", metavar="NAME[,NAME...]", help="notebook functions offered as tools"),
        _argument(
            "--run-tools", action="store_true", help="run the tools the model calls, and loop"
        ),
        _argument(
            "--json", action="store_true", help="JSON mode; the reply is parsed into .parsed"
        ),
        _argument(
            "--schema", metavar="NAME", help="structured output against a schema in the notebook"
        ),
        _argument("-i", "--interpolate", action="store_true", help="replace {{name}} with values"),
        _argument(
            "--no-memory", action="store_true", help="this cell neither reads nor writes memory"
        ),
        _argument("--pricing", metavar="per_token|per_call", help="how this call is priced"),
        _argument(
            "--route",
            metavar="baseten|xpay",
            help="Baseten's API, or the reseller's $0.01-a-call MCP tool (XPAY_KEY)",
        ),
    ]


def _cache_options() -> list[_Decorator]:
    """The response cache's options (kept apart: they override the `cache` trait)."""
    return [
        _argument(
            "--cache",
            dest="cache",
            action="store_const",
            const=True,
            default=None,
            help="answer from the response cache when this request was answered before ($0)",
        ),
        _argument(
            "--no-cache",
            dest="cache",
            action="store_const",
            const=False,
            help="send even if the cache holds an answer (overrides BasetenMagics.cache; with "
            "--over: send every row, even those answered before)",
        ),
    ]


def _batch_options() -> list[_Decorator]:
    """The options of a prompts-over-data cell (`--over NAME`); the others apply to it too."""
    return [
        _argument(
            "--over",
            metavar="NAME",
            help="prompts over data: the cell is a {column} template, sent once per row of the "
            "DataFrame, Series or list NAME; -o stores the answers as a DataFrame",
        ),
        _argument("--rpm", metavar="N", help="with --over: stay under N requests per minute"),
        _argument("--tpm", metavar="N", help="with --over: stay under N tokens per minute"),
        _argument("--concurrency", metavar="N", help="with --over: at most N requests at once"),
        _argument("--budget", metavar="USD", help="with --over: cap this run's spend in dollars"),
        _argument(
            "--dry-run",
            action="store_true",
            help="with --over: send nothing; count the requests and bound the cost",
        ),
    ]


#: The usage line of `%%baseten?` (argparse would write all 18 options as `%baseten [-m ...]`).
USAGE = "%(prog)s [options]   (the cell body is the prompt; %%baseten help for more)"


def cell_options(func: _F) -> _F:
    """Give the magic method its argparse parser (`func.parser`) and the options in its help."""
    # As if stacked as decorators above `func`: the innermost (last listed) is applied first.
    for option in reversed([*_options(), *_cache_options(), *_batch_options()]):
        func = option(func)
    func = _magic_arguments_decorator()(func)
    parser: Any = getattr(func, "parser")  # noqa: B009 (set by magic_arguments, untyped)
    # magic_arguments names the parser after the method (%baseten) and prints every option in
    # the usage line; `%%baseten?` shows this docstring, so it must name the cell magic.
    # IPython's formatter also prefixes the usage with an RST "::" block; a plain one reads
    # better in the pager and in `%baseten help`.
    parser.prog = "%%baseten"
    parser.usage = USAGE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = inspect.cleandoc(parser.description or "")
    func.__doc__ = str(parser.format_help())
    return func


def usage_error(error: BaseException) -> UsageError:
    """One red line: the first line of the message, with any secret removed."""
    return UsageError(error_line(error))


def split_words(line: str) -> list[str]:
    """Shell-like words (quotes removed, so --system "Be terse." is one value)."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"could not split the options ({exc}); check the quotes") from None


def parse_options(magic: Any, line: str) -> Any:
    """The options of a `%%baseten` line, by the parser `cell_options` gave `magic`."""
    words = split_words(line)
    try:
        # IPython's MagicArgumentParser raises a one-line UsageError for a bad option.
        return magic.parser.parse_args(words)
    except UsageError:
        unknown = _unknown_options(words, option_strings(magic))
        if not unknown:
            raise
        raise UsageError(unknown_option_message(unknown[0], option_strings(magic))) from None


def option_strings(magic: Any) -> list[str]:
    """Every option string the `%%baseten` parser takes (`-m`, `--model`, ...)."""
    return [name for action in magic.parser._actions for name in action.option_strings]


def _unknown_options(words: Sequence[str], known: Sequence[str]) -> list[str]:
    """The words that look like options but name none (`--temprature`, `--temprature=1`)."""
    found = []
    for word in words:
        if word == "--":
            break
        # A negative number is a value ("--temperature -1" is not asked for, but "-1" is no
        # option either), so only words starting with a letter after the dashes count.
        name = word.split("=", 1)[0]
        looks_like_option = name.startswith("-") and name.lstrip("-")[:1].isalpha()
        # argparse also takes a prefix of a long option (--temp): that is not unknown.
        prefix = any(k.startswith(name) for k in known if k.startswith("--"))
        if looks_like_option and name not in known and not prefix:
            found.append(name)
    return found


def unknown_option_message(option: str, known: Sequence[str]) -> str:
    """One line for an option no parser knows, naming the closest one when there is one."""
    if option.startswith("--"):
        # Compared without the dashes they all share, so only the names' likeness counts.
        names = {k[2:]: k for k in known if k.startswith("--")}
        close = [names[n] for n in difflib.get_close_matches(option[2:], names, n=1, cutoff=0.7)]
    else:  # one letter: only a change of case is a likely typo (-M for -m)
        close = [k for k in known if k == option.lower()]
    hint = f"did you mean {close[0]}? " if close else ""
    return f"%%baseten has no option {option}; {hint}%%baseten? lists the options"


def options_help(magic: Any) -> str:
    """The `%%baseten` options, as argparse formats them."""
    return str(magic.parser.format_help())


def option_rows(magic: Any) -> list[tuple[str, str]]:
    """The `%%baseten` options as (what to type, what it does) pairs, in `%%baseten?` order."""
    rows = []
    for action in magic.parser._actions:
        if not action.option_strings:
            continue
        key = ", ".join(action.option_strings)
        if action.nargs != 0:  # takes a value
            key += f" {action.metavar or action.dest.upper()}"
        rows.append((key, str(action.help or "")))
    return rows
