"""MIME bundles for the extras: tool calls and their results, JSON values, logprobs, choices.

Rule: safe markup only. Every piece of model or tool text reaches the HTML escaped (through
`html.escape`, `escape_text`, the Pygments highlighter) or through `render_markdown`; only the
project's own wrappers are live markup. Each HTML part is checked with `assert_safe_html`
before it is returned, and a part that fails is replaced by escaped plain text (fail closed).
This module sits below the adapters, so tool outputs are read by duck type, not imported.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any, Protocol

from baseten_magic.core.jsonable import to_jsonable
from baseten_magic.core.result import Choice, TokenLogprob, ToolCall
from baseten_magic.render.markdown import (
    UnsafeHTMLError,
    assert_safe_html,
    escape_text,
    highlight_code,
    render_markdown,
)

__all__ = [
    "RichBundle",
    "ToolOutputLike",
    "choices_bundle",
    "json_bundle",
    "logprobs_bundle",
    "to_jsonable",
    "tool_calls_bundle",
]

#: A MIME bundle; `application/json` holds a JSON value rather than a string.
RichBundle = dict[str, Any]

# Asks MathJax to leave model text alone (a "$" in JSON or a token is not math); the Markdown
# renderer's own math spans opt back in.
_NO_MATH = "mathjax_ignore tex2jax_ignore"
_BOX_STYLE = "margin: 0.3em 0; color: #333;"
_SUMMARY_STYLE = "cursor: pointer; font-size: 0.9em;"
_LABEL_STYLE = "font-size: 0.8em; color: #777; margin-top: 0.3em;"
_ERROR_STYLE = "color: #b00020;"
_TOKEN_STYLE = "background-color: hsl({hue}, 75%, {light}%); border-radius: 2px;"
_HEAT_STYLE = "white-space: pre-wrap; word-break: break-word; line-height: 1.6;"
_COLUMNS_STYLE = "display: flex; gap: 1em; align-items: flex-start;"
_COLUMN_STYLE = (
    "flex: 1 1 0; min-width: 0; border: 1px solid #ddd; border-radius: 4px; padding: 0.4em 0.6em;"
)


class ToolOutputLike(Protocol):
    """What a tool output shows (`baseten_magic.core.tools.ToolOutput` has these)."""

    @property
    def call_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def result(self) -> str: ...
    @property
    def error(self) -> str | None: ...


def _checked(markup: str, plain: str) -> str:
    """`markup` when it passes the safety check, else `plain` escaped."""
    try:
        assert_safe_html(markup)
    except UnsafeHTMLError:
        return escape_text(plain)
    return markup


def _pretty_json_text(raw: str) -> tuple[str, bool]:
    """Pretty-printed JSON when `raw` parses, else `raw` itself; and whether it parsed."""
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False), True
    except (json.JSONDecodeError, TypeError):
        return raw, False


def _code(text: str, is_json: bool) -> str:
    return highlight_code(text, "json") if is_json else escape_text(text)


# -- tool calls -----------------------------------------------------------------------------------


def tool_calls_bundle(
    calls: Sequence[ToolCall], outputs: Sequence[ToolOutputLike] | None = None
) -> RichBundle:
    """One collapsible block per tool call: name, pretty arguments, and its result or error."""
    by_id = {out.call_id: out for out in outputs or ()}
    blocks: list[str] = []
    lines: list[str] = []
    for call in calls:
        arguments, parsed = _pretty_json_text(call["arguments"] or "{}")
        output = by_id.get(call["id"])
        status = "" if output is None else (" ✗" if output.error else " ✓")
        summary = f"🔧 {call['name']}{status}"
        parts = [
            f'<summary style="{_SUMMARY_STYLE}">{html.escape(summary)}'
            f' <small style="color: #888">{html.escape(call["id"])}</small></summary>',
            f'<div style="{_LABEL_STYLE}">Arguments</div>',
            _code(arguments, parsed),
        ]
        lines.append(f"→ {call['name']}({call['arguments']})  [{call['id']}]")
        if output is not None and output.error:
            parts.append(f'<div style="{_LABEL_STYLE}">Error</div>')
            parts.append(f'<div style="{_ERROR_STYLE}">{escape_text(output.error)}</div>')
            lines.append(f"  ✗ {output.error}")
        elif output is not None:
            text, is_json = _pretty_json_text(output.result)
            parts.append(f'<div style="{_LABEL_STYLE}">Result</div>')
            parts.append(_code(text, is_json))
            lines.append(f"  ← {output.result}")
        blocks.append(
            f'<details class="bm-tool-call" style="{_BOX_STYLE}">{"".join(parts)}</details>'
        )
    plain = "Tool calls:\n" + "\n".join(lines) if lines else "No tool calls"
    markup = f'<div class="bm-tool-calls {_NO_MATH}">{"".join(blocks)}</div>'
    return {"text/html": _checked(markup, plain), "text/plain": plain}


# -- JSON -----------------------------------------------------------------------------------------


def json_bundle(value: Any) -> RichBundle:
    """A pretty-printed, syntax-coloured view of a JSON value, plus text/plain and JSON."""
    data = to_jsonable(value)
    pretty = json.dumps(data, indent=2, ensure_ascii=False)
    markup = f'<div class="bm-json {_NO_MATH}">{highlight_code(pretty, "json")}</div>'
    return {
        "text/html": _checked(markup, pretty),
        "text/plain": pretty,
        "application/json": data if isinstance(data, dict | list) else {"value": data},
    }


# -- logprobs -------------------------------------------------------------------------------------


def _probability(logprob: float) -> float:
    try:
        return min(1.0, max(0.0, math.exp(logprob)))
    except OverflowError:
        return 1.0


def _token_style(p: float) -> str:
    # Red (unlikely) through yellow to green (likely); light enough for dark text.
    return _TOKEN_STYLE.format(hue=round(120 * p), light=round(88 - 10 * (1 - p)))


def _visible(token: str) -> str:
    """A token as shown in a tooltip: whitespace made visible."""
    return repr(token)[1:-1] if token.strip() != token or not token else token


def logprobs_bundle(logprobs: Sequence[TokenLogprob]) -> RichBundle:
    """A token heat map: background = probability; hover a token to see its alternatives."""
    spans: list[str] = []
    rows: list[str] = []
    for item in logprobs:
        p = _probability(item.logprob)
        title = f"{_visible(item.token)}: p={p:.3f} (logprob {item.logprob:.3f})"
        if item.top:
            alternatives = ", ".join(
                f"{_visible(tok)} {_probability(lp):.3f}" for tok, lp in item.top
            )
            title += f"\nalternatives: {alternatives}"
        spans.append(
            f'<span class="bm-token" style="{_token_style(p)}" '
            f'title="{html.escape(title, quote=True)}">{html.escape(item.token)}</span>'
        )
        rows.append(f"{item.token!r}\t{p:.3f}")
    legend = (
        f'<div style="{_LABEL_STYLE}">Token probability: '
        f'<span style="{_token_style(0.0)}">&nbsp;low&nbsp;</span> '
        f'<span style="{_token_style(0.5)}">&nbsp;medium&nbsp;</span> '
        f'<span style="{_token_style(1.0)}">&nbsp;high&nbsp;</span>'
        " · hover a token for its alternatives</div>"
    )
    markup = (
        f'<div class="bm-logprobs {_NO_MATH}"><div style="{_HEAT_STYLE}">{"".join(spans)}</div>'
        f"{legend}</div>"
    )
    plain = "token\tp\n" + "\n".join(rows) if rows else "No logprobs"
    return {"text/html": _checked(markup, plain), "text/plain": plain}


# -- several choices ------------------------------------------------------------------------------


def choices_bundle(choices: Sequence[Choice]) -> RichBundle:
    """Choices side by side, each rendered as Markdown with its finish reason."""
    columns: list[str] = []
    texts: list[str] = []
    for choice in choices:
        label = f"Choice {choice.index + 1} · finish: {choice.finish_reason or 'none'}"
        reasoning = ""
        if choice.reasoning:
            reasoning = (
                f'<details style="{_LABEL_STYLE}"><summary>Reasoning</summary>'
                f"{escape_text(choice.reasoning)}</details>"
            )
        columns.append(
            f'<div class="bm-choice" style="{_COLUMN_STYLE}">'
            f'<div style="{_LABEL_STYLE}">{html.escape(label)}</div>'
            f"{reasoning}{render_markdown(choice.content)}</div>"
        )
        texts.append(f"--- {label} ---\n{choice.content}")
    plain = "\n\n".join(texts) if texts else "No choices"
    markup = f'<div class="bm-choices {_NO_MATH}" style="{_COLUMNS_STYLE}">{"".join(columns)}</div>'
    return {"text/html": _checked(markup, plain), "text/plain": plain}
