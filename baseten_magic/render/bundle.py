"""MIME bundles for what a chat shows: the reasoning block, answer segments, tool calls, footer.

Rule: a bundle is `{"text/html": ..., "text/plain": ...}`. Only the project's own markup
(details/summary, wrappers, the footer) is HTML; every piece of model or server text reaches the
HTML part escaped or through `render_markdown`. The text/plain part is readable as it stands in a
terminal or in nbconvert output. `bundle_size` is the one measure of a bundle's cost on the wire.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from baseten_magic.core.pricing import format_usd
from baseten_magic.core.result import ChatResult
from baseten_magic.render.markdown import escape_text, render_markdown

__all__ = [
    "LIVE_REASONING_CHARS",
    "Bundle",
    "answer_bundle",
    "bundle_size",
    "empty_bundle",
    "footer_bundle",
    "footer_text",
    "reasoning_final_bundle",
    "reasoning_live_bundle",
    "status_mark",
    "waiting_bundle",
]

Bundle = dict[str, str]

#: How much of the reasoning the live block shows: enough to follow, small enough to resend.
LIVE_REASONING_CHARS = 1_500

# Classes asking MathJax (v3 names and the v2 names nbconvert uses) to leave text alone, so a
# "$" in prose is never typeset; the math spans opt back in (see render.markdown).
_ANSWER_CLASS = "bm-answer mathjax_ignore tex2jax_ignore"
_DETAILS_STYLE = "margin: 0 0 0.5em 0; color: #555;"
_SUMMARY_STYLE = "cursor: pointer; color: #666; font-size: 0.9em;"
_FOOTER_STYLE = "font-size: 0.8em; color: #777; margin-top: 0.4em;"


def bundle_size(bundle: Mapping[str, Any]) -> int:
    """Bytes the bundle costs on the wire: its JSON encoding in UTF-8, as Jupyter sends it."""
    return len(json.dumps(dict(bundle), ensure_ascii=False).encode("utf-8", "replace"))


def empty_bundle() -> Bundle:
    """A bundle that shows nothing (to blank an output slot)."""
    return {"text/html": "", "text/plain": ""}


def waiting_bundle(text: str) -> Bundle:
    """The muted one-line "waiting for the answer" status (a route that sends answers whole)."""
    markup = f'<div class="bm-waiting" style="{_FOOTER_STYLE}">{html.escape(text)}</div>'
    return {"text/html": markup, "text/plain": text}


def _tokens_label(tokens: int | None) -> str:
    if tokens is None:
        return ""
    return "1 token" if tokens == 1 else f"{tokens:,} tokens"


def reasoning_live_bundle(reasoning: str, *, tokens: int | None = None) -> Bundle:
    """The open reasoning block while it streams: the last ~1,500 characters, escaped."""
    count = _tokens_label(tokens)
    summary = f"Reasoning · {count}…" if count else "Reasoning…"
    tail = reasoning[-LIVE_REASONING_CHARS:]
    if len(tail) < len(reasoning):
        tail = "…" + tail
    markup = (
        f'<details open class="bm-reasoning {_ANSWER_CLASS}" style="{_DETAILS_STYLE}">'
        f'<summary style="{_SUMMARY_STYLE}">{html.escape(summary)}</summary>'
        f"{escape_text(tail)}</details>"
    )
    # The plain part is only a status line: the rich part is what a live front end shows, and
    # resending the tail twice would double the cost of every repaint.
    return {"text/html": markup, "text/plain": summary}


def reasoning_final_bundle(reasoning: str, *, tokens: int | None = None) -> Bundle:
    """The closed reasoning block once the answer starts: the full reasoning as Markdown."""
    count = _tokens_label(tokens)
    summary = f"Reasoning ({count})" if count else "Reasoning"
    markup = (
        f'<details class="bm-reasoning {_ANSWER_CLASS}" style="{_DETAILS_STYLE}">'
        f'<summary style="{_SUMMARY_STYLE}">{html.escape(summary)}</summary>'
        f"{render_markdown(reasoning)}</details>"
    )
    return {"text/html": markup, "text/plain": f"{summary}:\n{reasoning}\n"}


def answer_bundle(segment: str, *, source: str | None = None, live: bool = False) -> Bundle:
    """One answer segment: `source` (default `segment`) rendered as Markdown; plain = segment.

    `source` differs from `segment` when a segment needs context to render alone (a reopened
    code fence); the plain part is always the segment itself so segments concatenate exactly.
    `live` is the cheap preview repainted while the segment streams: code is not highlighted.
    """
    rendered = render_markdown(segment if source is None else source, highlight=not live)
    # A live preview is replaced by its final bundle; sending its plain text too would double
    # the cost of every repaint for a part no live front end shows.
    plain = "…" if live else segment
    return {"text/html": f'<div class="{_ANSWER_CLASS}">{rendered}</div>', "text/plain": plain}


def status_mark(result: ChatResult) -> str | None:
    """The one-line status mark for an interrupted, failed or cut-short result, else None."""
    if result.status == "interrupted":
        return "■ interrupted — partial answer"
    if result.status == "error":
        return f"⚠ error: {result.error or 'unknown error'}"
    if result.finish_reason == "length":
        return "■ stopped at the token limit — raise --max-tokens for the rest"
    return None


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f} s"


def footer_text(result: ChatResult, *, pricing_mode: str, notes: Sequence[str] = ()) -> str:
    """The footer's plain line: model, tokens, cost, TTFT, total, tokens/s, then `notes`.

    `notes` are the session's short remarks on the call (earlier turns sent along, the share
    of the budget used), so a growing prompt or a nearing cap is seen where the cost is.
    """
    parts = [result.model or "unknown model"]
    usage = result.usage
    if usage is None:
        parts.append("tokens: not reported")
    else:
        tokens = f"{usage.prompt_tokens:,} in / {usage.completion_tokens:,} out"
        extras = []
        if usage.reasoning_tokens:
            extras.append(f"{usage.reasoning_tokens:,} reasoning")
        if usage.cached_tokens > 0:
            extras.append(f"{usage.cached_tokens:,} cached")
        if extras:
            tokens += f" ({', '.join(extras)})"
        parts.append(tokens)
    cost = format_usd(result.cost)
    parts.append(f"{cost} per call" if pricing_mode == "per_call" else cost)
    ttft = _seconds(result.ttft_s)
    if ttft is not None:
        parts.append(f"TTFT {ttft}")
    total = _seconds(result.latency_s)
    if total is not None:
        parts.append(f"total {total}")
    if usage is not None and result.latency_s is not None:
        generating = result.latency_s - (result.ttft_s or 0.0)
        if generating > 0 and usage.completion_tokens > 0:
            parts.append(f"{usage.completion_tokens / generating:,.1f} tok/s")
    parts.extend(note for note in notes if note)
    return " · ".join(parts)


def footer_bundle(result: ChatResult, *, pricing_mode: str, notes: Sequence[str] = ()) -> Bundle:
    """The one-line footer, in smaller muted text, preceded by the status mark if any."""
    line = footer_text(result, pricing_mode=pricing_mode, notes=notes)
    mark = status_mark(result)
    mark_html = ""
    plain = line
    if mark is not None:
        mark_html = f'<div style="color: #b45309; font-weight: 600;">{html.escape(mark)}</div>'
        plain = f"{mark}\n{line}"
    markup = (
        f'<div class="bm-footer {_ANSWER_CLASS}" style="{_FOOTER_STYLE}">'
        f"{mark_html}<div>{html.escape(line)}</div></div>"
    )
    return {"text/html": markup, "text/plain": plain}
