"""`%baseten cost --plot`: spend per cell or per day, stacked by model, as a static PNG.

Rule: matplotlib is optional and loads only here, when a chart is asked for; without it the
error is one line naming what to install. The chart is drawn on a `Figure` with the Agg canvas,
never through pyplot, so the user's own backend and figures are left alone. It is a PNG: the
one image type JupyterLab, Notebook 7 and nbconvert's HTML all show in a saved notebook, trusted
or not (an SVG output is not shown in an untrusted notebook). Drawn at twice the size it is
shown (`width` metadata), it stays sharp on high-density screens. Model names and labels are
text inside the image, never markup, so nothing reaches the page as HTML.
"""

from __future__ import annotations

import base64
import io
import itertools
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

from baseten_magic.core.errors import ConfigurationError
from baseten_magic.core.pricing import format_usd
from baseten_magic.io.ledger import LedgerRow
from baseten_magic.render.tables import cell_label

__all__ = ["INSTALL_HINT", "PlotBy", "cost_chart"]

PlotBy = Literal["cell", "day"]
INSTALL_HINT = "pip install 'baseten_magic[plot]'"
#: The width the chart is shown at, in CSS pixels (the PNG has twice as many).
SHOWN_WIDTH = 720
_DPI = 200
_SIZE_IN = (7.2, 4.0)
# Colour-blind-safe (Okabe–Ito), one per model in order of first use.
_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999")
_CUMULATIVE = "#222222"
_BUDGET = "#C0392B"
_MAX_BARS = 40  # beyond this, only the last cells: a chart of 200 slivers says nothing


def _matplotlib() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import Formatter, MaxNLocator
    except ImportError:
        raise ConfigurationError(
            f"%baseten cost --plot needs matplotlib, which is not installed; install it with "
            f"{INSTALL_HINT}"
        ) from None

    class Dollars(Formatter):
        """Dollar ticks with one number of decimals per axis, enough to tell steps apart."""

        def __call__(self, x: float, pos: int | None = None) -> str:
            return self.format_ticks([x])[0]

        def format_ticks(self, values: Sequence[float]) -> list[str]:
            steps = [b - a for a, b in itertools.pairwise(values) if b > a]
            step = min(steps) if steps else max((abs(v) for v in values), default=0.0)
            # The fewest decimals (at least cents) that write every tick exactly.
            decimals = next(
                (
                    d
                    for d in range(2, 10)
                    if all(abs(round(v, d) - v) <= step * 1e-6 for v in values)
                ),
                10,
            )
            return ["$0" if not v else f"${v:,.{decimals}f}" for v in values]

    return Figure, FigureCanvasAgg, Dollars, MaxNLocator


def _text(value: str) -> str:
    """`value` shown as typed: a "$" would otherwise start matplotlib's math mode."""
    return value.replace("$", r"\$")


def _short_model(model: str) -> str:
    return model.rsplit("/", 1)[-1] or "unknown model"


def _series(
    rows: Sequence[LedgerRow], by: PlotBy
) -> tuple[list[str], list[str], dict[str, list[Decimal]]]:
    """The x labels, the models in first-seen order, and each model's spend per label."""
    labels: list[str] = []
    models: list[str] = []
    spend: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        label = row.ts[:10] if by == "day" else cell_label(row.cell)
        model = _short_model(row.model)
        if label not in labels:
            labels.append(label)
        if model not in models:
            models.append(model)
        spend[label, model] = spend.get((label, model), Decimal(0)) + row.cost_usd
    table = {m: [spend.get((label, m), Decimal(0)) for label in labels] for m in models}
    return labels, models, table


def cost_chart(
    rows: Sequence[LedgerRow], *, by: PlotBy = "cell", cap: Decimal | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """The chart as a MIME bundle (`image/png`, with a plain summary) and its display metadata."""
    figure_type, canvas_type, dollars, locator = _matplotlib()
    labels, models, table = _series(rows, by)
    total = sum((row.cost_usd for row in rows), Decimal(0))
    summary = (
        f"Cost chart: {format_usd(total)} over {len(rows)} call{'s' if len(rows) != 1 else ''}"
    )
    if cap is not None:
        summary += f" (budget {format_usd(cap)})"

    # Cumulative spend over every row, then only the last bars kept for the picture.
    running, cumulative = Decimal(0), []
    for index in range(len(labels)):
        running += sum((table[m][index] for m in models), Decimal(0))
        cumulative.append(running)
    first = max(0, len(labels) - _MAX_BARS)
    labels = labels[first:]
    cumulative = cumulative[first:]
    table = {m: values[first:] for m, values in table.items()}

    # Two panels on one x axis: the running total against the budget above, what each cell
    # (or day) cost below. One dollar axis each, so no bar is ever read against the cap's scale.
    figure = figure_type(figsize=_SIZE_IN, dpi=_DPI, layout="constrained")
    canvas_type(figure)
    above, below = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.4], "hspace": 0.08}
    )
    positions = list(range(len(labels)))

    line = [float(v) for v in cumulative]
    above.plot(positions, line, color=_CUMULATIVE, marker="o", markersize=3.5, linewidth=1.6)
    above.fill_between(positions, line, color=_CUMULATIVE, alpha=0.06)
    top = line[-1] if line else 0.0
    if cap is not None:
        above.axhline(float(cap), color=_BUDGET, linestyle="--", linewidth=1.3)
        above.annotate(
            _text(f"budget {format_usd(cap)}"),
            xy=(1, float(cap)),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=8,
            color=_BUDGET,
        )
        top = max(top, float(cap))
    above.set_ylim(0, top * 1.25 or 1e-6)
    above.set_ylabel("cumulative", fontsize=9)

    bottom = [0.0] * len(labels)
    for index, model in enumerate(models):
        values = [float(v) for v in table[model]]
        below.bar(
            positions,
            values,
            bottom=bottom,
            width=0.62,
            label=_text(model),
            color=_COLOURS[index % len(_COLOURS)],
            zorder=2,
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    unit = "day (UTC)" if by == "day" else "cell"
    below.set_ylim(0, max(bottom, default=0.0) * 1.15 or 1e-6)
    below.set_ylabel(f"per {by}", fontsize=9)
    slanted = len(labels) > 12  # many labels: slanted, each ending under its bar
    below.set_xticks(
        positions,
        labels,
        fontsize=8,
        rotation=50 if slanted else 0,
        ha="right" if slanted else "center",
        rotation_mode="anchor",
    )
    below.set_xlim(-0.6, len(labels) - 0.4)
    for axes in (above, below):
        axes.yaxis.set_major_formatter(dollars())
        axes.yaxis.set_major_locator(locator(4, min_n_ticks=2))
        axes.tick_params(axis="both", labelsize=8)
        axes.grid(axis="y", color="#e8e8e8", zorder=0)
        axes.spines[["top", "right"]].set_visible(False)
    below.legend(
        fontsize=8,
        frameon=False,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        title="model",
        title_fontsize=8,
    )
    title = f"Spend per {unit}: {format_usd(total)} in all"
    if cap is not None:
        used = f"{total / cap:.0%}" if cap else "all"
        title += f", {used} of the {format_usd(cap)} budget"
    above.set_title(_text(title), fontsize=10, loc="left")

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, facecolor="white")
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"image/png": png, "text/plain": summary}, {"image/png": {"width": SHOWN_WIDTH}}
