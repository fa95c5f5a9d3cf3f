"""The `%baseten cost`, `%baseten history` and `%baseten models` tables, as safe MIME bundles.

Rule: a table is `{"text/html": ..., "text/plain": ...}`; the HTML is the project's own markup
and every value in it (model names, statuses, error text, catalog data) is escaped, so nothing
from a server or a price file ever reaches the page as live HTML. The text/plain part is an
aligned table that reads well in a terminal. `%baseten models` lists only the models still
offered; retired ones follow in a separate, muted table that names what to use instead.
Sums of money are Decimal until they are formatted.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from typing import Literal

from baseten_magic.core.catalog import Catalog, ModelInfo
from baseten_magic.core.pricing import format_usd
from baseten_magic.core.transcript import Turn
from baseten_magic.io.ledger import LedgerRow

GroupBy = Literal["model", "day", "cell"]
GROUPINGS: tuple[GroupBy, ...] = ("model", "day", "cell")

Bundle = dict[str, str]

_TABLE_STYLE = "border-collapse: collapse; font-size: 0.9em;"
_CELL_STYLE = "padding: 2px 8px; text-align: right;"
_TEXT_CELL_STYLE = "padding: 2px 8px; text-align: left;"

COST_COLUMNS = ("cell", "model", "in", "out", "reasoning", "cost", "latency", "status")
MODEL_COLUMNS = (
    "model",
    "aliases",
    "context",
    "reasoning",
    "input $/M",
    "output $/M",
    "cached $/M",
)
RETIRED_COLUMNS = ("retired model", "aliases", "retired on", "use instead")
HISTORY_COLUMNS = ("#", "role", "cell", "≈ tokens", "text")
_LEFT = {"model", "aliases", "status", "reasoning", "role", "text", "day"}
_LEFT |= {"retired model", "retired on", "use instead"}
_PREVIEW_CHARS = 80


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    footer: Sequence[str] | None,
    *,
    table_style: str = _TABLE_STYLE,
) -> Bundle:
    """Build both parts of a table from plain strings (escaped here, once)."""

    def cells(values: Sequence[str], tag: str) -> str:
        out = []
        for column, value in zip(columns, values, strict=True):
            style = _TEXT_CELL_STYLE if column in _LEFT else _CELL_STYLE
            out.append(f'<{tag} style="{style}">{html.escape(value)}</{tag}>')
        return "<tr>" + "".join(out) + "</tr>"

    body = "".join(cells(row, "td") for row in rows)
    foot = f"<tfoot>{cells(footer, 'th')}</tfoot>" if footer else ""
    markup = (
        f'<table class="bm-table" style="{table_style}"><thead>{cells(columns, "th")}</thead>'
        f"<tbody>{body}</tbody>{foot}</table>"
    )
    everything = [list(columns), *map(list, rows), *([list(footer)] if footer else [])]
    widths = [max(len(r[i]) for r in everything) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        parts = []
        for column, value, width in zip(columns, values, widths, strict=True):
            parts.append(value.ljust(width) if column in _LEFT else value.rjust(width))
        return "  ".join(parts).rstrip()

    plain = [line(columns), "  ".join("-" * w for w in widths)]
    plain.extend(line(row) for row in rows)
    if footer:
        plain.append("  ".join("-" * w for w in widths))
        plain.append(line(footer))
    return {"text/html": markup, "text/plain": "\n".join(plain)}


def cost_table(rows: Sequence[LedgerRow]) -> Bundle:
    """This session's calls, one row per call, with totals."""
    if not rows:
        message = "No %%baseten calls in this session yet."
        return {"text/html": f"<p>{html.escape(message)}</p>", "text/plain": message}
    lines = [
        (
            "—" if row.cell is None else str(row.cell),
            row.model,
            f"{row.prompt_tokens:,}",
            f"{row.completion_tokens:,}",
            f"{row.reasoning_tokens:,}",
            format_usd(row.cost_usd),
            _seconds(row.latency_s),
            row.status,
        )
        for row in rows
    ]
    total_cost = sum((row.cost_usd for row in rows), Decimal(0))
    latency = sum(row.latency_s or 0.0 for row in rows)
    footer = (
        "total",
        f"{len(rows)} call{'s' if len(rows) != 1 else ''}",
        f"{sum(r.prompt_tokens for r in rows):,}",
        f"{sum(r.completion_tokens for r in rows):,}",
        f"{sum(r.reasoning_tokens for r in rows):,}",
        format_usd(total_cost),
        _seconds(latency),
        _status_summary(rows),
    )
    return _table(COST_COLUMNS, lines, footer)


def with_note(table: Bundle, note: str) -> Bundle:
    """`table` with a one-line note above it (the budget line of `%baseten cost`)."""
    return {
        "text/html": f'<p style="margin: 0 0 0.3em 0;">{html.escape(note)}</p>'
        + table["text/html"],
        "text/plain": f"{note}\n\n{table['text/plain']}",
    }


def cell_label(cell: int | None) -> str:
    """How a row's cell is shown: `In [3]`, or `panel/api` for a call made outside a cell."""
    return "panel/api" if cell is None else f"In [{cell}]"


def _group_key(by: GroupBy) -> Callable[[LedgerRow], str]:
    if by == "model":
        return lambda row: row.model or "unknown model"
    if by == "day":
        return lambda row: row.ts[:10]  # ISO-8601 in UTC: the first ten characters are the day
    return lambda row: cell_label(row.cell)


def summary_table(rows: Sequence[LedgerRow], by: GroupBy) -> Bundle:
    """Calls, tokens and cost summed per model, per day (UTC) or per cell, in first-seen order."""
    if not rows:
        return cost_table(rows)
    key = _group_key(by)
    groups: dict[str, list[LedgerRow]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    total = sum((row.cost_usd for row in rows), Decimal(0))

    def line(name: str, members: Sequence[LedgerRow]) -> tuple[str, ...]:
        cost = sum((row.cost_usd for row in members), Decimal(0))
        share = "—" if not total else f"{cost / total:.0%}"
        return (
            name,
            f"{len(members):,}",
            f"{sum(r.prompt_tokens for r in members):,}",
            f"{sum(r.completion_tokens for r in members):,}",
            format_usd(cost),
            share,
        )

    columns = ("model" if by == "model" else by, "calls", "in", "out", "cost", "share")
    lines = [line(name, members) for name, members in groups.items()]
    footer = ("total", *line("", rows)[1:5], "100%" if total else "—")
    return _table(columns, lines, footer)


def history_table(turns: Sequence[Turn]) -> Bundle:
    """The conversation the next cell sends: one row per message, with its cell and tokens."""
    if not turns:
        message = "The conversation is empty: the next %%baseten cell sends only its own messages."
        return {"text/html": f"<p>{html.escape(message)}</p>", "text/plain": message}
    lines = []
    for index, turn in enumerate(turns, 1):
        text = " ".join(turn.content.split())
        if len(text) > _PREVIEW_CHARS:
            text = text[: _PREVIEW_CHARS - 1] + "…"
        cell = "—" if turn.cell is None else f"In [{turn.cell}]"
        lines.append((str(index), turn.role, cell, f"{turn.tokens:,}", text))
    tokens = sum(turn.tokens for turn in turns)
    footer = ("", f"{len(turns)} messages", "", f"{tokens:,}", "sent before the next cell's own")
    return _table(HISTORY_COLUMNS, lines, footer)


def _status_summary(rows: Sequence[LedgerRow]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return ", ".join(f"{count} {status}" for status, count in counts.items())


def _price(value: Decimal | None) -> str:
    return "?" if value is None else f"${value}"


def _model_row(info: ModelInfo) -> tuple[str, ...]:
    # Only offered models reach here: a date is a retirement still to come.
    retires = f" (retires {info.deprecated_on.isoformat()})" if info.deprecated_on else ""
    return (
        info.slug + retires,
        ", ".join(info.aliases),
        "?" if info.context_length is None else f"{info.context_length:,}",
        info.reasoning.replace("_", " "),
        _price(info.input_price),
        _price(info.output_price),
        _price(info.cached_input_price),
    )


def _retired_row(catalog: Catalog, info: ModelInfo, today: date | None) -> tuple[str, ...]:
    replacement = None if info.replacement is None else catalog.get(info.replacement)
    use = "—"
    if replacement is not None and not replacement.is_retired(today):
        use = catalog.describe(replacement)
    when = "—" if info.deprecated_on is None else info.deprecated_on.isoformat()
    return (info.slug, ", ".join(info.aliases), when, use)


def models_table(catalog: Catalog, today: date | None = None) -> Bundle:
    """The offered models (slug, aliases, context, reasoning, prices per M); retired ones apart."""
    table = _table(MODEL_COLUMNS, [_model_row(info) for info in catalog.offered(today)], None)
    note = f"Prices in USD per million tokens, as of {catalog.prices_as_of or 'unknown'}."
    table["text/html"] += f'<p style="font-size: 0.8em; color: #777;">{html.escape(note)}</p>'
    table["text/plain"] += "\n" + note
    retired = catalog.retired(today)
    if retired:
        heading = "Retired (no longer served; their aliases give an error naming the replacement):"
        rows = [_retired_row(catalog, info, today) for info in retired]
        muted = _TABLE_STYLE + " color: #777;"
        old = _table(RETIRED_COLUMNS, rows, None, table_style=muted)
        table["text/html"] += (
            f'<p style="font-size: 0.8em; color: #777; margin-bottom: 0.2em;">'
            f"{html.escape(heading)}</p>{old['text/html']}"
        )
        table["text/plain"] += f"\n\n{heading}\n{old['text/plain']}"
    return table
