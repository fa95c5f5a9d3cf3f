"""The response cache: finished answers keyed by a hash of the request that produced them.

Rule: a key is the SHA-256 of the canonical request — model slug, messages and every parameter
that can change the answer, with `stream` and `stream_options` left out (they change how the
answer travels, not what it is) — plus a scope (the endpoint), so an answer from the local demo
server is never served for Baseten. One SQLite file (`BASETEN_MAGIC_CACHE`, default in the
user's cache directory), created owner-only (0600), in WAL mode with a busy timeout, so several
kernels and dask workers share it. Every `put` commits at once: a process killed with `kill -9`
loses no answer it already stored. `get_many` reads in chunks, one query per chunk, so a cached
re-run of 10,000 rows costs about twenty queries, not 10,000.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from baseten_magic.core import settings
from baseten_magic.core.errors import ConfigurationError
from baseten_magic.core.result import ChatResult, ToolCall, Usage

CACHE_ENV = "BASETEN_MAGIC_CACHE"
CACHE_FILE = "responses.sqlite3"
# Fields that change how an answer is delivered, never what it says.
_TRANSPORT_FIELDS = frozenset({"stream", "stream_options"})
# SQLite's default limit on bound parameters is 999 on old builds; stay well under it.
CHUNK = 500
_BUSY_TIMEOUT_MS = 10_000
_LOCK_RETRIES = 8
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    content TEXT NOT NULL,
    reasoning TEXT NOT NULL,
    tool_calls TEXT NOT NULL,
    usage TEXT,
    finish_reason TEXT,
    cost_usd TEXT NOT NULL,
    stored_at REAL NOT NULL
)
"""


def cache_path() -> Path:
    """Where the cache lives: `BASETEN_MAGIC_CACHE`, else the user's cache directory."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        root = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(root) / settings.APP_NAME / "Cache" / CACHE_FILE
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / settings.APP_NAME / CACHE_FILE
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    root = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return root / settings.APP_NAME / CACHE_FILE


def key_for(body: Mapping[str, Any], *, scope: str = "") -> str:
    """The cache key of a request body (hex SHA-256 of its canonical JSON and the scope)."""
    canonical = {k: v for k, v in body.items() if k not in _TRANSPORT_FIELDS}
    text = json.dumps(
        [scope, canonical], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer: the result as a hit returns it ($0) and what it cost when bought."""

    result: ChatResult
    saved_usd: Decimal


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


class ResponseCache:
    """Stored answers; safe to share between threads of a process and between processes."""

    key_for = staticmethod(key_for)

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else cache_path()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._create_file()
        self._run(lambda conn: conn.execute(_SCHEMA))

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _create_file(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Owner-only before SQLite opens it (SQLite would follow the umask, often 0644).
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as exc:
            raise ConfigurationError(
                f"the response cache at {str(self.path)!r} could not be created "
                f"({exc.strerror}); set {CACHE_ENV} to a writable file path, or pass cache=False "
                "(in a cell: --no-cache)"
            ) from None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,  # guarded by self._lock
            )
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn = conn
        return self._conn

    def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """One operation under the lock, retried while another process holds the file."""
        for attempt in range(_LOCK_RETRIES):
            try:
                with self._lock:
                    return operation(self._connection())
            except sqlite3.Error as exc:
                if not _is_locked(exc) or attempt == _LOCK_RETRIES - 1:
                    raise ConfigurationError(
                        f"the response cache at {str(self.path)!r} failed ({exc}); delete the "
                        f"file, set {CACHE_ENV} to another path, or pass cache=False "
                        "(in a cell: --no-cache)"
                    ) from None
                time.sleep(0.02 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def get(self, key: str) -> CachedAnswer | None:
        """The stored answer for `key`, or None."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedAnswer]:
        """Stored answers of the keys that have one, in chunks of CHUNK keys per query."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, CachedAnswer] = {}
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            sql = (
                "SELECT key, model, content, reasoning, tool_calls, usage, finish_reason, "
                f"cost_usd FROM responses WHERE key IN ({', '.join('?' * len(chunk))})"
            )
            rows = self._run(_select(sql, chunk))
            for row in rows:
                found[row[0]] = _result_from_row(row)
        return found

    def put(self, key: str, result: ChatResult) -> None:
        """Store a finished answer under `key`, committed at once (replaces an older one)."""
        usage = None if result.usage is None else json.dumps(dict(result.usage))
        values = (
            key,
            result.model,
            result.content,
            result.reasoning,
            json.dumps(list(result.tool_calls)),
            usage,
            result.finish_reason,
            str(result.cost),
            time.time(),
        )
        self._run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values
            )
        )

    def __len__(self) -> int:
        count: int = self._run(lambda c: c.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
        return count


def _select(sql: str, args: list[str]) -> Callable[[sqlite3.Connection], list[Any]]:
    return lambda conn: conn.execute(sql, args).fetchall()


def _result_from_row(row: tuple[Any, ...]) -> CachedAnswer:
    _, model, content, reasoning, tool_calls, usage, finish_reason, cost = row
    calls: list[ToolCall] = [
        {"id": str(c["id"]), "name": str(c["name"]), "arguments": str(c["arguments"])}
        for c in json.loads(tool_calls)
    ]
    try:
        original = Decimal(cost)
    except InvalidOperation:
        original = Decimal(0)
    # A hit costs nothing; what the answer cost when it was bought is kept beside it.
    result = ChatResult(
        content=content,
        reasoning=reasoning,
        tool_calls=calls,
        finish_reason=finish_reason,
        model=model,
        usage=None if usage is None else Usage(**json.loads(usage)),
        cost=Decimal(0),
        status="ok",
        cached=True,
    )
    return CachedAnswer(result, original)
