"""render.progress: a bounded number of paints, a summary that replaces the live line."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

from baseten_magic.core.progress import BatchProgress
from baseten_magic.render.progress import (
    NotebookProgress,
    SummaryOnly,
    TerminalProgress,
    choose_sink,
    progress_text,
)


class FakeHandle:
    def __init__(self, shown: list[dict[str, str]]) -> None:
        self.shown = shown

    def update(self, bundle: dict[str, str], raw: bool) -> None:
        self.shown.append(bundle)


def test_notebook_paints_at_most_twice_a_second_then_the_summary() -> None:
    shown: list[dict[str, str]] = []
    now = [0.0]

    def display(bundle: dict[str, str], raw: bool, display_id: bool) -> Any:
        shown.append(bundle)
        return FakeHandle(shown)

    sink = NotebookProgress(clock=lambda: now[0], display=display)
    for step in range(1000):  # 10 s of updates every 10 ms
        now[0] = step * 0.01
        sink.update(BatchProgress(total=1000, done=step, elapsed_s=now[0]))
    assert 19 <= sink.paints <= 21
    assert "<progress" in shown[-1]["text/html"]
    sink.close(BatchProgress(total=1000, done=1000), "baseten map: 1000/1000 rows <b>")
    assert shown[-1]["text/plain"] == "baseten map: 1000/1000 rows <b>"
    assert "&lt;b&gt;" in shown[-1]["text/html"]  # escaped: text, never markup


def test_progress_line_has_every_figure() -> None:
    p = BatchProgress(
        total=100,
        done=50,
        cached=10,
        errors=2,
        rate_limited=3,
        concurrency=6,
        cost_usd=Decimal("0.0123"),
        elapsed_s=10.0,
    )
    text = progress_text(p)
    for part in (
        "50/100 rows",
        "5.0 rows/s",
        "$0.0123",
        "ETA 12 s",
        "2 errors",
        "10 cached",
        "concurrency 6",
        "3 rate-limited",
    ):
        assert part in text, part


def test_terminal_bar_and_summary() -> None:
    out = io.StringIO()
    sink = TerminalProgress(10, file=out)
    sink.update(BatchProgress(total=10, done=4))
    sink.close(BatchProgress(total=10, done=10), "baseten map: 10/10 rows")
    assert "10/10" in out.getvalue()
    assert out.getvalue().rstrip().endswith("baseten map: 10/10 rows")


def test_choose_sink() -> None:
    assert choose_sink(False, 10) is None
    summary = SummaryOnly(io.StringIO())
    assert choose_sink(summary, 10) is summary
    assert isinstance(choose_sink(True, 10), TerminalProgress)  # no kernel here
