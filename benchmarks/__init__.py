"""Benchmarks for baseten_magic: every figure is a ratio against a baseline of the same run.

Rule: a benchmark module exposes `run(quick: bool) -> Section` and never asserts on speed; it
measures, compares with a baseline measured in the same process and run, and reports whether
each target is met. `python3 -m benchmarks.run [--quick] [--json PATH]` runs them all.

The machine these run on is small and noisy, so CPU work is timed as the best of several
repetitions and end-to-end latency as the median of alternating repetitions.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Section",
    "Target",
    "best_cpu_interleaved",
    "best_cpu_seconds",
    "median",
    "ratio",
]


@dataclass(frozen=True)
class Target:
    """One claim: a measured value, the bound it must meet, and whether it does."""

    name: str
    value: float
    bound: float
    kind: str  # "max" (value must be <= bound) or "min" (value must be >= bound)
    note: str = ""

    @property
    def met(self) -> bool:
        """True when the value is on the right side of the bound."""
        return self.value <= self.bound if self.kind == "max" else self.value >= self.bound

    def as_json(self) -> dict[str, Any]:
        """The target as plain JSON values, `met` included."""
        return {**asdict(self), "met": self.met}


@dataclass(frozen=True)
class Section:
    """One benchmark's results: a table (rows of labelled values), targets and notes."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    targets: tuple[Target, ...] = ()
    notes: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The section as plain JSON values."""
        return {
            "title": self.title,
            "columns": list(self.columns),
            "rows": [list(row) for row in self.rows],
            "targets": [target.as_json() for target in self.targets],
            "notes": list(self.notes),
            "data": self.data,
        }


def best_cpu_seconds(work: Callable[[], object], repetitions: int) -> float:
    """The least CPU time (`time.process_time`) of `repetitions` runs of `work`."""
    best = float("inf")
    for _ in range(repetitions):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


def best_cpu_interleaved(
    works: dict[str, Callable[[], object]], repetitions: int
) -> dict[str, float]:
    """The least CPU time of each work, running them in turn so noise hits all alike."""
    best = dict.fromkeys(works, float("inf"))
    for _ in range(repetitions):
        for name, work in works.items():
            start = time.process_time()
            work()
            best[name] = min(best[name], time.process_time() - start)
    return best


def median(values: list[float]) -> float:
    """The median of a non-empty list."""
    return float(statistics.median(values))


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, or infinity when the denominator is zero."""
    return numerator / denominator if denominator > 0 else float("inf")


def stream_decoder(state: Any) -> Any:
    """The client's own SSE-to-state decoder for `state`, with no timeout: the path a streamed
    response's bytes take inside `Client`, without the socket."""
    import math

    from baseten_magic.core.retry import RetryPolicy
    from baseten_magic.io.client import _Core, _StreamDecoder

    core = _Core(base_url=None, api_key=None, retry=RetryPolicy(), rng=None)
    return _StreamDecoder(state, core, math.inf, time.monotonic)
