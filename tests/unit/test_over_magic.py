"""`%%baseten --over NAME` in a real InteractiveShell against the local server on loopback: the
cell body as a template over a DataFrame, the usual options passed through, one-line refusals
before anything is sent, schema columns, a dry run, and the session's ledger and budget."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils import capture as _capture

from baseten_magic.engine.batch.runner import BatchEstimate
from baseten_magic.io.ledger import Ledger
from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.server import LocalServer

capture_output: Callable[..., Any] = _capture.capture_output

NAMES = ("_baseten", "out", "df", "reviews", "Verdict", "number")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def shell(
    server: LocalServer, ledger_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    monkeypatch.setenv("BASETEN_BASE_URL", server.url)
    monkeypatch.setenv("BASETEN_API_KEY", server.api_key)
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(ledger_file))
    monkeypatch.setenv("BASETEN_MAGIC_CACHE", str(tmp_path / "cache.sqlite3"))
    for name in ("BASETEN_MAGIC_MODEL", "BASETEN_MAGIC_PRICING", "BASETEN_MAGIC_BUDGET"):
        monkeypatch.delenv(name, raising=False)
    ipython: Any = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "baseten_magic")
    ipython.user_ns["reviews"] = pd.DataFrame(
        {"review": ["rich ramen", "cold fries", "fine soup"], "stars": [5, 1, 3]},
        index=pd.Index(["r9", "r2", "r5"], name="id"),
    )
    yield ipython
    ipython.run_line_magic("unload_ext", "baseten_magic")
    ipython.config.pop("BasetenMagics", None)
    for name in NAMES:
        ipython.user_ns.pop(name, None)


def magics_of(shell: Any) -> BasetenMagics:
    found = shell.magics_manager.registry["BasetenMagics"]
    assert isinstance(found, BasetenMagics)
    return found


def bodies(server: LocalServer, since: int) -> list[dict[str, Any]]:
    return [r.body for r in server.requests[since:] if r.body is not None]


def refusal(shell: Any, line: str, cell: str) -> str:
    with pytest.raises(UsageError) as caught:
        shell.run_cell_magic("baseten", line, cell)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_answers_are_aligned_to_the_frame_and_the_options_pass_through(
    shell: Any, server: LocalServer, ledger_file: Path
) -> None:
    before = len(server.requests)
    line = (
        "%%baseten --over reviews -o out -m glm --system 'Be terse.' --temperature 0.2 "
        "--top-p 0.9 --max-tokens 50 --param seed=7 --no-thinking"
    )
    with capture_output() as captured:
        result = shell.run_cell(f"{line}\n/echo {{review}} got {{stars}} stars {{{{ok}}}}")
    assert result.success, result.error_in_exec
    out = shell.user_ns["out"]
    assert shell.user_ns["_baseten"] is out
    assert list(out.index) == ["r9", "r2", "r5"]
    assert list(out["answer"]) == [
        "rich ramen got 5 stars {ok}",
        "cold fries got 1 stars {ok}",
        "fine soup got 3 stars {ok}",
    ]
    assert out["error"].isna().all()
    sent = bodies(server, before)
    assert len(sent) == 3
    for body in sent:
        assert "glm" in body["model"].lower()
        assert body["messages"][0] == {"role": "system", "content": "Be terse."}
        assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (
            0.2,
            0.9,
            50,
            7,
        )
        assert not body.get("stream")
        assert body["chat_template_args"] == {"enable_thinking": False}
    # The summary line stays, then the frame's first rows in its own HTML.
    plain = [str(o.data.get("text/plain", "")) for o in captured.outputs]
    assert any(text.startswith("baseten map: 3/3 rows, 3 requests") for text in plain)
    assert any("<table" in str(o.data.get("text/html", "")) for o in captured.outputs)
    # Ledger rows from the batch engine: source batch, this cell's number, the session's id.
    rows = Ledger(ledger_file).rows()
    assert len(rows) == 3
    session = magics_of(shell).session
    assert {(r.source, r.session) for r in rows} == {("batch", session.id)}
    # The cell number is the one a single cell logs (`In [n]`; the kernel test checks n).
    assert len({r.cell for r in rows}) == 1 and isinstance(rows[0].cell, int)
    # ... and the session remembers them: %baseten cost shows them.
    assert len(session.rows) == 3
    assert session.cost() == (3, sum((r.cost_usd for r in rows), Decimal(0)))


def test_a_missing_or_wrong_name_is_one_line_before_anything_is_sent(
    shell: Any, server: LocalServer
) -> None:
    before = len(server.requests)
    message = refusal(shell, "--over reveiws", "Rate {review}")
    assert "'reveiws', which is not defined" in message and "did you mean 'reviews'?" in message
    shell.user_ns["number"] = 3
    message = refusal(shell, "--over number", "Rate {review}")
    assert "--over expects a pandas DataFrame, Series or list, got number as int" in message
    message = refusal(shell, "--over reviews", "Rate {sentiment}")
    assert "{sentiment}" in message and "columns: review, stars" in message
    assert len(server.requests) == before


def test_options_that_do_not_fit_a_batch_are_refused(shell: Any, server: LocalServer) -> None:
    before = len(server.requests)
    assert "-i cannot be used with --over" in refusal(shell, "--over reviews -i", "{review}")
    assert "--tools cannot be used with --over" in refusal(
        shell, "--over reviews --tools print", "{review}"
    )
    assert "thinking cannot be switched" in refusal(
        shell, "--over reviews -m kimi-thinking --no-thinking", "{review}"
    )
    assert "--rpm applies only to a batch cell" in refusal(shell, "--rpm 60", "hi")
    assert "--dry-run applies only to a batch cell" in refusal(shell, "--dry-run", "hi")
    assert "--concurrency expects a whole number above 0" in refusal(
        shell, "--over reviews --concurrency 0", "{review}"
    )
    assert "--budget expects dollars" in refusal(shell, "--over reviews --budget lots", "{review}")
    assert len(server.requests) == before


@dataclasses.dataclass
class Verdict:
    sentiment: str
    stars: int
    sure: bool


def test_schema_fields_are_typed_columns(shell: Any) -> None:
    shell.user_ns["Verdict"] = Verdict
    with capture_output():
        shell.run_cell_magic("baseten", "--over reviews --schema Verdict -o out", "Rate {review}")
    out = shell.user_ns["out"]
    assert out["error"].isna().all(), out["error"].tolist()
    # The input's own `stars` column is kept; the parsed field beside it gets a prefix.
    assert list(out.columns[:2]) == ["review", "stars"]
    assert str(out["parsed_stars"].dtype) == "Int64"
    assert str(out["sure"].dtype) == "boolean"
    assert str(out["sentiment"].dtype) == "string"


def test_a_series_and_a_list_work_too(shell: Any) -> None:
    shell.user_ns["df"] = ["alpha", "beta"]
    with capture_output():
        shell.run_cell_magic("baseten", "--over df --json -o out", "Count {value}")
    out = shell.user_ns["out"]
    assert len(out) == 2 and out["error"].isna().all()
    shell.user_ns["df"] = pd.Series(["x", "y", "z"], name="word")
    with capture_output():
        shell.run_cell_magic("baseten", "--over df -o out", "/echo {word}")
    assert list(shell.user_ns["out"]["answer"]) == ["x", "y", "z"]


def test_dry_run_sends_nothing_and_a_rerun_comes_from_the_cache(
    shell: Any, server: LocalServer
) -> None:
    before = len(server.requests)
    with capture_output() as captured:
        shell.run_cell_magic("baseten", "--over reviews --dry-run --max-tokens 100", "{review}")
    estimate = shell.user_ns["_baseten"]
    assert isinstance(estimate, BatchEstimate) and estimate.requests == 3
    assert any("nothing sent" in str(o.data.get("text/plain", "")) for o in captured.outputs)
    assert len(server.requests) == before
    with capture_output():
        shell.run_cell_magic("baseten", "--over reviews -o out", "/echo {review}")
    assert len(server.requests) == before + 3
    with capture_output():
        shell.run_cell_magic("baseten", "--over reviews -o out", "/echo {review}")
    assert len(server.requests) == before + 3  # all cached
    assert shell.user_ns["out"].attrs["baseten"]["cached"] == 3
    with capture_output():
        shell.run_cell_magic("baseten", "--over reviews --no-cache -o out", "/echo {review}")
    assert len(server.requests) == before + 6


def test_the_session_budget_caps_a_batch_cell(shell: Any, server: LocalServer) -> None:
    shell.user_ns["df"] = [f"item {i}" for i in range(30)]
    magics_of(shell).budget_usd = 0.002  # two rows' worst case at 2,000 tokens
    before = len(server.requests)
    with capture_output():
        shell.run_cell_magic("baseten", "--over df -o out --max-tokens 2000", "Echo {value}")
    out = shell.user_ns["out"]
    unsent = out[out["answer"].isna()]
    assert 0 < len(unsent) < 30
    assert all("budget reached" in e for e in unsent["error"])
    session = magics_of(shell).session
    assert session.budget.spent <= Decimal("0.002")
    assert len(server.requests) - before == 30 - len(unsent) == len(session.rows)


def test_a_batch_cell_on_the_xpay_route(
    shell: Any, ledger_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mcp")
    from baseten_magic.server.xpay import LocalMCPServer

    key = "xpay-over-cell-key-93b1f0c4"
    with LocalMCPServer(key=key) as mcp_server:
        monkeypatch.setenv("XPAY_MCP_URL", mcp_server.url)
        monkeypatch.setenv("XPAY_KEY", key)
        with capture_output() as captured:
            shell.run_cell_magic("baseten", "--over reviews --route xpay -o out", "/echo {review}")
        assert len(mcp_server.arguments) == 3
    out = shell.user_ns["out"]
    assert list(out["answer"]) == ["rich ramen", "cold fries", "fine soup"]
    assert out["cost_usd"].tolist() == [0.01] * 3
    rows = Ledger(ledger_file).rows()
    assert {(r.route, r.cost_usd, r.source) for r in rows} == {("xpay", Decimal("0.01"), "batch")}
    shown = [str(v) for o in captured.outputs for v in o.data.values()]
    assert any("$0.03" in text for text in shown)  # the summary line's spend
    assert all(key not in text for text in shown) and key not in out.to_csv()
