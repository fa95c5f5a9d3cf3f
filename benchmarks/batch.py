"""Prompts over data against an account's rate limit: `map()` beside what users write instead.

Rule: every client maps the same rows over the same local server, run in its own process with
an account's limits (600 requests/min, 8 in flight, 0.5 s per request), so the server's work
never holds the clients' interpreter lock. Ideal throughput is Little's law: min(in-flight
limit / latency, rate limit) rows per second; each client is reported as achieved / ideal, with
the 429s it received as a share of its requests (counted at the server), the rows it lost or
failed, and its CPU seconds per row. The sequential loop is estimated from a sample of rows; the
cached re-run is `map()` again over rows it has answered, per 1,000 rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from benchmarks import Section, Target
from benchmarks.loopback import API_KEY, server_process

__all__ = ["run"]

RPM = 600
MAX_CONCURRENT = 8
LATENCY_S = 0.5
MODEL = "openai/gpt-oss-120b"
# Short answers: the benchmark is about scheduling, not streaming speed.
PARAMS: dict[str, Any] = {"max_tokens": 16, "reasoning_effort": "low"}


def limited_server() -> AbstractContextManager[str]:
    """The local server with the account's limits, in a child process; yields its base URL."""
    limits = ["--rpm", str(RPM), "--max-concurrent", str(MAX_CONCURRENT)]
    return server_process(options=[*limits, "--latency", str(LATENCY_S)])


def _stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as response:
        stats: dict[str, int] = json.loads(response.read())
    return stats


def _prompts(n: int, offset: int) -> list[str]:
    # A distinct text per row and per run, so no run is served by another's cache.
    return [
        f"Classify review {offset + i}: the soup was {'good' if i % 3 else 'cold'}."
        for i in range(n)
    ]


def _ideal() -> tuple[float, str]:
    by_concurrency = MAX_CONCURRENT / LATENCY_S
    by_rate = RPM / 60
    if by_rate <= by_concurrency:
        return by_rate, f"rate limit ({RPM}/min = {by_rate:g} rows/s)"
    return by_concurrency, f"concurrency ({MAX_CONCURRENT} / {LATENCY_S} s = {by_concurrency:g}/s)"


def _measure(url: str, rows: int, work: Callable[[], int]) -> dict[str, Any]:
    """Run `work` (returns the rows that came back with an answer) and measure it."""
    time.sleep(1.5)  # let the server's one-second bucket refill between clients
    before = _stats(url)
    cpu = time.process_time()
    start = time.perf_counter()
    answered = work()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    after = _stats(url)
    requests = after["requests"] - before["requests"]
    limited = after["rate_limited"] - before["rate_limited"]
    ideal, _ = _ideal()
    return {
        "rows": rows,
        "wall_s": wall,
        "achieved_rows_per_s": answered / wall if wall > 0 else 0.0,
        "achieved_over_ideal": (answered / wall) / ideal if wall > 0 else 0.0,
        "requests": requests,
        "rate_limited": limited,
        "share_429": limited / requests if requests else 0.0,
        "failed": rows - answered,
        "cpu_ms_per_row": 1000 * cpu / rows,
    }


def _ours(url: str, prompts: list[str], **options: Any) -> int:
    import baseten_magic

    out = baseten_magic.map("{value}", prompts, model=MODEL, progress=False, **options, **PARAMS)
    return int(out["answer"].notna().sum())


def _steady_share(since: str) -> float:
    """429s as a share of this run's requests after its first 10 % (from the ledger)."""
    from baseten_magic.io.ledger import Ledger

    rows = [r for r in Ledger().rows() if r.source == "batch" and r.ts >= since]
    steady = rows[len(rows) // 10 :]
    if not steady:
        return 0.0
    return sum(1 for r in steady if r.error and "HTTP 429" in r.error) / len(steady)


def _naive(url: str, prompts: list[str]) -> int:
    """asyncio.gather over AsyncOpenAI with a semaphore of 50 and the SDK's default retries."""
    from openai import AsyncOpenAI

    async def main() -> int:
        client = AsyncOpenAI(base_url=url, api_key=API_KEY)
        gate = asyncio.Semaphore(50)

        async def one(text: str) -> bool:
            async with gate:
                try:
                    await client.chat.completions.create(
                        model=MODEL, messages=[{"role": "user", "content": text}], **PARAMS
                    )
                except Exception:
                    return False
                return True

        try:
            done = await asyncio.gather(*(one(t) for t in prompts))
        finally:
            await client.close()
        return sum(done)

    return asyncio.run(main())


def _litellm(url: str, prompts: list[str]) -> int:
    """LiteLLM's batch_completion, the server as an OpenAI-compatible provider."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    answers = litellm.batch_completion(
        model=f"openai/{MODEL}",
        messages=[[{"role": "user", "content": t}] for t in prompts],
        api_base=url,
        api_key=API_KEY,
        **PARAMS,
    )
    return sum(1 for a in answers if not isinstance(a, Exception))


def _sequential_estimate(url: str, prompts: list[str], sample: int) -> dict[str, Any]:
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key=API_KEY)
    time.sleep(1.5)
    cpu = time.process_time()
    start = time.perf_counter()
    for text in prompts[:sample]:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": text}], **PARAMS
        )
    per_row = (time.perf_counter() - start) / sample
    cpu = (time.process_time() - cpu) / sample
    client.close()
    ideal, _ = _ideal()
    rows = len(prompts)
    return {
        "rows": rows,
        "wall_s": per_row * rows,
        "achieved_rows_per_s": 1 / per_row,
        "achieved_over_ideal": (1 / per_row) / ideal,
        "requests": sample,
        "rate_limited": 0,
        "share_429": 0.0,
        "failed": 0,
        "cpu_ms_per_row": 1000 * cpu,
        "estimated_from": sample,
    }


def _dask(url: str, client: Any, prompts: list[str], **options: Any) -> dict[str, Any]:
    import dask.dataframe as dd
    import pandas as pd

    import baseten_magic

    if True:  # one cluster for both dask runs (its start-up is not part of the figure)
        frame = dd.from_pandas(pd.DataFrame({"value": prompts}), npartitions=2)

        def work() -> int:
            out = baseten_magic.map(
                "{value}", frame, model=MODEL, progress=False, **options, **PARAMS
            ).compute()
            return int(out["answer"].notna().sum())

        worker_cpu = client.run(time.process_time)
        result = _measure(url, len(prompts), work)
        after = client.run(time.process_time)
        spent = sum(after[w] - worker_cpu[w] for w in after)
        result["cpu_ms_per_row"] = 1000 * spent / len(prompts)
    return result


def run(quick: bool) -> Section:
    """Map the same rows with each client over the rate-limited server; compare."""
    rows = 80 if quick else 1_000
    ideal, binds = _ideal()
    results: dict[str, dict[str, Any]] = {}
    steady: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, limited_server() as url:
        saved = {k: os.environ.get(k) for k in ("BASETEN_BASE_URL", "BASETEN_API_KEY")}
        saved |= {k: os.environ.get(k) for k in ("BASETEN_MAGIC_LEDGER", "BASETEN_MAGIC_CACHE")}
        os.environ.update(
            {
                "BASETEN_BASE_URL": url,
                "BASETEN_API_KEY": API_KEY,
                "BASETEN_MAGIC_LEDGER": str(Path(tmp) / "ledger.sqlite3"),
                "BASETEN_MAGIC_CACHE": str(Path(tmp) / "cache.sqlite3"),
            }
        )
        try:
            from baseten_magic.io.ledger import utc_now

            plans: list[tuple[str, Callable[[list[str]], int] | None]] = [
                ("baseten_magic, no limits given", lambda p: _ours(url, p)),
                ("baseten_magic, rpm=600 given", lambda p: _ours(url, p, rpm=RPM)),
                ("asyncio.gather + AsyncOpenAI, semaphore 50", lambda p: _naive(url, p)),
            ]
            if not quick:  # minutes even for a few rows: its retries back off for long
                plans.append(("litellm.batch_completion", lambda p: _litellm(url, p)))
            for number, (label, work) in enumerate(plans):
                # litellm on a sample: at its pace the whole set would take most of an hour.
                size = min(rows, 200) if label.startswith("litellm") else rows
                prompts = _prompts(size, number * 100_000)
                since = utc_now()
                assert work is not None
                results[label] = _measure(url, size, lambda w=work, p=prompts: w(p))
                if label.startswith("baseten_magic"):
                    steady[label] = _steady_share(since)
            results["sequential loop (estimated)"] = _sequential_estimate(
                url, _prompts(rows, 900_000), 5 if quick else 10
            )
            # The fully cached re-run: the first run's rows again.
            cached_rows = _prompts(rows, 0)
            start = time.perf_counter()
            _ours(url, cached_rows)
            cached_per_1000 = (time.perf_counter() - start) * 1000 / rows
            from distributed import Client, LocalCluster

            dask_rows = 40 if quick else 400
            with (
                LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                for label, options in (
                    ("baseten_magic on dask, 2 workers, no limits", {}),
                    ("baseten_magic on dask, 2 workers, rpm=600", {"rpm": RPM}),
                ):
                    prompts = _prompts(dask_rows, 500_000 + len(results) * 10_000)
                    results[label] = _dask(url, client, prompts, **options)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    table = tuple(
        (
            label,
            r["rows"],
            f"{r['wall_s']:.1f}",
            f"{r['achieved_rows_per_s']:.2f}",
            f"{r['achieved_over_ideal']:.2f}",
            f"{100 * r['share_429']:.1f}%",
            r["failed"],
            f"{r['cpu_ms_per_row']:.2f}",
        )
        for label, r in results.items()
    )
    no_limits = results["baseten_magic, no limits given"]
    with_rpm = results["baseten_magic, rpm=600 given"]
    lost = no_limits["failed"] + with_rpm["failed"]
    targets = (
        Target("achieved/ideal, no limits given", no_limits["achieved_over_ideal"], 0.9, "min"),
        Target("achieved/ideal, rpm given", with_rpm["achieved_over_ideal"], 0.95, "min"),
        Target(
            "429 share in steady state, no limits given",
            steady["baseten_magic, no limits given"],
            0.05,
            "max",
        ),
        Target("rows lost by baseten_magic", float(lost), 0.0, "max"),
    )
    notes = (
        f"server: {RPM} requests/min, {MAX_CONCURRENT} in flight, {LATENCY_S} s per request; "
        f"ideal {ideal:g} rows/s, bound by the {binds}",
        f"fully cached re-run: {cached_per_1000 * 1000:.0f} ms per 1,000 rows",
        "429 share in the table: all requests of the run, counted at the server; steady state "
        "(after the first 10 % of requests, from the ledger): "
        + ", ".join(f"{k}: {100 * v:.1f}%" for k, v in steady.items()),
        "dask rows: client CPU is the two workers' CPU per row; rpm is shared out (rpm / workers)",
    )
    return Section(
        name="batch",
        title=f"Prompts over data: {rows} rows against a rate-limited server",
        columns=(
            "client",
            "rows",
            "wall s",
            "rows/s",
            "achieved/ideal",
            "429s",
            "failed",
            "CPU ms/row",
        ),
        rows=table,
        targets=targets,
        notes=notes,
        data={"results": results, "cached_ms_per_1000": cached_per_1000 * 1000, "ideal": ideal},
    )
