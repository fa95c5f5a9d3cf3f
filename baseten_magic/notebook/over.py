"""`%%baseten --over NAME`: a cell sent once per row of a notebook's DataFrame, Series or list.

Rule: the cell body is a `str.format` template (`{column}` fields, `{{`/`}}` literal braces)
and the line is read as for any cell (settings, then `--param`s, then the named options), plus
the batch knobs of `options._batch_options`. Everything is checked before anything is sent: a
missing or wrong-typed NAME, an option that means nothing for a batch, a template field the
data has no column for, a missing key: each is one `UsageError` line. The run is the batch
engine's (`engine.batch.runner.run_batch`, with a `render.progress` sink): its ledger rows
carry the session's id and the cell's `In [n]`, the session remembers them (so `%baseten cost`
shows them), and it spends from the session's `Budget` beside `--budget`. Whatever happens the
frame lands in `_baseten` (and `-o VAR`): all the rows, or after Kernel → Interrupt the rows
done so far, the cell then ending in one line (a KeyboardInterrupt, so Run All stops). pandas
loads only when such a cell runs.
"""

from __future__ import annotations

import difflib
import keyword
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from baseten_magic.core import settings as environment
from baseten_magic.core.errors import BasetenError, BatchInterrupted, ParameterError
from baseten_magic.core.pricing import Pricing
from baseten_magic.core.settings import Route
from baseten_magic.engine.batch.plan import BatchOptions
from baseten_magic.engine.session import Session
from baseten_magic.io.ledger import Ledger, LedgerRow
from baseten_magic.notebook.execute import is_terminal
from baseten_magic.notebook.options import usage_error
from baseten_magic.notebook.plan import _cell_params, _pricing_mode, _route, _schema

__all__ = ["OverInterrupted", "OverPlan", "plan_over", "refuse_batch_options", "run_over"]

# Single-cell options with no meaning for a batch: (attribute, option, what to do instead).
_SINGLE_CELL_ONLY = (
    (
        "interpolate",
        "-i",
        "with --over the cell is a {column} template whose {{ and }} are literal braces, so "
        "{{name}} interpolation cannot apply; drop -i and put the values in a column",
    ),
    ("tools", "--tools", "a batch sends one request per row; drop --tools, or use chat()"),
    ("run_tools", "--run-tools", "a batch runs no tool loop; drop --run-tools, or use chat()"),
)
# The batch knobs, which mean nothing without --over.
_BATCH_ONLY = (
    ("rpm", "--rpm"),
    ("tpm", "--tpm"),
    ("concurrency", "--concurrency"),
    ("budget", "--budget"),
    ("dry_run", "--dry-run"),
)


@dataclass(frozen=True)
class OverPlan:
    """A `--over` cell, decided before anything is sent."""

    template: str
    data: Any
    name: str
    options: BatchOptions
    out: str | None
    route: Route


class OverInterrupted(KeyboardInterrupt):
    """The interrupt of a `--over` cell, shown as one line instead of a traceback (like
    `execute.CellInterrupted`: still a KeyboardInterrupt, so Run All stops)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mKeyboardInterrupt\x1b[0m: {self.message}"]


# Front ends read the class name (the reply's `ename`): the name every Jupyter user knows.
OverInterrupted.__name__ = OverInterrupted.__qualname__ = "KeyboardInterrupt"


class _SessionLedger(Ledger):
    """The session's ledger file, whose rows the session also remembers (`%baseten cost`)."""

    def __init__(self, path: Path, rows: list[LedgerRow]) -> None:
        super().__init__(path)
        self._rows = rows

    def record(self, row: LedgerRow) -> None:
        super().record(row)
        self._rows.append(row)  # from the batch's worker thread: list.append is atomic


def refuse_batch_options(options: Any) -> None:
    """A batch knob on a cell without --over: one UsageError line (it would be ignored)."""
    for attribute, option in _BATCH_ONLY:
        value = getattr(options, attribute, None)
        if value not in (None, False):
            raise usage_error(
                ParameterError(
                    f"{option} applies only to a batch cell, got it without --over; add "
                    f"--over NAME (a DataFrame, Series or list) or drop {option}"
                )
            )


def _refuse_single_cell_options(options: Any) -> None:
    for attribute, option, instead in _SINGLE_CELL_ONLY:
        value = getattr(options, attribute, None)
        if value not in (None, False):
            raise ParameterError(f"{option} cannot be used with --over; {instead}")


def _number(raw: str | None, option: str, *, integer: bool = False) -> float | None:
    if raw is None:
        return None
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = 0
    if not 0 < value < float("inf"):
        kind = "a whole number" if integer else "a number"
        raise ParameterError(f"{option} expects {kind} above 0, got {raw!r}; pass e.g. {option} 60")
    return value


def _budget(raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = Decimal(raw.strip().lstrip("$"))
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        raise ParameterError(
            f"--budget expects dollars of 0 or more, got {raw!r}; pass e.g. --budget 0.50"
        )
    return value


def _is_pandas(value: object) -> bool:
    kind = type(value)
    return kind.__module__.startswith("pandas") and kind.__name__ in ("DataFrame", "Series")


def _data(name: str, namespace: Mapping[str, Any]) -> Any:
    """The notebook's value NAME, if it is data a batch can run over."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ParameterError(
            f"--over expects the name of a notebook variable, got {name!r}; pass e.g. --over df"
        )
    if name not in namespace:
        close = difflib.get_close_matches(name, [str(k) for k in namespace], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ParameterError(
            f"--over names {name!r}, which is not defined in the notebook; {hint}define the "
            "DataFrame, Series or list first"
        )
    value = namespace[name]
    if _is_pandas(value) or isinstance(value, list | tuple):
        return value
    raise ParameterError(
        f"--over expects a pandas DataFrame, Series or list, got {name} as "
        f"{type(value).__name__}; pass a DataFrame with a column per template field (a dask "
        "DataFrame goes through baseten_magic.map())"
    )


def plan_over(
    options: Any,
    cell: str,
    *,
    session: Session,
    namespace: Mapping[str, Any],
    cell_number: int | None,
) -> OverPlan:
    """The plan of a `--over` cell; raises ParameterError or ConfigurationError, sends nothing."""
    _refuse_single_cell_options(options)
    name = str(options.over).strip()
    data = _data(name, namespace)
    out = options.out
    if out is not None and (not out.isidentifier() or keyword.iskeyword(out)):
        raise ParameterError(f"-o expects a Python variable name, got {out!r}; pass e.g. -o out")
    template = cell.strip()
    if not template:
        raise ParameterError(
            "expected a prompt template in the cell body, got an empty cell; write e.g. "
            "Classify this review: {review}"
        )
    settings = session.settings
    route = _route(options.route, session)
    concurrency = _number(options.concurrency, "--concurrency", integer=True)
    system = options.system if options.system is not None else (settings.system or None)
    batch = BatchOptions(
        model=options.model if options.model is not None else settings.model,
        system=system,
        schema=_schema(options, namespace),
        json=bool(options.json),
        thinking=options.thinking if options.thinking is not None else settings.thinking,
        concurrency=None if concurrency is None else int(concurrency),
        rpm=_number(options.rpm, "--rpm"),
        tpm=_number(options.tpm, "--tpm"),
        budget_usd=_budget(options.budget),
        cache=options.cache is not False,  # a batch answers from the cache unless --no-cache
        dry_run=bool(options.dry_run),
        timeout=session.timeout(),
        params=_cell_params(options, session.defaults()),
        pricing=Pricing(mode=_pricing_mode(options.pricing, settings.pricing_mode)),
        session=session.id,
        cell=cell_number,
        route=route,
        budget=session.budget,
        ledger=_SessionLedger(session.ledger.path, session.rows),
    )
    if not batch.dry_run:
        # Here, not inside the run, so a missing key or bad URL sends nothing.
        if route == "xpay":
            environment.xpay_key()
            environment.xpay_url()
        else:
            environment.api_key()
            environment.base_url()
    return OverPlan(template, data, name, batch, out, route)


def _sink(shell: Any, total: int) -> Any:
    from baseten_magic.render.progress import NotebookProgress, choose_sink

    if is_terminal(shell):
        return choose_sink(True, total)  # a tqdm bar (the summary alone without tqdm)
    return NotebookProgress()


def _store(namespace: MutableMapping[str, Any] | None, plan: OverPlan, value: Any) -> None:
    if namespace is None:
        return
    namespace["_baseten"] = value
    if plan.out:
        namespace[plan.out] = value


def run_over(
    plan: OverPlan,
    *,
    shell: Any,
    namespace: MutableMapping[str, Any] | None,
) -> None:
    """Run the batch to its end; raises a one-line UsageError, or OverInterrupted."""
    from IPython.display import display as ipython_display

    from baseten_magic.engine.batch.runner import BatchEstimate, run_batch

    display: Callable[..., Any] = ipython_display  # untyped in IPython
    total = len(plan.data)
    sink = None if plan.options.dry_run else _sink(shell, total)
    try:
        out = run_batch(plan.template, plan.data, plan.options, sink=sink)
    except BatchInterrupted as exc:
        partial = exc.partial
        _store(namespace, plan, partial)
        done = 0 if partial is None else int(partial.attrs.get("baseten", {}).get("done", 0))
        where = f"{plan.out} (and _baseten)" if plan.out else "_baseten"
        raise OverInterrupted(
            f"interrupted by the user after {done} of {total} rows; the rows done are in "
            f"{where}; run the cell again to send only the missing rows"
        ) from None
    except BasetenError as exc:  # a bad template field, parameter or price: nothing was sent
        raise usage_error(exc) from None
    _store(namespace, plan, out)
    if isinstance(out, BatchEstimate):
        display({"text/plain": str(out)}, raw=True)
        return
    display(out.head())
