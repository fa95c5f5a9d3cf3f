"""Progress of a batch where people look: a live line in a notebook, a tqdm bar in a terminal.

Rule: sinks paint at a bounded rate (at most every `interval` seconds, plus one final paint),
whatever rate they are updated at, so a long run sends a bounded number of display messages.
The final paint replaces the live display with a one-line summary in `text/plain` and
`text/html`, which stays in the saved notebook. Nothing here runs the batch; the front end
hands snapshots in (see `core.progress`).
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from baseten_magic.core.pricing import format_usd
from baseten_magic.core.progress import BatchProgress, ProgressSink

NOTEBOOK_INTERVAL_S = 0.5


def progress_text(p: BatchProgress) -> str:
    """One line: rows done/total, rate, spend, ETA, errors, cache hits, concurrency."""
    eta = p.eta_s
    parts = [
        f"{p.done}/{p.total} rows",
        f"{p.rows_per_s:.1f} rows/s",
        format_usd(p.cost_usd),
        "ETA " + ("?" if eta is None else f"{eta:.0f} s"),
        f"{p.errors} errors",
        f"{p.cached} cached",
        f"concurrency {p.concurrency}",
    ]
    if p.rate_limited:
        parts.append(f"{p.rate_limited} rate-limited")
    return " · ".join(parts)


class NotebookProgress:
    """A display updated in place (`display_id`), at most every `interval` seconds."""

    def __init__(
        self,
        *,
        interval: float = NOTEBOOK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        display: Callable[..., Any] | None = None,
    ) -> None:
        if display is None:
            from IPython.display import display as ipython_display

            display = ipython_display
        self._display: Callable[..., Any] = display
        self._interval = interval
        self._clock = clock
        self._handle: Any = None
        self._last = float("-inf")
        self.paints = 0

    def _show(self, bundle: dict[str, str]) -> None:
        self.paints += 1
        if self._handle is None:
            self._handle = self._display(bundle, raw=True, display_id=True)
        else:
            handle: Any = self._handle
            handle.update(bundle, raw=True)

    def update(self, progress: BatchProgress) -> None:
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        text = progress_text(progress)
        share = progress.done / progress.total if progress.total else 1.0
        bar = (
            f'<progress value="{progress.done}" max="{max(progress.total, 1)}" '
            'style="width:16em;vertical-align:middle"></progress> '
        )
        self._show(
            {
                "text/plain": f"{share:.0%} {text}",
                "text/html": f"<div>{bar}<code>{html.escape(text)}</code></div>",
            }
        )

    def close(self, progress: BatchProgress, summary: str) -> None:
        self._show({"text/plain": summary, "text/html": f"<code>{html.escape(summary)}</code>"})


class TerminalProgress:
    """A tqdm bar on stderr (tqdm throttles its own redraws), then the summary line."""

    def __init__(self, total: int, *, file: TextIO | None = None) -> None:
        from tqdm.auto import tqdm

        self._file = file or sys.stderr
        self._bar: Any = tqdm(total=total, unit="row", file=self._file, dynamic_ncols=True)
        self._done = 0
        self._last_postfix = float("-inf")

    def update(self, progress: BatchProgress) -> None:
        step = progress.done - self._done
        if step > 0:
            self._bar.update(step)
            self._done = progress.done
        now = time.monotonic()
        if now - self._last_postfix >= 1.0:
            self._last_postfix = now
            self._bar.set_postfix_str(
                f"{format_usd(progress.cost_usd)}, {progress.errors} err, "
                f"{progress.cached} cached, conc {progress.concurrency}",
                refresh=False,
            )

    def close(self, progress: BatchProgress, summary: str) -> None:
        self.update(progress)
        self._bar.close()
        print(summary, file=self._file, flush=True)


class SummaryOnly:
    """No live display (tqdm missing, or no front end to paint on): only the summary line."""

    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file or sys.stderr

    def update(self, progress: BatchProgress) -> None:
        return None

    def close(self, progress: BatchProgress, summary: str) -> None:
        print(summary, file=self._file, flush=True)


def _in_notebook() -> bool:
    shell_module = sys.modules.get("IPython")
    if shell_module is None:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def choose_sink(progress: bool | ProgressSink, total: int) -> ProgressSink | None:
    """The sink `map(progress=...)` asks for: False → none; True → notebook display in a
    kernel, else a tqdm bar (summary only without tqdm); a sink object → itself."""
    if progress is False:
        return None
    if progress is not True:
        return progress
    if _in_notebook():
        return NotebookProgress()
    try:
        return TerminalProgress(total)
    except ImportError:
        return SummaryOnly()
