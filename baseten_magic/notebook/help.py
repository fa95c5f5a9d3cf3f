"""`%baseten help`: a short overview, and `help options` / `help params` for the long lists.

Rule: every list in the help comes from the code that defines it (the argparse options, the
subcommand table, the parameter table), so it cannot drift from what the magic does; the prose
between them is written for users, never copied from module docstrings (which hold design
notes). Each topic is one MIME bundle: `text/html` for rich front ends, an equivalent
`text/plain` for terminals and saved notebooks; every piece of text is escaped in the HTML.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Sequence

from baseten_magic.core.params import PARAMETERS

__all__ = ["HELP_TOPICS", "Row", "help_bundle", "parameters_help"]

#: `%baseten help TOPIC`: the topics besides the overview.
HELP_TOPICS = ("options", "params")

# Terminal IPython's pager and most consoles: keep plain lines within this.
_TEXT_WIDTH = 96

#: One line of a help table: what to type, what it does.
Row = tuple[str, str]

# The options the overview shows; `%baseten help options` lists them all.
_COMMON_OPTIONS = (
    "--model",
    "--system",
    "--temperature",
    "--max-tokens",
    "--reasoning-effort",
    "--param",
    "--out",
    "--no-memory",
    "--json",
    "--tools",
)

_SUBTITLE = "Ask a Baseten model: the cell body is the prompt, the answer streams below it."
_EXAMPLE = "%%baseten -m kimi --temperature 0.3\nExplain the CAP theorem in three sentences."
# (title, text) pairs: how cells behave, in the user's terms.
_NOTES: tuple[Row, ...] = (
    (
        "Several turns",
        "Lines that are exactly @system, @user or @assistant start a message with that role.",
    ),
    (
        "Memory",
        "Cells see earlier cells' exchanges; re-running a cell replaces its exchange. "
        "--no-memory skips it for one cell, %baseten reset forgets it all.",
    ),
    ("Variables", "With -i, {{name}} becomes a compact summary of the variable name."),
    ("Result", "The last result is _baseten (and -o VAR); it has .content, .usage, .cost_usd."),
)
_MORE: tuple[Row, ...] = (
    ("%baseten help options", "every cell option"),
    ("%baseten help params", f"the {len(PARAMETERS)} request parameters --param takes"),
    ("%%baseten?", "the options as argparse prints them"),
)

_BOX_STYLE = (
    "font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 13px; "
    "line-height: 1.45; color: var(--jp-ui-font-color1, #222); max-width: 960px;"
)
_H_STYLE = "margin: 0.9em 0 0.3em 0; font-size: 1em; font-weight: 600;"
# Every table has the same key column, so the sections line up; inline styles beat
# JupyterLab's own for output tables (centred, right-aligned cells, striped rows).
_TABLE_STYLE = (
    "border-collapse: collapse; margin: 0; width: 100%; table-layout: auto; font-size: 13px;"
)
_ROW_STYLE = "background: transparent;"
_WORD_KEY_STYLE = (
    "text-align: left; vertical-align: top; padding: 1px 16px 1px 0; white-space: nowrap; "
    "width: 260px;"
)
_KEY_STYLE = (
    f"{_WORD_KEY_STYLE} font-family: var(--jp-code-font-family, monospace); font-size: 12px;"
)
_VALUE_STYLE = "text-align: left; vertical-align: top; padding: 1px 0;"
_NOTES_TITLE = "How cells work"
_PRE_STYLE = (
    "margin: 0.3em 0; padding: 6px 10px; background: var(--jp-layout-color2, #f5f5f5); "
    "border-radius: 3px; font-family: var(--jp-code-font-family, monospace); font-size: 12px;"
)


def _e(text: str) -> str:
    return html.escape(text, quote=False)


def _section_html(title: str, rows: Sequence[Row]) -> str:
    # Keys are what to type, in the code font; the notes' keys are words, in the text font.
    key_style = _KEY_STYLE if title != _NOTES_TITLE else _WORD_KEY_STYLE
    body = "".join(
        f'<tr style="{_ROW_STYLE}"><td style="{key_style}">{_e(key)}</td>'
        f'<td style="{_VALUE_STYLE}">{_e(value)}</td></tr>'
        for key, value in rows
    )
    return (
        f'<div style="{_H_STYLE}">{_e(title)}</div>'
        f'<table style="{_TABLE_STYLE}"><tbody>{body}</tbody></table>'
    )


def _section_text(title: str, rows: Sequence[Row]) -> str:
    width = min(max((len(key) for key, _ in rows), default=0), 34)
    indent = " " * (width + 4)
    lines = [title]
    for key, value in rows:
        wrapped = textwrap.wrap(value, _TEXT_WIDTH - len(indent)) or [""]
        if len(key) > width:  # a long key gets a line of its own
            lines.append(f"  {key}")
        else:
            lines.append(f"  {key:<{width}}  {wrapped.pop(0)}")
        lines.extend(indent + line for line in wrapped)
    return "\n".join(line.rstrip() for line in lines)


def _bundle(
    title: str, intro: str, sections: Sequence[tuple[str, Sequence[Row]]]
) -> dict[str, str]:
    """A help page as a MIME bundle: the same title, intro and tables in HTML and plain text."""
    parts = [f'<div style="font-weight: 600; font-size: 1.1em;">{_e(title)}</div>']
    if intro:
        parts.append(f'<div style="color: var(--jp-ui-font-color2, #555);">{_e(intro)}</div>')
    text = [title]
    if intro:
        text.append(intro)
    for name, rows in sections:
        if name == "Example":  # a code block, not a table
            code = "\n".join(key for key, _ in rows)
            parts.append(f'<div style="{_H_STYLE}">Example</div><pre style="{_PRE_STYLE}">')
            parts[-1] += f"{_e(code)}</pre>"
            text.append("Example\n" + "\n".join(f"  {line}" for line in code.splitlines()))
        else:
            parts.append(_section_html(name, rows))
            text.append(_section_text(name, rows))
    markup = f'<div class="bm-help" style="{_BOX_STYLE}">{"".join(parts)}</div>'
    return {"text/html": markup, "text/plain": "\n\n".join(text)}


def _common(options: Sequence[Row]) -> list[Row]:
    """The overview's options: those in `_COMMON_OPTIONS`, in the parser's order."""
    return [row for row in options if any(name in _COMMON_OPTIONS for name in _names(row[0]))]


def _names(key: str) -> list[str]:
    return [word.split(" ")[0] for word in key.split(", ")]


def parameter_rows() -> list[Row]:
    """The request parameters: name, then help and the accepted values."""
    rows = []
    for name, spec in PARAMETERS.items():
        accepted = spec.constraint
        detail = spec.help if accepted == spec.help else f"{spec.help} ({accepted})"
        rows.append((name, detail))
    return rows


def parameters_help() -> str:
    """The request parameters, one line each (the plain text of `%baseten help params`)."""
    return help_bundle("params", options=(), subcommands=())["text/plain"]


def help_bundle(
    topic: str | None, *, options: Sequence[Row], subcommands: Sequence[Row]
) -> dict[str, str]:
    """The bundle of `%baseten help [TOPIC]`: the overview (None), "options" or "params"."""
    if topic == "params":
        return _bundle(
            f"Request parameters ({len(PARAMETERS)})",
            "Pass any of them with --param NAME=VALUE (VALUE is JSON if it parses, else a "
            "string); the common ones also have options of their own.",
            [("Parameters", parameter_rows())],
        )
    if topic == "options":
        return _bundle(
            "%%baseten options",
            "Options go on the %%baseten line; the cell body is the prompt.",
            [("Options", list(options))],
        )
    return _bundle(
        "%%baseten",
        _SUBTITLE,
        [
            ("Example", [(line, "") for line in _EXAMPLE.splitlines()]),
            ("Common options", [*_common(options), ("…", "all of them: %baseten help options")]),
            ("Line commands", list(subcommands)),
            (_NOTES_TITLE, list(_NOTES)),
            ("More", list(_MORE)),
        ],
    )
