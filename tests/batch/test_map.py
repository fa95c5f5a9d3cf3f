"""`map()` and `amap()` against a loopback server with account limits.

Bounds are generous (a shared, noisy machine); the benchmark reports the exact figures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

import baseten_magic
from baseten_magic.core.errors import BatchError, BatchInterrupted
from baseten_magic.io.ledger import Ledger
from baseten_magic.server import LocalServer
from baseten_magic.server.faults import Fault

ServerFactory = Callable[..., LocalServer]


def reviews(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"review": [f"review {i}: the soup was {'good' if i % 2 else 'cold'}" for i in range(n)]},
        index=pd.Index([f"r{n - i}" for i in range(n)], name="id"),
    )


def test_answers_keep_the_input_order_and_index(limited_server: ServerFactory) -> None:
    server = limited_server(latency_s=0.02)
    data = reviews(30)
    data["stars"] = range(30)
    out = baseten_magic.map("Say {review} with {stars} stars", data, progress=False, seed=1)
    assert list(out.index) == list(data.index)
    assert list(out.columns[:2]) == ["review", "stars"]
    assert {"answer", "error", "cost_usd"} <= set(out.columns)
    assert out["error"].isna().all()
    assert out["cost_usd"].dtype == "float64"
    # Each answer belongs to its row: the server's recorded request holding the row's text.
    prompts = {r.body["messages"][-1]["content"] for r in server.requests if r.body}
    assert {
        f"Say {t} with {s} stars" for t, s in zip(data.review, data.stars, strict=True)
    } == prompts
    summary = out.attrs["baseten"]
    assert summary["rows"] == 30 and summary["requests"] == 30 and summary["cached"] == 0
    assert summary["cost_usd"] == pytest.approx(out["cost_usd"].sum())


def test_a_rerun_comes_from_the_cache_and_sends_nothing(limited_server: ServerFactory) -> None:
    server = limited_server(latency_s=0.01)
    first = baseten_magic.map("Echo {value}", ["a", "b", "c"], progress=False)
    sent = server.stats().requests
    again = baseten_magic.map("Echo {value}", ["a", "b", "c"], progress=False)
    assert server.stats().requests == sent == 3
    assert list(again["answer"]) == list(first["answer"])
    assert again.attrs["baseten"]["cached"] == 3 and again["cost_usd"].sum() == 0
    other = baseten_magic.map("Echo {value}", ["a", "b", "c"], progress=False, temperature=0.5)
    assert other.attrs["baseten"]["requests"] == 3  # another parameter is another request


def test_every_request_sent_is_one_ledger_row(limited_server: ServerFactory) -> None:
    server = limited_server(latency_s=0.01)
    server.inject(Fault("status", status=503), times=2)
    server.inject(Fault("status", status=429, retry_after=0.05), times=2)
    out = baseten_magic.map("Echo {value}", [str(i) for i in range(8)], progress=False)
    assert out["error"].isna().all(), out["error"].tolist()  # retried, not failed
    rows = [r for r in Ledger().rows() if r.source == "batch"]
    assert len(rows) == server.stats().requests == 12
    assert sorted(r.status for r in rows).count("error") == 4
    assert out.attrs["baseten"]["rate_limited"] == 2
    assert out.attrs["baseten"]["requests"] == 12


def test_a_4xx_fails_its_row_at_once_and_the_rest_go_on(limited_server: ServerFactory) -> None:
    server = limited_server(latency_s=0.01)
    server.inject(Fault("status", status=400, message="bad row"), times=2)
    out = baseten_magic.map(
        "Echo {value}", [str(i) for i in range(6)], progress=False, concurrency=1
    )
    failed = out[out["error"].notna()]
    assert list(failed.index) == [0, 1]
    assert all("HTTP 400" in e and "\n" not in e for e in failed["error"])
    assert failed["answer"].isna().all()
    assert out["answer"].iloc[2:].notna().all()
    assert server.stats().requests == 6  # not retried


def test_on_error_raise_keeps_the_partial_frame(limited_server: ServerFactory) -> None:
    server = limited_server(latency_s=0.01)
    server.inject(Fault("status", status=400), times=1)
    with pytest.raises(BatchError) as caught:
        baseten_magic.map(
            "Echo {value}",
            [str(i) for i in range(10)],
            progress=False,
            concurrency=1,
            on_error="raise",
        )
    partial = caught.value.partial
    assert isinstance(partial, pd.DataFrame) and len(partial) == 10
    assert "HTTP 400" in partial["error"].iloc[0]
    assert server.stats().requests == 1


def test_a_rate_limit_is_found_without_being_told(limited_server: ServerFactory) -> None:
    # 300 rpm = 5 rows/s; at 0.1 s latency the client could send 10x that.
    server = limited_server(rpm=300, latency_s=0.1)
    started = time.perf_counter()
    out = baseten_magic.map("Echo {value}", [str(i) for i in range(40)], progress=False)
    wall = time.perf_counter() - started
    stats = server.stats()
    assert out["error"].isna().all()
    ideal = (40 - 5) / 5  # the server's one-second burst lets the first 5 through at once
    assert wall < ideal * 1.6 + 2, wall
    assert stats.rate_limited / stats.requests < 0.5, stats  # 40 rows: mostly the first probe


def test_rpm_given_stays_under_it(limited_server: ServerFactory) -> None:
    server = limited_server(rpm=300, latency_s=0.1)
    started = time.perf_counter()
    out = baseten_magic.map("Echo {value}", [str(i) for i in range(30)], progress=False, rpm=300)
    wall = time.perf_counter() - started
    assert out["error"].isna().all()
    assert server.stats().rate_limited <= 1
    assert 30 / 5 * 0.7 < wall < 30 / 5 * 1.5 + 1, wall


def test_a_concurrency_limit_is_found_and_kept(limited_server: ServerFactory) -> None:
    server = limited_server(max_concurrent=3, latency_s=0.1)
    started = time.perf_counter()
    out = baseten_magic.map("Echo {value}", [str(i) for i in range(45)], progress=False)
    wall = time.perf_counter() - started
    stats = server.stats()
    assert out["error"].isna().all()
    assert stats.max_in_flight == 3
    assert wall < 45 / 30 * 2 + 1.5, wall  # ideal 30 rows/s
    assert stats.rate_limited / stats.requests < 0.3, stats


def test_the_budget_is_never_passed(limited_server: ServerFactory) -> None:
    server = limited_server(latency_s=0.01)
    cap = Decimal("0.002")  # two rows' worst case (2,000 tokens at $0.50/M); ~20 real rows
    out = baseten_magic.map(
        "Echo {value}",
        [str(i) for i in range(40)],
        progress=False,
        budget_usd=cap,
        max_tokens=2000,
    )
    spent = Decimal(str(out.attrs["baseten"]["cost_usd"]))
    ledger_spent = sum((r.cost_usd for r in Ledger().rows()), Decimal(0))
    assert ledger_spent <= cap and spent <= cap
    unsent = out[out["answer"].isna()]
    assert 0 < len(unsent) < 40
    assert all("budget" in e for e in unsent["error"])
    assert server.stats().requests == 40 - len(unsent)


def test_dry_run_sends_nothing_and_prices_the_rows(limited_server: ServerFactory) -> None:
    server = limited_server()
    estimate = baseten_magic.map(
        "Echo {value}", ["a", "b"], dry_run=True, max_tokens=100, model="gpt-oss"
    )
    assert isinstance(estimate, baseten_magic.BatchEstimate)
    assert estimate.requests == 2 and estimate.cached == 0
    # gpt-oss-120b: $0.50 per million output tokens; 100 tokens per row at most.
    assert estimate.cost_high_usd - estimate.cost_low_usd == Decimal("0.0001")
    assert "nothing sent" in str(estimate)
    assert server.stats().requests == 0


@dataclasses.dataclass
class Verdict:
    sentiment: str
    stars: int
    sure: bool


def test_schema_fields_are_typed_columns(limited_server: ServerFactory) -> None:
    limited_server(latency_s=0.01)
    out = baseten_magic.map("Rate {review}", reviews(5), schema=Verdict, progress=False)
    assert out["error"].isna().all(), out["error"].tolist()
    assert str(out["stars"].dtype) == "Int64"
    assert str(out["sure"].dtype) == "boolean"
    assert str(out["sentiment"].dtype) == "string"
    loose = baseten_magic.map("Rate {review} as JSON", reviews(3), json=True, progress=False)
    assert loose["error"].isna().all()


def test_a_reply_that_does_not_parse_keeps_its_raw_answer(
    limited_server: ServerFactory,
) -> None:
    limited_server(latency_s=0.01)
    # A stop string cuts the JSON object before its closing brace.
    out = baseten_magic.map("Count {value}", ["x", "y"], json=True, progress=False, stop=["}"])
    assert out["answer"].str.startswith("{").all()
    assert out["error"].str.contains("did not parse").all()
    assert out["error"].str.contains("\n").sum() == 0


def test_missing_template_fields_fail_before_sending(limited_server: ServerFactory) -> None:
    server = limited_server()
    with pytest.raises(baseten_magic.ParameterError, match=r"\{sentiment\}.*columns: review"):
        baseten_magic.map("Is {sentiment}?", reviews(2), progress=False)
    out = baseten_magic.map("{{literal}} {value}", ["a"], progress=False)
    assert server.requests[-1].body["messages"][-1]["content"] == "{literal} a"
    assert out["error"].iloc[0] is None


def test_a_prompt_function_and_lists_of_dicts(limited_server: ServerFactory) -> None:
    limited_server(latency_s=0.01)

    def prompt(row: dict[str, object]) -> object:
        if row["n"] == 2:
            raise ValueError("no 2s")
        return [{"role": "user", "content": f"n is {row['n']}"}]

    out = baseten_magic.map(
        prompt, [{"n": 1}, {"n": 2}, {"n": 3}], system="Be brief", progress=False
    )
    assert out["error"].iloc[1].startswith("the prompt function raised ValueError: no 2s")
    assert out["answer"].iloc[[0, 2]].notna().all()


def test_amap_cancel_stops_at_once_and_keeps_what_is_done(
    limited_server: ServerFactory,
) -> None:
    server = limited_server(latency_s=0.3, max_concurrent=4)
    holder: dict[str, BaseException] = {}

    async def main() -> None:
        task = asyncio.ensure_future(
            baseten_magic.amap("Echo {value}", [str(i) for i in range(40)], concurrency=4)
        )
        await asyncio.sleep(0.8)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError as exc:
            holder["exc"] = exc

    asyncio.run(main())
    sent_at_cancel = server.stats().requests
    time.sleep(0.5)
    assert server.stats().requests == sent_at_cancel  # nothing sent afterwards
    partial = holder["exc"].partial  # type: ignore[attr-defined]
    assert len(partial) == 40
    done = partial["answer"].notna().sum()
    assert 4 <= done < 40
    rows = [r for r in Ledger().rows() if r.source == "batch"]
    # One row per attempt: each answered row once, each request cut by the cancel once as
    # `interrupted` (a request cancelled while connecting may never have reached the server).
    assert sum(r.status == "ok" for r in rows) == done
    interrupted = sum(r.status == "interrupted" for r in rows)
    assert len(rows) == done + interrupted
    assert sent_at_cancel <= len(rows) <= sent_at_cancel + 4
    errors = partial["error"].dropna()
    cut = errors.str.startswith("interrupted while its request was in flight").sum()
    assert cut == interrupted
    assert errors.str.startswith("not sent: the run was interrupted").sum() == 40 - len(rows)


def test_timeout_is_the_longest_wait_for_an_answer(
    limited_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from baseten_magic.core.retry import RetryPolicy
    from baseten_magic.engine.batch import scheduler

    monkeypatch.setattr(scheduler, "RETRY_POLICY", RetryPolicy(max_retries=1, initial_delay=0.01))
    server = limited_server(latency_s=2.0)
    started = time.perf_counter()
    out = baseten_magic.map("Echo {value}", ["a"], progress=False, timeout=0.3)
    assert time.perf_counter() - started < 1.9
    assert "got none" in out["error"].iloc[0] and "within 0.3 s" in out["error"].iloc[0]
    assert server.stats().requests == 2  # retried once, then the row failed


def test_keyboard_interrupt_in_map_keeps_the_rows_done(limited_server: ServerFactory) -> None:
    import _thread

    server = limited_server(latency_s=0.3, max_concurrent=4)
    timer = threading.Timer(0.8, _thread.interrupt_main)
    timer.start()
    with pytest.raises(BatchInterrupted) as caught:
        baseten_magic.map(
            "Echo {value}", [str(i) for i in range(40)], concurrency=4, progress=False
        )
    sent = server.stats().requests
    time.sleep(0.4)
    assert server.stats().requests == sent
    partial = caught.value.partial
    assert 4 <= partial["answer"].notna().sum() < 40
    rows = [r for r in Ledger().rows() if r.source == "batch"]
    done = int(partial["answer"].notna().sum())
    assert sum(r.status == "ok" for r in rows) == done
    assert len(rows) == done + sum(r.status == "interrupted" for r in rows)
    assert sent <= len(rows) <= sent + 4
    assert any(r.status == "interrupted" for r in rows)
    assert isinstance(caught.value, KeyboardInterrupt)


def test_progress_sink_gets_bounded_updates_and_a_summary(
    limited_server: ServerFactory,
) -> None:
    limited_server(latency_s=0.05)

    class Sink:
        def __init__(self) -> None:
            self.updates = 0
            self.summary = ""

        def update(self, progress: object) -> None:
            self.updates += 1

        def close(self, progress: object, summary: str) -> None:
            self.summary = summary

    sink = Sink()
    baseten_magic.map("Echo {value}", [str(i) for i in range(20)], progress=sink)
    assert sink.summary.startswith("baseten map: 20/20 rows")
    assert sink.updates < 40


def test_cache_file_is_owner_only(limited_server: ServerFactory, batch_env: Path) -> None:
    limited_server()
    baseten_magic.map("Echo {value}", ["a"], progress=False)
    assert (batch_env / "cache.sqlite3").stat().st_mode & 0o777 == 0o600
