"""`%baseten help`: the options, the subcommands, and how cells, memory and interpolation work.

Rule: the help is assembled from the text the code already holds (argparse's option help, the
subcommand table, the docstrings of `cells`, `conversation` and `interpolate`, the parameter
table), so it cannot drift from what the magic does.
"""

from __future__ import annotations

from baseten_magic.core.params import PARAMETERS

__all__ = ["help_text", "parameters_help"]


def parameters_help() -> str:
    """The request parameters, one line each."""
    width = max(len(name) for name in PARAMETERS)
    lines = [f"Request parameters ({len(PARAMETERS)}); pass any with --param NAME=VALUE:"]
    lines.extend(f"  {name:<{width}}  {spec.help}" for name, spec in PARAMETERS.items())
    return "\n".join(lines)


def help_text(options: str, subcommands: str) -> str:
    """`%baseten help`: options, subcommands, multi-turn syntax, memory, interpolation, params."""
    from baseten_magic.engine import conversation
    from baseten_magic.notebook import cells
    from baseten_magic.notebook import interpolate as interpolation

    def section(title: str, doc: str | None) -> str:
        return f"{title}\n{'=' * len(title)}\n{(doc or '').strip()}\n"

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
