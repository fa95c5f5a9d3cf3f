"""Memory: peak allocation while streaming a 1M-character answer, as a multiple of its size.

Rule: the stream is recorded first (not counted); then, under `tracemalloc`, its bytes go in
4 KB reads through exactly the client's path (`SSEDecoder` + `StreamState`) and a `Painter`
until the final paint. Two surfaces: `RecordingSurface`, which keeps every message it was sent
(a test double: its log alone is the painter's whole traffic), and a surface that keeps only
what each output shows now, as a front end does, which isolates what the client itself holds.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Mapping, Sequence
from typing import Any

from baseten_magic.core.stream import StreamState
from baseten_magic.render.painter import Painter
from baseten_magic.render.surfaces import RecordingSurface, SlotId, Surface
from benchmarks import Section, ratio, stream_decoder
from benchmarks.decode import record_stream, split_reads

__all__ = ["LatestOnlySurface", "peak_bytes", "run"]

MODEL = "moonshotai/Kimi-K2-Instruct-0905"  # no reasoning: the answer is all content
CHARS_PER_TOKEN = 7.0  # what `/words` averages; only used to size the request


class LatestOnlySurface:
    """Keeps only the current bundle of each output, as a notebook front end does."""

    def __init__(self) -> None:
        self.outputs: list[Mapping[str, Any]] = []

    def show(self, bundle: Mapping[str, Any]) -> SlotId:
        """Append an output."""
        self.outputs.append(bundle)
        return len(self.outputs) - 1

    def update(self, slot: SlotId, bundle: Mapping[str, Any]) -> None:
        """Replace an output; the old bundle is dropped."""
        self.outputs[slot] = bundle


def peak_bytes(
    reads: Sequence[bytes], surface: Surface, where: list[str] | None = None
) -> tuple[int, int, int]:
    """Stream `reads` through decoder, state and painter; (peak bytes, answer bytes, bytes sent).

    With `where`, the largest allocation sites still alive before the final paint are appended.
    """
    gc.collect()
    tracemalloc.start()
    try:
        decoder = stream_decoder(StreamState())
        painter = Painter(surface)
        for chunk in reads:
            for delta in decoder.feed(chunk):
                painter.add(delta)
            painter.tick()
        if where is not None:
            top = tracemalloc.take_snapshot().statistics("lineno")[:5]
            where.extend(str(stat) for stat in top)
        decoder.finish()
        painter.finish(decoder.state.result(status="ok"), pricing_mode="per_token")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    answer = len(decoder.state.content.encode())
    return peak, answer, painter.stats.bytes_sent


def run(quick: bool) -> Section:
    """Record a long answer, then measure the peak with both surfaces."""
    target_chars = 250_000 if quick else 1_000_000
    started = time.perf_counter()
    data = record_stream(int(target_chars / CHARS_PER_TOKEN) + 1, model=MODEL)
    reads = split_reads(data, low=4096, high=4096)
    record_s = time.perf_counter() - started
    rows = []
    figures: dict[str, dict[str, float]] = {}
    where: list[str] = []
    for label, surface in (
        ("RecordingSurface (keeps every message)", RecordingSurface()),
        ("front-end-like (keeps current outputs)", LatestOnlySurface()),
    ):
        peak, answer, sent = peak_bytes(
            reads, surface, where if isinstance(surface, LatestOnlySurface) else None
        )
        figures[label] = {
            "peak_bytes": peak,
            "answer_bytes": answer,
            "sent_bytes": sent,
            "peak_over_answer": ratio(peak, answer),
        }
        rows.append(
            (label, f"{answer / 1e6:.2f}", f"{peak / 1e6:.1f}", f"{ratio(peak, answer):.1f}")
        )
    return Section(
        name="memory",
        title="Peak memory while streaming a long answer (tracemalloc)",
        columns=("surface", "answer MB", "peak MB", "peak / answer"),
        rows=tuple(rows),
        notes=(
            f"Stream of {len(data) / 1e6:.0f} MB ({len(reads):,} reads of 4 KB) recorded in "
            f"{record_s:.1f} s before measuring; the recorded bytes are not counted.",
        ),
        data={
            "stream_bytes": len(data),
            "reads": len(reads),
            "surfaces": figures,
            "largest_sites_before_final_paint": where,
        },
    )
