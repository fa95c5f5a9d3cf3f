"""The cost ledger: round trip, permissions, WAL, schema version, redaction, concurrency."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from baseten_magic.core.errors import ConfigurationError
from baseten_magic.core.result import ChatResult, Usage
from baseten_magic.io.ledger import SCHEMA_VERSION, Ledger, LedgerRow, LedgerTotals

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ledger-secret-123456"


def make_row(**changes: object) -> LedgerRow:
    values: dict[str, object] = {
        "ts": "2026-11-25T12:00:00.000+00:00",
        "session": "s1",
        "cell": 3,
        "model": "zai-org/GLM-4.7",
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "reasoning_tokens": 200,
        "cached_tokens": 800,
        "cost_usd": Decimal("0.0013160"),
        "latency_s": 1.25,
        "ttft_s": 0.3,
        "status": "ok",
        "error": None,
        "request_id": "req-1",
        "pricing_mode": "per_token",
        "source": "magic",
    }
    values.update(changes)
    return LedgerRow(**values)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    row = make_row()
    ledger.record(row)
    ledger.record(
        make_row(cell=None, status="interrupted", latency_s=None, ttft_s=None, source="panel")
    )
    rows = ledger.rows()
    assert rows[0] == row
    assert rows[1].cell is None
    assert rows[1].status == "interrupted"
    assert isinstance(rows[0].cost_usd, Decimal)
    assert str(rows[0].cost_usd) == "0.0013160"


def test_row_access_styles() -> None:
    row = make_row()
    assert row["ts"] == row.ts
    assert row["cost_usd"] == Decimal("0.0013160")
    assert row.as_dict()["model"] == "zai-org/GLM-4.7"
    assert list(row.as_dict()) == list(row.keys())
    with pytest.raises(KeyError):
        row["nope"]
    with pytest.raises(AttributeError):
        row.model = "x"  # type: ignore[misc]


def test_row_defaults_and_bad_values() -> None:
    row = LedgerRow(model="m")
    assert row.ts.endswith("+00:00")
    assert row.status == "ok"
    with pytest.raises(ValueError, match="status"):
        LedgerRow(status="fine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source"):
        LedgerRow(source="cli")  # type: ignore[arg-type]


def test_row_from_result() -> None:
    result = ChatResult(
        content="hi",
        model="openai/gpt-oss-120b",
        usage=Usage(prompt_tokens=5, completion_tokens=7, reasoning_tokens=2, cached_tokens=1),
        cost=Decimal("0.01"),
        status="error",
        error="boom",
        latency_s=2.0,
        ttft_s=0.5,
        request_id="r",
    )
    row = LedgerRow.from_result(result, session="s", cell=1, pricing_mode="per_call", source="api")
    assert (row.prompt_tokens, row.completion_tokens, row.reasoning_tokens, row.cached_tokens) == (
        5,
        7,
        2,
        1,
    )
    assert row.cost_usd == Decimal("0.01")
    assert row.status == "error"
    assert row.error == "boom"
    assert row.pricing_mode == "per_call"


def test_rows_newest_last_with_session_and_limit(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    for i in range(6):
        ledger.record(make_row(session="a" if i % 2 else "b", cell=i))
    assert [r.cell for r in ledger.rows()] == [0, 1, 2, 3, 4, 5]
    assert [r.cell for r in ledger.rows(session="a")] == [1, 3, 5]
    assert [r.cell for r in ledger.rows(limit=2)] == [4, 5]
    assert [r.cell for r in ledger.rows(session="b", limit=1)] == [4]
    assert ledger.rows(session="zzz") == []


def test_totals_are_exact(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    assert ledger.totals() == LedgerTotals()
    for _ in range(10):
        ledger.record(make_row(cost_usd=Decimal("0.1")))
    ledger.record(make_row(session="other", cost_usd=Decimal("1")))
    totals = ledger.totals(session="s1")
    assert totals.calls == 10
    assert totals.cost_usd == Decimal("1.0")  # floats would give 0.9999999999999999
    assert totals.prompt_tokens == 10_000
    assert totals["completion_tokens"] == 5000
    assert ledger.totals().calls == 11
    assert ledger.totals().cost_usd == Decimal("2.0")


def test_file_is_owner_only_and_dirs_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "ledger.sqlite3"
    old = os.umask(0o022)
    try:
        Ledger(path).record(make_row())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_wal_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    ledger = Ledger(path)
    assert ledger.schema_version == SCHEMA_VERSION == 2
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = [r[1] for r in conn.execute("PRAGMA table_info(calls)")]
    finally:
        conn.close()
    assert columns[0] == "id"
    assert "cost_usd" in columns
    assert "pricing_mode" in columns
    # Opening again is harmless and keeps the data.
    ledger.record(make_row())
    assert len(Ledger(path).rows()) == 1


def test_default_path_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(tmp_path / "env.sqlite3"))
    ledger = Ledger()
    assert ledger.path == tmp_path / "env.sqlite3"
    assert ledger.path.exists()


def test_error_text_is_redacted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BASETEN_API_KEY", KEY)
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.record(
        make_row(status="error", error=f"401 for key {KEY} (Authorization: Bearer {KEY})")
    )
    stored = ledger.rows()[0].error
    assert stored == "401 for key *** (Authorization: Bearer ***)"
    for file in tmp_path.iterdir():  # the main file and its WAL
        assert KEY.encode() not in file.read_bytes()


def test_unwritable_location_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigurationError, match="BASETEN_MAGIC_LEDGER"):
        Ledger(blocker / "ledger.sqlite3")


def test_threads_share_one_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")

    def write(n: int) -> None:
        for i in range(25):
            ledger.record(make_row(session=f"t{n}", cell=i))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.totals().calls == 100


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from decimal import Decimal
    from baseten_magic.io.ledger import Ledger, LedgerRow

    path, name, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    ledger = Ledger(path)
    for i in range(50):
        ledger.record(LedgerRow(session=name, cell=i, model="m", cost_usd=Decimal("0.01")))
    """
)


def test_four_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    # A fresh file: the processes also race to create the schema and switch to WAL.
    path = tmp_path / "shared.sqlite3"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"p{n}", str(go)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    ledger = Ledger(path)
    rows = ledger.rows()
    assert len(rows) == 200
    for n in range(4):
        assert [r.cell for r in rows if r.session == f"p{n}"] == list(range(50))
    assert ledger.totals().cost_usd == Decimal("2.00")


def test_a_file_that_is_not_a_database_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"not a database, just text that fills a page " * 100)
    with pytest.raises(ConfigurationError, match=r"not a database.*BASETEN_MAGIC_LEDGER"):
        Ledger(path)


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["deleted", "replaced by an empty file"])
def test_a_ledger_deleted_or_replaced_mid_session_is_recreated(how: str, tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    ledger.record(LedgerRow(session="s", model="m1"))
    _remove(path)
    if how != "deleted":
        path.write_bytes(b"")
        path.chmod(0o644)
    ledger.record(LedgerRow(session="s", model="m2"))
    ledger.record(LedgerRow(session="s", model="m3"))
    assert [r.model for r in Ledger(path).rows()] == ["m2", "m3"]
    assert ledger.schema_version == SCHEMA_VERSION
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_existing_ledger_with_a_wider_mode_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    path.chmod(0o644)
    assert stat.S_IMODE(Ledger(path).path.stat().st_mode) == 0o600
    path.chmod(0o666)
    ledger.record(LedgerRow(session="s", model="m"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
