"""A `ChatResult` shown by itself (`ans` at the end of a cell) as its cell showed it.

Rule: the same safe renderer as a cell's final paint (`render.bundle`, `render.extras`): the
reasoning block, the answer as Markdown, the parsed value and tool calls, the footer; no model
text reaches the HTML unescaped. The text/plain part is a short summary, not the whole answer.
`core.result` stays pure: it does not know this module. Instead `register_result_display(shell)`
teaches an IPython shell to show results this way; `%load_ext baseten_magic` calls it, and so
do `chat()` / `achat()` when they run in a shell, so their results display the same. This
module imports only the core at load time (the renderer loads with the first result shown), so
`%load_ext baseten_magic` stays light.
"""

from __future__ import annotations

from typing import Any

from baseten_magic.core.pricing import format_usd
from baseten_magic.core.result import ChatResult

__all__ = ["register_result_display", "result_bundle", "result_summary"]

_PREVIEW_CHARS = 70


def result_summary(result: ChatResult) -> str:
    """One line or two: the start of the answer, then model, tokens, cost and status."""
    text = " ".join(result.content.split())
    if len(text) > _PREVIEW_CHARS:
        text = text[: _PREVIEW_CHARS - 1] + "…"
    usage = result.usage
    tokens = "tokens not reported" if usage is None else f"{usage.total_tokens:,} tokens"
    status = "" if result.status == "ok" else f" · {result.status}"
    if result.cached:
        status += " · cached"
    head = f"ChatResult · {result.model or 'unknown model'} · {tokens} · "
    return f"{head}{format_usd(result.cost)}{status}\n{text!r}"


def result_bundle(result: ChatResult) -> dict[str, str]:
    """The result as its cell's final paint showed it, in one text/html part."""
    from baseten_magic.render import extras
    from baseten_magic.render.bundle import answer_bundle, footer_bundle, reasoning_final_bundle

    parts: list[dict[str, Any]] = []
    if result.reasoning:
        usage = result.usage
        tokens = usage.reasoning_tokens if usage is not None and usage.reasoning_tokens else None
        parts.append(reasoning_final_bundle(result.reasoning, tokens=tokens))
    if result.content:
        parts.append(answer_bundle(result.content))
    if result.parsed is not None:
        parts.append(extras.json_bundle(result.parsed))
    if result.tool_calls:
        parts.append(extras.tool_calls_bundle(result.tool_calls))
    # An answer from the response cache says so, as its cell's footer did.
    notes = ("cached",) if result.cached else ()
    parts.append(footer_bundle(result, pricing_mode="per_token", notes=notes))
    markup = "".join(str(part.get("text/html", "")) for part in parts)
    plain = result_summary(result)
    return {"text/html": f'<div class="bm-result">{markup}</div>', "text/plain": plain}


def _format(result: ChatResult) -> dict[str, str]:
    return result_bundle(result)


def register_result_display(shell: Any) -> None:
    """Show `ChatResult`s on `shell` through `result_bundle` (harmless to call again)."""
    formatter = getattr(getattr(shell, "display_formatter", None), "mimebundle_formatter", None)
    if formatter is not None:
        formatter.for_type(ChatResult, _format)
