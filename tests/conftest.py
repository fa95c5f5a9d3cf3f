"""Shared fixtures: environment hygiene, a cost ledger in a temp dir, local servers, JupyterLab.

Rule: no test ever sees a real `BASETEN_*` variable (an autouse fixture removes them), and
every process a fixture starts is stopped when its scope ends.

    ledger_path         function  temp ledger path, exported as BASETEN_MAGIC_LEDGER
    local_server        function  fresh LocalServer; BASETEN_BASE_URL / BASETEN_API_KEY point at it
    session_server      session   one shared LocalServer, read-only (no faults, no speed changes)
    session_server_env  function  session_server, with the two variables pointing at it
    lab                 session   one harness.lab.LabSession (JupyterLab + headless Chromium);
                                  a failing test that used it leaves artifacts/failed-<test>.*

Usage::

    def test_stream(local_server: LocalServer, ledger_path: Path) -> None:
        local_server.inject(Fault(...))
        ...  # code under test reads BASETEN_BASE_URL / BASETEN_API_KEY at call time

    @pytest.mark.browser  # `server_env` comes from `harness`
    def test_page(lab: LabSession, session_server: LocalServer) -> None:
        lab.open_notebook("t.ipynb", ["%load_ext baseten_magic"], env=server_env(session_server))
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from harness import server_env

if TYPE_CHECKING:
    from harness.lab import LabSession

    from baseten_magic.server import LocalServer


@pytest.fixture(autouse=True)
def _no_real_baseten_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every `BASETEN_*` variable, so no test can pick up a real key or endpoint."""
    for name in list(os.environ):
        if name.startswith("BASETEN_"):
            monkeypatch.delenv(name)


@pytest.fixture
def ledger_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _no_real_baseten_env: None
) -> Path:
    """A ledger file path in a temp dir (not created), exported as `BASETEN_MAGIC_LEDGER`."""
    path = tmp_path / "ledger.sqlite3"
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(path))
    return path


def _start_server() -> LocalServer:
    # Imported here: tests that do not use a server must not depend on it.
    from baseten_magic.server import LocalServer

    return LocalServer().start()


@pytest.fixture
def local_server(
    monkeypatch: pytest.MonkeyPatch, _no_real_baseten_env: None
) -> Iterator[LocalServer]:
    """A fresh LocalServer on loopback; the environment points the client at it."""
    server = _start_server()
    try:
        for name, value in server_env(server).items():
            monkeypatch.setenv(name, value)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def session_server() -> Iterator[LocalServer]:
    """One LocalServer shared by the whole session: read-only use (no faults, no speed)."""
    server = _start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def session_server_env(
    session_server: LocalServer, monkeypatch: pytest.MonkeyPatch, _no_real_baseten_env: None
) -> LocalServer:
    """`session_server`, with `BASETEN_BASE_URL` / `BASETEN_API_KEY` pointing at it."""
    for name, value in server_env(session_server).items():
        monkeypatch.setenv(name, value)
    return session_server


@pytest.fixture(scope="session")
def lab() -> Iterator[LabSession]:
    """One JupyterLab + headless Chromium for the session; skips only if Chromium is absent."""
    from harness.lab import CHROMIUM, LabSession, chromium_available

    if not chromium_available():
        # CI installs Chromium, so there this never skips.
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with LabSession() as session:
        yield session


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Hide Playwright's loop from tests that do not drive the browser (no `lab`, no mark).

    Once a LabSession has started, Playwright's sync API leaves its loop marked as running
    between calls, which would break `asyncio.run()` and jupyter_client in every later test,
    fixtures included (hence the whole protocol, not a fixture).
    """
    lab_module = sys.modules.get("harness.lab")
    drives_browser = item.get_closest_marker("browser") is not None or "lab" in getattr(
        item, "fixturenames", ()
    )
    if lab_module is None or drives_browser:
        return (yield)
    with lab_module.playwright_loop_hidden():
        return (yield)


@pytest.fixture(autouse=True)
def _lab_diagnostics_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a failed test that used `lab`, save what the page and server showed."""
    yield
    report = request.node.stash.get(_REPORTS, {}).get("call")
    if report is not None and report.failed and "lab" in request.fixturenames:
        session: LabSession = request.getfixturevalue("lab")
        session.save_diagnostics(f"failed-{request.node.name}")
