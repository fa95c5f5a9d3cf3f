"""`map()` beside the other calls: the notebook session's budget (or the process's) caps it too,
its ledger rows belong to the notebook's session, and `route="xpay"` runs it on the reseller's
MCP tool (the local stand-in: nothing here was checked against the reseller itself)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

import baseten_magic
from baseten_magic.core.budget import process_budget
from baseten_magic.io.ledger import Ledger
from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.server import LocalServer

ServerFactory = Callable[..., LocalServer]
XPAY_KEY = "xpay-batch-key-7f3a9c1e5d"


@pytest.fixture
def shell(batch_env: Path) -> Iterator[Any]:
    ipython: Any = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "baseten_magic")
    yield ipython
    ipython.run_line_magic("unload_ext", "baseten_magic")
    ipython.config.pop("BasetenMagics", None)


def magics_of(shell: Any) -> BasetenMagics:
    found = shell.magics_manager.registry["BasetenMagics"]
    assert isinstance(found, BasetenMagics)
    return found


def test_map_in_a_notebook_stops_at_the_session_budget(
    limited_server: ServerFactory, shell: Any
) -> None:
    server = limited_server(latency_s=0.01)
    magics = magics_of(shell)
    cap = Decimal("0.002")  # two rows' worst case (2,000 tokens at $0.50/M); ~20 real rows
    magics.budget_usd = float(cap)
    out = baseten_magic.map(
        "Echo {value}", [str(i) for i in range(40)], progress=False, max_tokens=2000
    )
    budget = magics.session.budget
    rows = [r for r in Ledger().rows() if r.source == "batch"]
    spent = sum((r.cost_usd for r in rows), Decimal(0))
    assert spent <= cap and budget.spent == spent and budget.held == 0
    unsent = out[out["answer"].isna()]
    assert 0 < len(unsent) < 40
    assert all(e.startswith("not sent: budget reached") for e in unsent["error"])
    assert all("BasetenMagics.budget_usd" in e for e in unsent["error"])
    assert server.stats().requests == len(rows) == 40 - len(unsent)
    # The rows are the notebook session's: ledger(session="current") sees them.
    assert {r.session for r in rows} == {magics.session.id}
    assert len(baseten_magic.ledger(session="current", source="batch")) == len(rows)


def test_the_session_budget_counts_a_map_without_a_cap(
    limited_server: ServerFactory, shell: Any
) -> None:
    limited_server(latency_s=0.01)
    budget = magics_of(shell).session.budget
    before = budget.spent
    out = baseten_magic.map("Echo {value}", ["a", "b", "c"], progress=False)
    assert out["error"].isna().all()
    logged = sum((r.cost_usd for r in Ledger().rows() if r.source == "batch"), Decimal(0))
    assert budget.spent - before == logged > 0
    assert float(logged) == pytest.approx(out["cost_usd"].sum())


def test_map_outside_a_notebook_spends_from_the_process_budget(
    limited_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = limited_server(latency_s=0.01)
    budget = process_budget()
    room = Decimal("0.002")  # the process may have spent already (earlier tests' calls)
    monkeypatch.setenv("BASETEN_MAGIC_BUDGET", str(budget.spent + room))
    out = baseten_magic.map(
        "Echo {value}", [f"p{i}" for i in range(40)], progress=False, max_tokens=2000
    )
    unsent = out[out["answer"].isna()]
    assert 0 < len(unsent) < 40
    assert all("BASETEN_MAGIC_BUDGET" in e for e in unsent["error"])
    assert budget.cap is not None and budget.spent <= budget.cap
    assert server.stats().requests == 40 - len(unsent)


def test_the_run_budget_and_the_session_budget_both_hold(
    limited_server: ServerFactory, shell: Any
) -> None:
    limited_server(latency_s=0.01)
    magics_of(shell).budget_usd = 1.0  # roomy: the run's own cap binds
    out = baseten_magic.map(
        "Echo {value}",
        [f"q{i}" for i in range(30)],
        progress=False,
        max_tokens=2000,
        budget_usd=Decimal("0.002"),
    )
    unsent = out[out["answer"].isna()]
    assert 0 < len(unsent) < 30
    assert all("(budget_usd)" in e for e in unsent["error"])
    assert magics_of(shell).session.budget.spent <= Decimal("0.002")


# -- the xpay route ---------------------------------------------------------------------------


@pytest.fixture
def mcp_server(batch_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    pytest.importorskip("mcp")
    from baseten_magic.server.xpay import LocalMCPServer

    with LocalMCPServer(key=XPAY_KEY) as running:
        monkeypatch.setenv("XPAY_MCP_URL", running.url)
        monkeypatch.setenv("XPAY_KEY", XPAY_KEY)
        yield running


def test_a_small_map_on_the_xpay_route(mcp_server: Any) -> None:
    data = pd.DataFrame(
        {"text": [f"row {i} over MCP" for i in range(5)]},
        index=pd.Index([f"k{i}" for i in (4, 2, 0, 3, 1)], name="key"),
    )
    out = baseten_magic.map("/echo {text}", data, route="xpay", progress=False)
    assert list(out.index) == list(data.index)
    assert list(out["answer"]) == list(data["text"])  # answers in order
    assert out["error"].isna().all()
    assert out["cost_usd"].tolist() == [0.01] * 5
    assert out.attrs["baseten"]["requests"] == 5
    assert len(mcp_server.arguments) == 5
    rows = [r for r in Ledger().rows() if r.source == "batch"]
    assert len(rows) == 5
    assert {(r.route, r.pricing_mode, r.cost_usd) for r in rows} == {
        ("xpay", "per_call", Decimal("0.01"))
    }
    # The key lives in the URL's query only where a request leaves: never in what is kept.
    assert XPAY_KEY not in out.to_csv()
    assert all(XPAY_KEY not in repr(r.as_dict()) for r in rows)
    # A re-run comes from the cache, scoped to the MCP endpoint: nothing is sent.
    again = baseten_magic.map("/echo {text}", data, route="xpay", progress=False)
    assert again.attrs["baseten"]["cached"] == 5 and len(mcp_server.arguments) == 5
    estimate = baseten_magic.map("/echo {text}", data, route="xpay", dry_run=True, cache=False)
    assert estimate.cost_high_usd == Decimal("0.05")  # $0.01 a call, whatever the tokens


def test_the_scheduler_retries_the_xpay_routes_errors(mcp_server: Any) -> None:
    from baseten_magic.server.faults import Fault

    mcp_server.inject(Fault("status", status=429), times=2)  # the reseller's rate limit
    mcp_server.inject_rpc_error(-32603, "upstream hiccup")  # an internal error: retried
    out = baseten_magic.map(
        "/echo {value}", [f"v{i}" for i in range(4)], route="xpay", progress=False, concurrency=1
    )
    assert out["error"].isna().all(), out["error"].tolist()
    assert list(out["answer"]) == ["v0", "v1", "v2", "v3"]
    summary = out.attrs["baseten"]
    assert summary["rate_limited"] == 2 and summary["requests"] == 7
    rows = [r for r in Ledger().rows() if r.source == "batch"]
    # One row per attempt; only the answered ones are charged.
    assert len(rows) == 7 == len(mcp_server.arguments)
    assert sum((r.cost_usd for r in rows), Decimal(0)) == Decimal("0.04")
    mcp_server.inject_rpc_error(-32602, "arguments rejected")  # invalid params: not retried
    bad = baseten_magic.map("/echo {value}", ["w"], route="xpay", progress=False)
    assert bad["error"].iloc[0].startswith("xpay rejected the call (JSON-RPC -32602)")
    assert bad.attrs["baseten"]["requests"] == 1
