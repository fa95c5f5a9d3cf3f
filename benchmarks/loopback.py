"""End to end on loopback: time to first token and total time for a 5,000-token answer.

Rule: the three clients fetch the same answer from the same server, in alternating order, and
each figure is the median of several repetitions, reported as a ratio to a raw `httpx` loop
(`client.stream` + `iter_lines` + `json.loads`). The server is the package's local server at
full speed (`--tps` unset, i.e. `LocalServer(tokens_per_second=None)`) run in its own process,
so its work never holds the clients' interpreter lock; client CPU time is measured too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from baseten_magic.engine.call import prepare_request
from baseten_magic.io.client import Client
from benchmarks import Section, median, ratio

__all__ = ["Timing", "run", "server_process"]

ANSWER_TOKENS = 5_000
MODEL = "kimi-k2"  # no reasoning: the first token is the first content token
API_KEY = "benchmark-key"


@dataclass(frozen=True)
class Timing:
    """One request: seconds to the first content token, to the end, and client CPU seconds."""

    ttft_s: float
    total_s: float
    cpu_s: float
    content: str


@contextmanager
def server_process(
    tokens_per_second: float | None = None, options: Sequence[str] = ()
) -> Iterator[str]:
    """Run the local server in a child process (with any further CLI `options`); yield its base
    URL; stop it on every path."""
    command = [sys.executable, "-m", "baseten_magic.server", "--port", "0", "--quiet"]
    command += ["--print-url-only", "--api-key", API_KEY, *options]
    if tokens_per_second is not None:
        command += ["--tps", str(tokens_per_second)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"expected the local server's URL on its stdout, got {url!r}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _measure(stream: Callable[[], Iterator[str]]) -> Timing:
    """Time one request: `stream()` yields content pieces as they arrive."""
    cpu0 = time.process_time()
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    for piece in stream():
        if first is None:
            first = time.perf_counter()
        parts.append(piece)
    end = time.perf_counter()
    cpu = time.process_time() - cpu0
    return Timing((first or end) - start, end - start, cpu, "".join(parts))


def run(quick: bool) -> Section:
    """Fetch the same answer with this client, the openai package and raw httpx; compare."""
    from openai import OpenAI

    repetitions = 3 if quick else 9
    body = prepare_request(f"/words {ANSWER_TOKENS}", model=MODEL).body
    with server_process() as url:
        ours_client = Client(base_url=url, api_key=API_KEY)
        openai_client = OpenAI(base_url=url, api_key=API_KEY, max_retries=0)
        http = httpx.Client(timeout=120.0)

        def ours() -> Iterator[str]:
            for delta in ours_client.stream(body):
                if delta.content:
                    yield delta.content

        def openai_stream() -> Iterator[str]:
            response: Any = openai_client.chat.completions.create(
                model=body["model"],
                messages=body["messages"],
                stream=True,
                stream_options={"include_usage": True},
            )
            for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content

        def raw_httpx() -> Iterator[str]:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            target = f"{url.rstrip('/')}/chat/completions"
            with http.stream("POST", target, json=body, headers=headers) as response:
                for line in response.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[6:]
                    if data == "[DONE]":
                        break
                    choices = json.loads(data)["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        yield choices[0]["delta"]["content"]

        runners: dict[str, Callable[[], Iterator[str]]] = {
            "baseten_magic": ours,
            "openai": openai_stream,
            "raw httpx": raw_httpx,
        }
        timings: dict[str, list[Timing]] = {name: [] for name in runners}
        try:
            for stream in runners.values():
                _measure(stream)  # warm up: imports, connection, caches
            names = list(runners)
            for repetition in range(repetitions):
                # Rotate the order so no client always runs right after another.
                shift = repetition % len(names)
                for name in names[shift:] + names[:shift]:
                    timings[name].append(_measure(runners[name]))
        finally:
            ours_client.close()
            openai_client.close()
            http.close()

    contents = {timing.content for series in timings.values() for timing in series}
    if len(contents) != 1:
        raise AssertionError("expected all three clients to receive the same answer")
    med = {
        name: {
            "ttft_s": median([t.ttft_s for t in series]),
            "total_s": median([t.total_s for t in series]),
            "cpu_s": median([t.cpu_s for t in series]),
        }
        for name, series in timings.items()
    }
    base = med["raw httpx"]
    rows = []
    for name, figures in med.items():
        figures["ttft_vs_httpx"] = ratio(figures["ttft_s"], base["ttft_s"])
        figures["total_vs_httpx"] = ratio(figures["total_s"], base["total_s"])
        figures["cpu_vs_httpx"] = ratio(figures["cpu_s"], base["cpu_s"])
        rows.append(
            (
                name,
                f"{1e3 * figures['ttft_s']:.2f}",
                f"{figures['ttft_vs_httpx']:.2f}",
                f"{1e3 * figures['total_s']:.0f}",
                f"{figures['total_vs_httpx']:.2f}",
                f"{1e3 * figures['cpu_s']:.0f}",
                f"{figures['cpu_vs_httpx']:.2f}",
            )
        )
    return Section(
        name="loopback",
        title=f"End to end on loopback ({ANSWER_TOKENS:,}-token answer, server at full speed)",
        columns=(
            "client",
            "TTFT ms",
            "TTFT / httpx",
            "total ms",
            "total / httpx",
            "client CPU ms",
            "CPU / httpx",
        ),
        rows=tuple(rows),
        notes=(
            f"Medians of {repetitions} alternating repetitions after one warm-up each; the "
            "server runs in its own process. Total time is bounded by the server, which "
            "shares the machine's cores with the client.",
        ),
        data={"repetitions": repetitions, "clients": med, "answer_chars": len(contents.pop())},
    )
