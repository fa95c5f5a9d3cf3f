"""The ledger as data: typed DataFrame columns, and rows selected by session, time and source."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

import baseten_magic
from baseten_magic.core.errors import ParameterError
from baseten_magic.io.ledger import Ledger, LedgerRow

ROOT = Path(__file__).resolve().parents[2]


def row(**changes: object) -> LedgerRow:
    values: dict[str, object] = {
        "ts": "2026-11-25T12:00:00.000+00:00",
        "session": "s1",
        "cell": 3,
        "model": "zai-org/GLM-4.7",
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "cost_usd": Decimal("0.0013160"),
        "source": "magic",
    }
    values.update(changes)
    return LedgerRow(**values)  # type: ignore[arg-type]


@pytest.fixture
def ledger(ledger_path: Path) -> Ledger:
    found = Ledger(ledger_path)
    found.record(row())
    found.record(row(ts="2026-11-26T09:30:00.000+00:00", cell=None, source="panel"))
    found.record(row(ts="2026-11-27T00:00:00.000+00:00", session="s2", cell=1, source="api"))
    found.record(row(ts="2026-11-28T08:00:00.000+00:00", session="s2", cell=2, status="error"))
    return found


def test_the_frame_has_typed_columns(ledger: Ledger) -> None:
    frame = baseten_magic.ledger(as_frame=True)
    assert len(frame) == 4
    assert isinstance(frame["ts"].dtype, pd.DatetimeTZDtype)
    assert str(frame["ts"].dt.tz) == "UTC"
    assert frame["ts"].iloc[0] == pd.Timestamp("2026-11-25T12:00:00", tz="UTC")
    assert frame["cost_usd"].dtype == "float64"
    assert frame["cost_usd"].iloc[0] == pytest.approx(0.001316)
    for name in ("cell", "prompt_tokens", "completion_tokens", "reasoning_tokens"):
        assert frame[name].dtype == "Int64", name
    assert frame["cell"].isna().tolist() == [False, True, False, False]  # a panel call: NA
    assert frame["status"].dtype == "string"
    # describe() now treats cost as a number, not as a category.
    assert "mean" in frame.describe().index
    assert frame["cost_usd"].sum() == pytest.approx(4 * 0.001316)


def test_an_empty_ledger_gives_the_same_columns(ledger_path: Path) -> None:
    frame = baseten_magic.ledger(as_frame=True)
    assert frame.empty
    assert isinstance(frame["ts"].dtype, pd.DatetimeTZDtype)
    assert frame["cell"].dtype == "Int64"
    assert frame["cost_usd"].dtype == "float64"


def test_rows_by_session_since_and_source(ledger: Ledger) -> None:
    assert [r.session for r in baseten_magic.ledger(session="s2")] == ["s2", "s2"]
    since = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    assert [r.ts[:10] for r in baseten_magic.ledger(since=since)] == [
        "2026-11-26",
        "2026-11-27",
        "2026-11-28",
    ]
    assert len(baseten_magic.ledger(since="2026-11-27")) == 2  # an ISO date, read as UTC
    # Another zone is converted: 2026-11-27 02:00+03:00 is 2026-11-26 23:00 UTC.
    assert len(baseten_magic.ledger(since="2026-11-27T02:00:00+03:00")) == 2
    assert baseten_magic.ledger(since=timedelta(minutes=5)) == []
    assert [r.source for r in baseten_magic.ledger(source="panel")] == ["panel"]
    assert len(baseten_magic.ledger(source=["magic", "api"])) == 3
    frame = baseten_magic.ledger(as_frame=True, session="s2", source="magic")
    assert frame["cell"].tolist() == [2]
    with pytest.raises(ParameterError, match="source must be one of magic, panel, api"):
        baseten_magic.ledger(source="notebook")
    with pytest.raises(ParameterError, match="since must be a datetime"):
        baseten_magic.ledger(since="yesterday")


def test_current_outside_a_notebook_is_this_process(ledger_path: Path) -> None:
    import os

    ledger = Ledger(ledger_path)
    ledger.record(row(session=f"api-{os.getpid()}", source="api"))
    ledger.record(row(session="someone-else"))
    assert [r.session for r in baseten_magic.ledger(session="current")] == [f"api-{os.getpid()}"]


def test_without_pandas_the_error_names_the_extra(ledger_path: Path) -> None:
    code = (
        "import sys; sys.modules['pandas'] = None\n"
        "import baseten_magic\n"
        "try:\n"
        "    baseten_magic.ledger(as_frame=True)\n"
        "except baseten_magic.ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"BASETEN_MAGIC_LEDGER": str(ledger_path), "PATH": "/usr/bin:/bin"},
    )
    message = out.stdout.strip()
    assert message == (
        "ledger(as_frame=True) needs pandas, which is not installed; "
        "install it with pip install 'baseten_magic[batch]'"
    )
