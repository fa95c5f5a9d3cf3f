"""What a batch run reports while it runs: a snapshot value and the sink that shows it.

Rule: the engine never calls a display. A front end polls the run for a `BatchProgress`
snapshot at the rate it wants to paint and hands it to a `ProgressSink`; the run's counters are
plain numbers, so polling from another thread is safe and costs the run nothing. The same sink
serves `map()` (notebook display or terminal bar) and the `%%baseten --over` magic.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True)
class BatchProgress:
    """Counters of one run at one moment."""

    total: int
    done: int = 0
    cached: int = 0
    errors: int = 0
    requests: int = 0
    rate_limited: int = 0
    in_flight: int = 0
    concurrency: int = 0
    cost_usd: Decimal = Decimal(0)
    elapsed_s: float = 0.0
    finished: bool = False

    @property
    def rows_per_s(self) -> float:
        """Rows finished per second so far (cache hits included)."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate of the rows sent so far; None before any answer."""
        sent = self.done - self.cached
        if sent <= 0 or self.elapsed_s <= 0:
            return None
        return (self.total - self.done) / (sent / self.elapsed_s)


class ProgressSink(Protocol):
    """Shows a run's progress: `update` often (at the front end's pace), `close` once."""

    def update(self, progress: BatchProgress) -> None: ...

    def close(self, progress: BatchProgress, summary: str) -> None: ...
