"""The `%%baseten` cell options, and reading a magic line into words.

Rule: options are declared once, with IPython's `magic_arguments` (argparse), so `%%baseten?`,
`%baseten help` and the parser cannot disagree. Anything wrong with a line is one plain
`UsageError` line, with any secret removed.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
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


def cell_options(func: _F) -> _F:
    """Give the magic method its argparse parser (`func.parser`) and the options in its help."""
    # As if stacked as decorators above `func`: the innermost (last listed) is applied first.
    for option in reversed(_options()):
        func = option(func)
    return _magic_arguments_decorator()(func)


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
    # IPython's MagicArgumentParser raises a one-line UsageError for a bad option.
    return magic.parser.parse_args(split_words(line))


def options_help(magic: Any) -> str:
    """The `%%baseten` options, as argparse formats them."""
    return str(magic.parser.format_help())
