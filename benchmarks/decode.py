"""Decode throughput: a recorded 20,000-chunk stream decoded from memory, three ways.

Rule: no network while timing. The stream is recorded once from the local server (`/words N`
to a reasoning model: role delta, reasoning deltas, content deltas with cumulative usage,
keep-alive comments, the finish chunk, the trailing usage chunk, `[DONE]`), then cut into reads
of 1-4 KB (fixed seed) and decoded by:

- ours: `client._StreamDecoder`, i.e. `SSEDecoder.feed` + `StreamState.feed_data` per event;
- openai: the `openai` package's `Stream` over an in-memory response, accumulating content;
- floor: split on blank lines, strip `data: `, `json.loads` each event (nothing else).

Figures are CPU microseconds per chunk (best of several runs) and the ratios
openai / ours (target >= 10) and ours / floor (target <= 1.2).
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import random
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import httpx

from baseten_magic.core.stream import StreamState
from baseten_magic.server import LocalServer
from benchmarks import (
    Section,
    Target,
    best_cpu_interleaved,
    best_cpu_seconds,
    ratio,
    stream_decoder,
)

__all__ = [
    "decode_floor",
    "decode_openai",
    "decode_ours",
    "openai_client",
    "record_stream",
    "run",
    "split_reads",
]

RECORD_MODEL = "openai/gpt-oss-120b"  # always reasons: the stream has both kinds of delta


def record_stream(tokens: int, *, model: str = RECORD_MODEL) -> bytes:
    """The exact bytes the local server sends for a `/words tokens` streaming answer."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"/words {tokens}"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with LocalServer(tokens_per_second=None) as server, httpx.Client(timeout=120.0) as http:
        url = f"{server.url.rstrip('/')}/chat/completions"
        headers = {"Authorization": f"Bearer {server.api_key}"}
        with http.stream("POST", url, json=body, headers=headers) as response:
            response.raise_for_status()
            return b"".join(response.iter_raw())


def split_reads(data: bytes, *, low: int = 1024, high: int = 4096, seed: int = 0) -> list[bytes]:
    """`data` cut into consecutive reads of `low`..`high` bytes (a fixed pseudo-random walk)."""
    rng = random.Random(seed)
    reads: list[bytes] = []
    position = 0
    while position < len(data):
        size = rng.randint(low, high)
        reads.append(data[position : position + size])
        position += size
    return reads


def event_reads(data: bytes) -> list[bytes]:
    """`data` cut after every blank line: one event per read, as a slow model's reads arrive."""
    return [part + b"\n\n" for part in data.split(b"\n\n") if part]


def decode_ours(reads: Sequence[bytes]) -> str:
    """This client's path: exactly what `Client.stream` does with each read."""
    decoder = stream_decoder(StreamState())
    for chunk in reads:
        decoder.feed(chunk)
    decoder.finish()
    return decoder.state.content


def openai_client() -> Any:
    """An SDK client for `decode_openai` (building one is slow, so it is built once, untimed)."""
    from openai import OpenAI

    # Only its SSE decoder and response processing are used; nothing is ever sent.
    return OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1", max_retries=0)


def decode_openai(reads: Sequence[bytes], client: Any) -> str:
    """The `openai` package's streaming path over an in-memory response, as for a live one."""
    import httpx2
    from openai import Stream
    from openai.types.chat import ChatCompletionChunk

    class _Reads(httpx2.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            return iter(reads)

    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, stream=_Reads(), request=request
    )
    parts: list[str] = []
    for chunk in Stream(cast_to=ChatCompletionChunk, response=response, client=client):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


def decode_floor(reads: Sequence[bytes]) -> int:
    """The floor: split on blank lines, strip `data: `, `json.loads` each event."""
    loads = json.loads
    buffer = b""
    count = 0
    for chunk in reads:
        buffer += chunk
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            if event.startswith(b"data: ") and event != b"data: [DONE]":
                loads(event[6:])
                count += 1
    return count


def _collect(
    out: list[str], decode: Callable[[Sequence[bytes]], str], reads: Sequence[bytes]
) -> None:
    out.append(decode(reads))


def profile_ours(reads: Sequence[bytes], top: int = 12) -> list[str]:
    """Where `decode_ours` spends its time: the top functions by own (tottime) time."""
    profiler = cProfile.Profile()
    profiler.enable()
    decode_ours(reads)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return [line for line in lines[start:] if line.strip()]


def run(quick: bool) -> Section:
    """Record the stream, check all three decoders agree, time them, compare."""
    tokens = 20_000
    repetitions = 5 if quick else 9  # interleaved best-of: fewer let one noisy burst decide
    data = record_stream(tokens)
    chunks = data.count(b"\ndata: ") + data.startswith(b"data: ")
    chunks -= 1  # the [DONE] line is not a chunk
    layouts = {"1-4 KB reads": split_reads(data)}
    if not quick:
        layouts["one event per read"] = event_reads(data)
    reference = decode_ours(layouts["1-4 KB reads"])
    sdk = openai_client()

    rows: list[tuple[Any, ...]] = []
    figures: dict[str, dict[str, float]] = {}
    for label, reads in layouts.items():
        decoded: list[str] = []
        best = best_cpu_interleaved(
            {"ours": partial(decode_ours, reads), "floor": partial(decode_floor, reads)},
            repetitions,
        )
        ours, floor = best["ours"], best["floor"]
        openai_s = best_cpu_seconds(
            partial(_collect, decoded, partial(decode_openai, client=sdk), reads),
            1 if quick else 3,
        )
        if decoded[0] != reference:
            raise AssertionError("expected openai and this client to decode the same content")
        per_chunk = {
            "ours": 1e6 * ours / chunks,
            "openai": 1e6 * openai_s / chunks,
            "floor": 1e6 * floor / chunks,
        }
        figures[label] = {
            **{f"{name}_us_per_chunk": value for name, value in per_chunk.items()},
            "openai_over_ours": ratio(openai_s, ours),
            "ours_over_floor": ratio(ours, floor),
            "reads": len(reads),
        }
        rows.append(
            (
                label,
                len(reads),
                f"{per_chunk['ours']:.2f}",
                f"{per_chunk['openai']:.2f}",
                f"{per_chunk['floor']:.2f}",
                f"{ratio(openai_s, ours):.1f}",
                f"{ratio(ours, floor):.2f}",
            )
        )

    main = figures["1-4 KB reads"]
    targets = (
        Target("openai / ours (1-4 KB reads)", main["openai_over_ours"], 10.0, "min"),
        Target("ours / floor (1-4 KB reads)", main["ours_over_floor"], 1.2, "max"),
    )
    data_out: dict[str, Any] = {
        "chunks": chunks,
        "stream_bytes": len(data),
        "content_chars": len(reference),
        "repetitions": repetitions,
        "layouts": figures,
    }
    if not targets[1].met:
        data_out["profile_ours"] = profile_ours(layouts["1-4 KB reads"])
    return Section(
        name="decode",
        title=f"Decode throughput ({chunks:,} chunks, {len(data) / 1e6:.1f} MB, from memory)",
        columns=(
            "reads",
            "n reads",
            "ours µs/chunk",
            "openai µs/chunk",
            "floor µs/chunk",
            "openai/ours",
            "ours/floor",
        ),
        rows=tuple(rows),
        targets=targets,
        notes=(
            "CPU time (process_time), best of several runs; chunks = chat.completion.chunk "
            "events. The floor only parses JSON: it keeps no text, usage or state.",
        ),
        data=data_out,
    )
