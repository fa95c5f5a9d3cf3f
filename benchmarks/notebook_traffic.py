"""Notebook traffic: what `%%baseten` sends to the front end, in a real kernel.

Rule: measured where it happens. A real ipykernel (the test harness's `KernelSession`) runs
`%%baseten -m kimi-k2 --no-memory` with `/words N` against a `LocalServer` started in this
process; every IOPub message is counted, sized and time-stamped on arrival. Compared with a
naive cell that streams with the same client and updates one display with the full Markdown
text on every token (quadratic bytes).

Figures per answer length and speed: display messages (display_data + update_display_data),
their bytes, bytes / final output bytes, the busiest one-second window of display messages,
and the worst gap between a token's arrival and its paint (`Painter.stats.max_lag_s`, read in
the kernel). Targets: bytes <= 3x the final output; <= 20 display messages in any second; no
token painted later than 100 ms after it arrived, except while the painter's byte budget
deferred a repaint (a documented throttle; such runs are reported, not counted).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from baseten_magic.server import LocalServer
from benchmarks import Section, Target, ratio

__all__ = ["Run", "run"]

DISPLAY_TYPES = frozenset({"display_data", "update_display_data"})
SPEEDS = (100, 3_000)
LENGTHS = (1_000, 5_000, 20_000, 100_000)
MAX_SECONDS = 200.0  # longest streaming time run for real; longer ones are extrapolated
API_KEY = "benchmark-key"

# Records the painter each `%%baseten` cell creates, so its statistics can be read afterwards.
# The magic imports `Painter` from its module when a cell runs, so the subclass is picked up.
_SETUP = """
import json, os
import baseten_magic.render.painter as _bm_painter_module

class _BenchPainter(_bm_painter_module.Painter):
    last = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        type(self).last = self

_bm_painter_module.Painter = _BenchPainter
%load_ext baseten_magic
"""

_STATS = """
_bm_stats = globals().get("_baseten_painter_stats") or _BenchPainter.last.stats
print(json.dumps({
    "max_lag_s": _bm_stats.max_lag_s,
    "deferred": _bm_stats.deferred,
    "painter_messages": _bm_stats.messages,
    "painter_bytes": _bm_stats.bytes_sent,
    "painter_final_bytes": _bm_stats.final_output_bytes,
    "latency_s": _baseten.latency_s,
    "status": _baseten.status,
    "content_chars": len(_baseten.content),
}))
_BenchPainter.last = None
globals().pop("_baseten_painter_stats", None)
"""

_NAIVE = """
from IPython.display import Markdown, display
from baseten_magic.engine.call import prepare_request
from baseten_magic.io.client import Client
_bm_client = Client()
_bm_handle = display(Markdown(""), display_id=True)
_bm_text = ""
for _bm_delta in _bm_client.stream(prepare_request("/words {n}", model="kimi-k2").body):
    if _bm_delta.content:
        _bm_text += _bm_delta.content
        _bm_handle.update(Markdown(_bm_text))
_bm_client.close()
"""


@dataclass(frozen=True)
class Run:
    """Front-end traffic of one cell."""

    client: str
    tokens: int
    speed: int
    messages: int
    display_bytes: int
    final_bytes: int
    peak_per_second: int
    seconds: float
    max_lag_s: float | None = None
    deferred: int | None = None
    painter_ratio: float | None = None  # the painter's own count: bundle bytes, no envelopes
    estimated: bool = False

    @property
    def bytes_ratio(self) -> float:
        """Display bytes sent / bytes of the final outputs."""
        return ratio(self.display_bytes, self.final_bytes)

    def as_json(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            **{key: getattr(self, key) for key in self.__dataclass_fields__},
            "bytes_ratio": self.bytes_ratio,
        }


def _peak_window(arrivals: list[float], window: float = 1.0) -> int:
    """The largest number of arrivals within any `window` seconds."""
    best = 0
    start = 0
    for end, at in enumerate(arrivals):
        while at - arrivals[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _final_bytes(outputs: tuple[dict[str, Any], ...]) -> int:
    # Sized like a display message's content (data, metadata, transient), so the ratio compares
    # like with like.
    return sum(
        len(json.dumps({k: out[k] for k in ("data", "metadata", "transient") if k in out}))
        for out in outputs
        if out.get("output_type") in ("display_data", "execute_result")
    )


def _execute(kernel: Any, code: str, timeout: float) -> tuple[Any, list[float], float]:
    """Run `code`, time-stamping display messages as they arrive; (result, arrivals, seconds)."""
    arrivals: list[float] = []

    def note(message: Any) -> bool:
        if message.msg_type in DISPLAY_TYPES:
            arrivals.append(time.monotonic())
        return bool(
            message.msg_type == "status" and message.content.get("execution_state") == "idle"
        )

    started = time.monotonic()
    msg_id = kernel.start_execute(code)
    kernel.wait_for(msg_id, note, timeout=timeout)
    result = kernel.wait(msg_id, timeout=timeout)
    seconds = time.monotonic() - started
    if result.status != "ok":
        raise RuntimeError(
            f"expected the benchmark cell to succeed, got {result.status}: "
            f"{result.reply.get('ename')}: {result.reply.get('evalue')} {result.stderr[-300:]}"
        )
    return result, arrivals, seconds


def _measure(kernel: Any, client: str, tokens: int, speed: int) -> Run:
    timeout = tokens / speed + 120.0
    if client == "baseten_magic":
        code = f"%%baseten -m kimi-k2 --no-memory\n/words {tokens}\n"
    else:
        code = _NAIVE.replace("{n}", str(tokens))
    result, arrivals, seconds = _execute(kernel, code, timeout)
    messages = [m for m in result.messages if m.msg_type in DISPLAY_TYPES]
    lag: float | None = None
    deferred: int | None = None
    painter_ratio: float | None = None
    if client == "baseten_magic":
        stats_result, _, _ = _execute(kernel, _STATS, 60.0)
        stats = json.loads(stats_result.stdout.strip().splitlines()[-1])
        if stats["status"] != "ok" or stats["content_chars"] == 0:
            raise RuntimeError(f"expected a complete answer in the kernel, got {stats}")
        lag, deferred = float(stats["max_lag_s"]), int(stats["deferred"])
        painter_ratio = ratio(stats["painter_bytes"], stats["painter_final_bytes"])
    return Run(
        client=client,
        tokens=tokens,
        speed=speed,
        messages=len(messages),
        display_bytes=sum(m.nbytes for m in messages),
        final_bytes=_final_bytes(result.outputs),
        peak_per_second=_peak_window(arrivals),
        seconds=seconds,
        max_lag_s=lag,
        deferred=deferred,
        painter_ratio=painter_ratio,
    )


def _extrapolate(measured: Run, tokens: int) -> Run:
    """A longer answer at the same speed: traffic grows with time, the ratios stay."""
    scale = tokens / measured.tokens
    return Run(
        client=measured.client,
        tokens=tokens,
        speed=measured.speed,
        messages=round(measured.messages * scale),
        display_bytes=round(measured.display_bytes * scale),
        final_bytes=round(measured.final_bytes * scale),
        peak_per_second=measured.peak_per_second,
        seconds=measured.seconds * scale,
        max_lag_s=measured.max_lag_s,
        deferred=measured.deferred,
        painter_ratio=measured.painter_ratio,
        estimated=True,
    )


def _plan(quick: bool) -> list[tuple[str, int, int]]:
    """(client, tokens, speed) to run, fastest first."""
    if quick:
        grid = [("baseten_magic", n, 3_000) for n in (1_000, 5_000)]
        return [*grid, ("naive", 1_000, 3_000)]
    grid = [
        ("baseten_magic", n, speed)
        for speed in sorted(SPEEDS, reverse=True)
        for n in LENGTHS
        if n / speed <= MAX_SECONDS
    ]
    naive = [("naive", n, 3_000) for n in (1_000, 5_000)] + [("naive", 1_000, 100)]
    return grid + naive


def run(quick: bool) -> Section:
    """Run the grid in one kernel against one local server per speed."""
    from tests.harness.kernel import KernelSession

    plan = _plan(quick)
    speeds = sorted({speed for _, _, speed in plan})
    servers = {s: LocalServer(tokens_per_second=s, api_key=API_KEY).start() for s in speeds}
    runs: list[Run] = []
    try:
        with (
            tempfile.TemporaryDirectory() as home,
            KernelSession(
                {
                    "BASETEN_API_KEY": API_KEY,
                    "BASETEN_BASE_URL": servers[speeds[0]].url,
                    "BASETEN_MAGIC_LEDGER": os.path.join(home, "ledger.sqlite"),
                }
            ) as kernel,
        ):
            _execute(kernel, _SETUP, 60.0)
            # Warm up: imports, the connection and the Markdown renderer are paid once, here.
            _measure(kernel, "baseten_magic", 50, speeds[0])
            for client, tokens, speed in plan:
                point = f"import os; os.environ['BASETEN_BASE_URL'] = {servers[speed].url!r}"
                _execute(kernel, point, 30.0)
                runs.append(_measure(kernel, client, tokens, speed))
    finally:
        for server in servers.values():
            server.stop()

    notes: list[str] = []
    if not quick:
        for speed in SPEEDS:
            measured = [r for r in runs if r.client == "baseten_magic" and r.speed == speed]
            longest = max(measured, key=lambda r: r.tokens)
            for tokens in LENGTHS:
                if tokens / speed > MAX_SECONDS:
                    runs.append(_extrapolate(longest, tokens))
                    notes.append(
                        f"{tokens:,} tokens at {speed} tok/s would stream for "
                        f"{tokens / speed:.0f} s: not run; estimated from {longest.tokens:,} "
                        "tokens (messages and bytes scale with time, ratios and lag stay)."
                    )
    ours = [r for r in runs if r.client == "baseten_magic"]
    on_time = [r for r in ours if not r.deferred]
    throttled = [r for r in ours if r.deferred]
    if throttled:
        notes.append(
            "Byte-budget deferrals (lag exempt): "
            + ", ".join(
                f"{r.tokens:,} @ {r.speed}/s: {r.deferred} deferred, max lag "
                f"{1e3 * (r.max_lag_s or 0):.0f} ms"
                for r in throttled
            )
        )
    notes.append(
        "Bytes are JSON-encoded message content; final bytes are the final outputs sized the "
        "same way. The painter's own ratio counts bundle bytes only (no metadata or display id "
        "per message), as its byte budget does. The kernel is reached directly, without "
        "jupyter_server's IOPub rate limit (1000 messages/s): the naive cell's flood is "
        "delivered here, but would be cut there."
    )
    targets = (
        Target("worst bytes / final output", max(r.bytes_ratio for r in ours), 3.0, "max"),
        Target("busiest second, display messages", max(r.peak_per_second for r in ours), 20, "max"),
        Target(
            "worst token-to-paint lag, s (runs without deferral)",
            max((r.max_lag_s or 0.0) for r in on_time) if on_time else 0.0,
            0.1,
            "max",
        ),
    )
    rows = tuple(
        (
            r.client + (" (est.)" if r.estimated else ""),
            f"{r.tokens:,}",
            r.speed,
            r.messages,
            f"{r.display_bytes / 1e3:,.0f}",
            f"{r.final_bytes / 1e3:,.0f}",
            f"{r.bytes_ratio:.2f}",
            "" if r.painter_ratio is None else f"{r.painter_ratio:.2f}",
            r.peak_per_second,
            "" if r.max_lag_s is None else f"{1e3 * r.max_lag_s:.0f}",
            "" if r.deferred is None else r.deferred,
        )
        for r in sorted(runs, key=lambda r: (r.client != "baseten_magic", r.speed, r.tokens))
    )
    return Section(
        name="notebook_traffic",
        title="Notebook traffic in a real kernel (%%baseten -m kimi-k2 --no-memory, /words N)",
        columns=(
            "client",
            "tokens",
            "tok/s",
            "display msgs",
            "display KB",
            "final KB",
            "bytes / final",
            "painter's own ratio",
            "msgs in busiest s",
            "max lag ms",
            "deferred",
        ),
        rows=rows,
        targets=targets,
        notes=tuple(notes),
        data={"runs": [r.as_json() for r in runs]},
    )
