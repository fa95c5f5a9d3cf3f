"""Fixtures for batch runs on loopback: a temp ledger and cache, and servers with account limits.

Rule: each test gets its own ledger and cache files and its own server, so request counts at
the server are the test's alone; every server is stopped when its test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from baseten_magic.server import LocalServer

ServerFactory = Callable[..., LocalServer]


@pytest.fixture
def batch_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Ledger and cache in a temp dir (BASETEN_MAGIC_LEDGER, BASETEN_MAGIC_CACHE)."""
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(tmp_path / "ledger.sqlite3"))
    monkeypatch.setenv("BASETEN_MAGIC_CACHE", str(tmp_path / "cache.sqlite3"))
    return tmp_path


@pytest.fixture
def limited_server(batch_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerFactory]:
    """Start a LocalServer with the given limits; the environment points at it."""
    started: list[LocalServer] = []

    def start(**limits: Any) -> LocalServer:
        server = LocalServer(**limits).start()
        started.append(server)
        monkeypatch.setenv("BASETEN_BASE_URL", server.url)
        monkeypatch.setenv("BASETEN_API_KEY", server.api_key)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
