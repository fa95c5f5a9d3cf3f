"""The cost ledger: one SQLite row per attempted call, shared safely by kernels and threads.

Rule: one connection per operation and short `BEGIN IMMEDIATE` transactions, in WAL mode with a
busy timeout and a retry on "database is locked", so several kernels can log into one file at
once without losing rows. The file is created owner-only (0600) before SQLite opens it, and an
existing file with a wider mode is tightened to 0600. Before every write the file's identity
(device, inode) is checked: a ledger deleted or replaced while a session runs is re-created with
its schema and mode (SQLite alone would make an empty, schema-less file with the umask's mode and
lose every later row). The schema is versioned with `PRAGMA user_version` and a registry of
migrations, applied in order. Error text is redacted before it is stored: the ledger never holds
a secret. Each row names its route
(`baseten` or `xpay`); rows written before routes existed read as `baseten`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from baseten_magic.core import settings
from baseten_magic.core.errors import ConfigurationError
from baseten_magic.core.result import SOURCES, STATUSES, ChatResult, Source, Status

ROUTES: tuple[str, ...] = ("baseten", "xpay")

BUSY_TIMEOUT_MS = 10_000
_LOCK_RETRIES = 8
_T = TypeVar("_T")


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class LedgerRow:
    """One call as logged: when, where, which model, tokens, cost, timing and outcome."""

    ts: str = field(default_factory=utc_now)
    session: str = ""
    cell: int | None = None
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_s: float | None = None
    ttft_s: float | None = None
    status: Status = "ok"
    error: str | None = None
    request_id: str | None = None
    pricing_mode: str = "per_token"
    source: Source = "api"
    route: str = "baseten"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(
                f"ledger status must be one of {', '.join(STATUSES)}, got {self.status!r}; "
                "use ok, error or interrupted"
            )
        if self.source not in SOURCES:
            raise ValueError(
                f"ledger source must be one of {', '.join(SOURCES)}, got {self.source!r}; "
                "use magic, panel, api or batch"
            )
        if self.route not in ROUTES:
            raise ValueError(
                f"ledger route must be one of {', '.join(ROUTES)}, got {self.route!r}; "
                "use baseten or xpay"
            )

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELD_NAMES:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        """The column names, in order."""
        return _FIELD_NAMES

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict (cost stays a Decimal)."""
        return asdict(self)

    @classmethod
    def from_result(
        cls,
        result: ChatResult,
        *,
        session: str,
        cell: int | None = None,
        pricing_mode: str = "per_token",
        source: Source = "api",
        route: str = "baseten",
    ) -> LedgerRow:
        """The row describing one finished call."""
        usage = result.usage
        return cls(
            session=session,
            cell=cell,
            model=result.model,
            prompt_tokens=0 if usage is None else usage.prompt_tokens,
            completion_tokens=0 if usage is None else usage.completion_tokens,
            reasoning_tokens=0 if usage is None else usage.reasoning_tokens,
            cached_tokens=0 if usage is None else usage.cached_tokens,
            cost_usd=result.cost,
            latency_s=result.latency_s,
            ttft_s=result.ttft_s,
            status=result.status,
            error=result.error,
            request_id=result.request_id,
            pricing_mode=pricing_mode,
            source=source,
            route=route,
        )


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))
_COLUMNS = ", ".join(_FIELD_NAMES)
_INSERT = f"INSERT INTO calls ({_COLUMNS}) VALUES ({', '.join('?' for _ in _FIELD_NAMES)})"
_ERROR_AT = _FIELD_NAMES.index("error")
_COST_AT = _FIELD_NAMES.index("cost_usd")


@dataclass(frozen=True)
class LedgerTotals:
    """Sums over ledger rows."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal = Decimal(0)

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts TEXT NOT NULL,
            session TEXT NOT NULL,
            cell INTEGER,
            model TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd TEXT NOT NULL DEFAULT '0',
            latency_s REAL,
            ttft_s REAL,
            status TEXT NOT NULL,
            error TEXT,
            request_id TEXT,
            pricing_mode TEXT NOT NULL,
            source TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX IF NOT EXISTS calls_session ON calls (session, id)")


def _v2(conn: sqlite3.Connection) -> None:
    # Rows from before routes existed were all Baseten's API; the default keeps them readable.
    conn.execute("ALTER TABLE calls ADD COLUMN route TEXT NOT NULL DEFAULT 'baseten'")


# Migration N (1-based) brings the schema from version N-1 to N. Append; never edit.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2)
SCHEMA_VERSION = len(MIGRATIONS)


def _is_locked(exc: sqlite3.DatabaseError) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Ledger:
    """The cost ledger file; every method opens, uses and closes its own connection."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else settings.ledger_path()
        self._identity: tuple[int, int] | None = None
        self._ensure()

    def _ensure(self) -> None:
        """Make sure the file exists, is owner-only and holds the schema; cheap when it does."""
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            found = None
        except OSError:
            found = None  # reported by _create_file below, with the path and what to do
        if found is not None and (found.st_dev, found.st_ino) == self._identity:
            if found.st_mode & 0o077:
                os.chmod(self.path, 0o600)  # widened while the session ran
            return
        self._create_file()
        self._run(self._migrate)
        stat = os.stat(self.path)
        self._identity = (stat.st_dev, stat.st_ino)

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def _create_file(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Created owner-only before SQLite opens it: SQLite would use the umask's 0644.
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            wide = os.fstat(fd).st_mode & 0o077
            os.close(fd)
            if wide:
                os.chmod(self.path, 0o600)  # an existing ledger readable by others is tightened
        except OSError as exc:
            raise ConfigurationError(
                f"the cost ledger at {str(self.path)!r} could not be created ({exc.strerror}); "
                f"set {settings.LEDGER_ENV} to a writable file path"
            ) from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run one short operation on a fresh connection, retrying while the file is locked."""
        for attempt in range(_LOCK_RETRIES):
            try:
                with self._connect() as conn:
                    return operation(conn)
            except sqlite3.DatabaseError as exc:  # OperationalError, or "file is not a database"
                if not _is_locked(exc) or attempt == _LOCK_RETRIES - 1:
                    raise ConfigurationError(
                        f"the cost ledger at {str(self.path)!r} failed ({exc}); check the file "
                        f"or set {settings.LEDGER_ENV} to another path"
                    ) from None
                time.sleep(0.02 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        # WAL lets readers and one writer work at once; the mode is stored in the file.
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, SCHEMA_VERSION):
                MIGRATIONS[number](conn)
                conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        """The schema version stored in the file."""
        version: int = self._run(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        return version

    def record(self, row: LedgerRow) -> None:
        """Append one row (error text redacted first)."""
        values = [getattr(row, name) for name in _FIELD_NAMES]
        values[_ERROR_AT] = None if row.error is None else settings.redact(row.error)
        values[_COST_AT] = str(row.cost_usd)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(_INSERT, values)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self._ensure()
        try:
            self._run(insert)
        except ConfigurationError:
            # A replacement file may reuse the old inode number, so it passes the identity check
            # and only fails here ("no such table"): re-create the schema and write once more.
            self._identity = None
            self._ensure()
            self._run(insert)

    def rows(
        self,
        *,
        session: str | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        sources: Sequence[str] | None = None,
    ) -> list[LedgerRow]:
        """Logged rows, oldest first (the last `limit` when given), optionally only those of one
        session, from `since` on (an aware datetime), or of the given sources."""
        clauses: list[str] = []
        args: list[Any] = []
        if session is not None:
            clauses.append("session = ?")
            args.append(session)
        if since is not None:
            if since.tzinfo is None:
                raise ValueError(
                    f"since must be timezone-aware, got naive {since.isoformat()}; "
                    "pass e.g. datetime.now(UTC) - timedelta(hours=1)"
                )
            # `ts` is ISO-8601 in UTC with milliseconds: as text it sorts as time does.
            clauses.append("ts >= ?")
            args.append(since.astimezone(UTC).isoformat(timespec="milliseconds"))
        if sources is not None:
            clauses.append(f"source IN ({', '.join('?' for _ in sources)})")
            args.extend(sources)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_COLUMNS} FROM calls {where} ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {max(int(limit), 0)}"
        found = self._run(lambda c: c.execute(sql, args).fetchall())
        return [_row_from_db(values) for values in reversed(found)]

    def totals(self, session: str | None = None) -> LedgerTotals:
        """Call count, token sums and exact total cost, optionally of one session."""
        where, args = ("WHERE session = ?", [session]) if session is not None else ("", [])
        sql = (
            "SELECT prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, cost_usd "
            f"FROM calls {where}"
        )
        found = self._run(lambda c: c.execute(sql, args).fetchall())
        # Costs are summed as Decimal in Python: SQL SUM() over TEXT would go through floats.
        return LedgerTotals(
            calls=len(found),
            prompt_tokens=sum(r[0] for r in found),
            completion_tokens=sum(r[1] for r in found),
            reasoning_tokens=sum(r[2] for r in found),
            cached_tokens=sum(r[3] for r in found),
            cost_usd=sum((_decimal(r[4]) for r in found), Decimal(0)),
        )


def _decimal(text: Any) -> Decimal:
    try:
        return Decimal(str(text))
    except InvalidOperation:
        return Decimal(0)


def _row_from_db(values: tuple[Any, ...]) -> LedgerRow:
    data = dict(zip(_FIELD_NAMES, values, strict=True))
    data["cost_usd"] = _decimal(data["cost_usd"])
    return LedgerRow(**data)
