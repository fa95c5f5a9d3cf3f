"""JupyterLab 4 in headless Chromium, for tests of what the page really shows.

Rule: one `LabSession` owns one `jupyter lab` server (a subprocess on a free loopback port,
random token, every Jupyter directory isolated in a temporary folder, first-run popups and
news off) and one page in headless Chromium driven by Playwright's sync API; leaving the
`with` block stops its page, every kernel and the server, on every path. Starting one costs seconds,
so tests share one per session (the `lab` fixture in `tests/conftest.py`). Sessions alive at
the same time share one Chromium, each in its own browser context.

Chromium is Debian's (`/usr/bin/chromium`); Playwright's bundled browsers are never used.
Kernels inherit the server's environment (this process's minus `BASETEN_*`, plus `env`);
`open_notebook(..., env=...)` adds variables for that notebook's kernel alone (an IPython
startup file in the isolated profile applies them, keyed by the notebook's name).

Usage::

    from harness.lab import LabSession, chromium_available

    if not chromium_available():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    with LabSession() as lab:
        lab.open_notebook("demo.ipynb", ["print('hi')"], env={"BASETEN_API_KEY": key})
        lab.run_all()
        assert "hi" in lab.page.locator(".jp-OutputArea-output").first.inner_text()
        lab.screenshot("demo")  # artifacts/demo.png at the repo root
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ParamSpec, TypeVar

from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from harness.kernel import kernel_environ, write_notebook

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "LabSession",
    "chromium_available",
    "playwright_loop_hidden",
]

P = ParamSpec("P")
R = TypeVar("R")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

# User settings written into the isolated settings directory: no news or update toasts, and
# every cell attached to the DOM (the default windowing leaves off-screen cells out of it).
USER_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}

# Runs at every kernel start: applies the per-notebook variables `open_notebook` recorded.
# jupyter_server names the notebook in JPY_SESSION_NAME.
STARTUP_SCRIPT = """\
import json as _json, os as _os
_session = _os.path.basename(_os.environ.get("JPY_SESSION_NAME", ""))
try:
    with open({path!r}, encoding="utf-8") as _f:
        _os.environ.update(_json.load(_f).get(_session, {{}}))
except FileNotFoundError:
    pass
del _json, _os, _session
"""

# `done`: every non-empty code cell shows an execution count above `before`; `busy`: some cell
# is queued or running; `started`: some cell ran (when not done, a cell raised and the rest were
# skipped). The prompts come back for failure messages.
CELLS_STATE_JS = """
(before) => {
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const prompts = cells.map(c => {
    const src = (c.querySelector('.cm-content') || {}).textContent || '';
    const p = (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '';
    return {empty: src.trim() === '', prompt: p.trim()};
  });
  const count = s => { const m = /\\[(\\d+)\\]/.exec(s); return m ? Number(m[1]) : null; };
  const busy = prompts.some(p => p.prompt.includes('*'));
  const done = prompts.every(p => p.empty || (count(p.prompt) ?? -1) > before);
  const started = prompts.some(p => (count(p.prompt) ?? -1) > before);
  return {busy, done, started, prompts: prompts.map(p => p.prompt)};
}
"""

# The current notebook's kernel, as the page sees it: connected over its websocket and idle.
# (The toolbar indicator reads "idle" before the kernel has even started, so it cannot be used.)
KERNEL_IDLE_JS = """
() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const ctx = widget && widget.sessionContext;
  const kernel = ctx && ctx.session && ctx.session.kernel;
  return !!kernel && ctx.isReady && kernel.connectionStatus === 'connected'
    && kernel.status === 'idle';
}
"""


# Closes every document without a "save changes?" dialog: tests own their files.
CLOSE_ALL_JS = """
() => {
  for (const widget of Array.from(window.jupyterapp.shell.widgets('main'))) {
    if (widget.context) { widget.context.model.dirty = false; }
    widget.dispose();
  }
}
"""


@contextlib.contextmanager
def playwright_loop_hidden() -> Iterator[None]:
    """Hide Playwright's event loop from code run inside the block (e.g. `asyncio.run`).

    Between calls, Playwright's sync API leaves its own loop marked as running in the calling
    thread, so while a `LabSession` is alive `asyncio.run()` fails with "cannot be called from
    a running event loop". In the block, LabSession's methods still work (they mark the loop
    running for their own calls); direct calls on `page` do not.
    """
    loop = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(None)
    try:
        yield
    finally:
        asyncio.events._set_running_loop(loop)


class _SharedBrowser:
    """One Playwright driver and one Chromium for the process, shared by every LabSession.

    Playwright's sync API supports one instance per thread (a second one refuses to start
    while the first is alive), so sessions share the browser and each gets its own context.
    The browser starts with the first user and stops when the last one leaves.
    """

    def __init__(self) -> None:
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._users = 0

    def acquire(self) -> Browser:
        """The shared browser, launched if needed; pair every call with `release()`."""
        if self._browser is None or not self._browser.is_connected():
            self._shutdown()
            self._playwright = sync_playwright().start()
            try:
                self._browser = self._playwright.chromium.launch(
                    executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), headless=True
                )
            except BaseException:
                self._shutdown()
                raise
        self._users += 1
        return self._browser

    @contextlib.contextmanager
    def loop_active(self) -> Iterator[None]:
        """Mark Playwright's loop as running for the block (undoes `playwright_loop_hidden`)."""
        loop = getattr(self._playwright, "_loop", None)
        if not isinstance(loop, asyncio.AbstractEventLoop):
            yield
            return
        saved = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(loop)
        try:
            yield
        finally:
            asyncio.events._set_running_loop(saved)

    def release(self) -> None:
        """Give the browser back; the last user's release stops it."""
        self._users = max(0, self._users - 1)
        if self._users == 0:
            self._shutdown()

    def _shutdown(self) -> None:
        browser, pw = self._browser, self._playwright
        self._browser = self._playwright = None
        if browser is not None:
            with contextlib.suppress(Exception):
                browser.close()
        if pw is not None:
            pw.stop()


# The one piece of module state: see _SharedBrowser for why the browser is per process.
_BROWSER = _SharedBrowser()


def _drives_browser(method: Callable[P, R]) -> Callable[P, R]:
    """Run a LabSession method with Playwright's loop marked running, even where it is hidden."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _BROWSER.loop_active():
            return method(*args, **kwargs)

    return wrapper


def chromium_available() -> bool:
    """True when Debian's Chromium is installed where the harness launches it."""
    return os.access(CHROMIUM, os.X_OK)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LabSession:
    """A JupyterLab server plus a headless Chromium page logged into it."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        startup_timeout: float = 90.0,
        viewport: tuple[int, int] = (1280, 900),
        server_args: Sequence[str] = (),
    ) -> None:
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.viewport = viewport
        self.server_args = tuple(server_args)
        self.token = secrets.token_hex(16)
        self.port = 0
        self.console: list[str] = []
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._exec_max = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> LabSession:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The server's base URL (no trailing slash, no token)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def root(self) -> Path:
        """The server's root directory: notebooks are written here."""
        return self._dir("root")

    @property
    def page(self) -> Page:
        """The Playwright page showing JupyterLab."""
        if self._page is None:
            raise RuntimeError("expected a started LabSession, got none; use it in `with`")
        return self._page

    def _dir(self, name: str) -> Path:
        if self._tmp is None:
            raise RuntimeError("expected a started LabSession, got none; use it in `with`")
        return self._tmp / name

    @_drives_browser
    def start(self) -> None:
        """Start the server, wait for `/api/status`, then launch Chromium."""
        if not chromium_available():
            raise RuntimeError(
                f"expected Chromium at {CHROMIUM}, found nothing; "
                "install Debian's `chromium` package (.ci/run does)"
            )
        self._tmp = Path(tempfile.mkdtemp(prefix="bm-lab-"))
        try:
            self._start_server()
            self._start_browser()
        except BaseException:
            self.stop()
            raise

    def _server_environ(self) -> dict[str, str]:
        config, data, runtime, ipython = (
            self._dir(n) for n in ("config", "data", "runtime", "ipython")
        )
        for name, values in USER_SETTINGS.items():
            path = config / "lab" / "user-settings" / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values), encoding="utf-8")
        startup = ipython / "profile_default" / "startup" / "00-notebook-env.py"
        startup.parent.mkdir(parents=True, exist_ok=True)
        startup.write_text(STARTUP_SCRIPT.format(path=str(self._env_file)), encoding="utf-8")
        for path in (data, runtime, self.root):
            path.mkdir(parents=True, exist_ok=True)
        env = kernel_environ(self.env)
        env.update(
            JUPYTER_CONFIG_DIR=str(config),
            JUPYTER_DATA_DIR=str(data),
            JUPYTER_RUNTIME_DIR=str(runtime),
            IPYTHONDIR=str(ipython),
            JUPYTERLAB_SETTINGS_DIR=str(config / "lab" / "user-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(config / "lab" / "workspaces"),
        )
        return env

    @property
    def _env_file(self) -> Path:
        return self._dir("notebook-env.json")

    def _start_server(self) -> None:
        env = self._server_environ()
        self.port = _free_port()
        args = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",  # CI runs as root
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",
            *self.server_args,
        ]
        self._log = (self._dir("server.log")).open("wb")
        # Its own process group, so kernels it leaves behind can be ended with it.
        self._proc = subprocess.Popen(
            args,
            env=env,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"expected jupyter lab to keep running, it exited with "
                    f"{self._proc.returncode}; its log: {self.server_log()[-2000:]!r}"
                )
            try:
                self.api("GET", "/api/status")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise TimeoutError(
            f"expected jupyter lab to answer /api/status within {self.startup_timeout:.0f} s, "
            f"it did not; its log: {self.server_log()[-2000:]!r}"
        )

    def _start_browser(self) -> None:
        width, height = self.viewport
        browser = _BROWSER.acquire()
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
        except BaseException:
            _BROWSER.release()
            raise
        self._context = context
        context.set_default_timeout(60_000)
        page = context.new_page()
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self._page = page

    @_drives_browser
    def stop(self) -> None:
        """Close the page, shut down every kernel and the server; safe to call twice."""
        context, self._context, self._page = self._context, None, None
        if context is not None:
            # A crashed browser is already gone; closing its context may fail.
            with contextlib.suppress(Exception):
                context.close()
            _BROWSER.release()
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                self._shutdown_kernels()
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)
            # Sweep the group: a kernel the server failed to stop must not outlive the test.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def server_log(self) -> str:
        """The server's combined stdout and stderr so far (for failure messages)."""
        try:
            return self._dir("server.log").read_text(encoding="utf-8", errors="replace")
        except (OSError, RuntimeError):
            return ""

    # -- REST --------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """Call the server's REST API with the token; returns the decoded JSON (or None)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def _shutdown_kernels(self) -> None:
        try:
            for session in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)
            for kernel in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
        except (OSError, urllib.error.URLError):
            pass  # The server is going down anyway; the group sweep catches stragglers.

    # -- notebooks ---------------------------------------------------------------------------

    def write_notebook(self, name: str, cells: Sequence[str]) -> Path:
        """Write a Python 3 notebook of code cells into the root directory."""
        return write_notebook(self.root / name, cells)

    @_drives_browser
    def open_notebook(
        self,
        name: str,
        cells: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 90.0,
        reload: bool = False,
    ) -> Page:
        """Write `name` with `cells`, open it alone in the page and wait for an idle kernel.

        Earlier notebooks are closed without saving and their kernels shut down. The page is
        loaded once and reused (a reload costs seconds); `reload=True` forces a fresh page.
        """
        page = self.page
        loaded = not reload and bool(page.evaluate("() => !!window.jupyterapp"))
        if loaded:
            page.evaluate(CLOSE_ALL_JS)
        # One notebook at a time: earlier kernels would only cost memory and CPU.
        self._shutdown_kernels()
        envs: dict[str, dict[str, str]] = {}
        if self._env_file.exists():
            envs = json.loads(self._env_file.read_text(encoding="utf-8"))
        envs[Path(name).name] = dict(env or {})
        self._env_file.write_text(json.dumps(envs), encoding="utf-8")
        self.write_notebook(name, cells)
        self._exec_max = 0
        timeout_ms = timeout * 1000
        if loaded:
            self.command("docmanager:open", {"path": name})
        else:
            # `reset` drops the saved workspace, so earlier notebooks are not reopened.
            page.goto(f"{self.url}/lab/tree/{name}?reset&token={self.token}")
        page.wait_for_function(
            "(name) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            " return !!w && !!w.context && w.context.path === name"
            " && !!w.node.querySelector('.jp-Notebook'); }",
            arg=name,
            timeout=timeout_ms,
        )
        page.wait_for_function(KERNEL_IDLE_JS, timeout=timeout_ms)
        # The file browser only takes room from the notebook in screenshots.
        page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
        return page

    @_drives_browser
    def command(self, command_id: str, args: Mapping[str, Any] | None = None) -> None:
        """Run a JupyterLab command by id (e.g. `notebook:restart-kernel`) and await it."""
        self.page.evaluate(
            "async ([id, args]) => { await window.jupyterapp.commands.execute(id, args); }",
            [command_id, dict(args or {})],
        )

    @_drives_browser
    def kernel_idle(self) -> bool:
        """True when the open notebook's kernel is connected and idle, as the page sees it."""
        return bool(self.page.evaluate(KERNEL_IDLE_JS))

    @_drives_browser
    def cells_state(self) -> dict[str, Any]:
        """Execution prompts of the open notebook's code cells, and whether all have run."""
        state: dict[str, Any] = self.page.evaluate(CELLS_STATE_JS, self._exec_max)
        return state

    @_drives_browser
    def run_all(self, timeout: float = 120.0, *, allow_errors: bool = False) -> dict[str, Any]:
        """Run → Run All Cells from the menu; wait for an idle kernel and every cell to run."""
        page = self.page
        before = self._exec_max
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = page.evaluate(CELLS_STATE_JS, before)
            idle = self.kernel_idle()
            if idle and not state["busy"] and (state["done"] or state["started"]):
                break
            page.wait_for_timeout(100)
        else:
            raise TimeoutError(
                f"expected every cell to run within {timeout:.0f} s, got prompts "
                f"{state.get('prompts')}; raise the timeout or look at the screenshot"
            )
        counts = [int(m) for p in state["prompts"] for m in re.findall(r"\[(\d+)\]", p)]
        self._exec_max = max([before, *counts])
        if not state["done"] and not allow_errors:
            raise AssertionError(
                f"expected every cell to run, got prompts {state['prompts']} "
                "(a cell raised); pass allow_errors=True to accept that"
            )
        return state

    @_drives_browser
    def save_diagnostics(self, name: str) -> None:
        """Save a screenshot, the server log and the browser console into `artifacts/`."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{name}.server.log").write_text(self.server_log(), encoding="utf-8")
        (ARTIFACTS / f"{name}.console.log").write_text("\n".join(self.console), encoding="utf-8")
        if self._page is not None:
            self.screenshot(name)

    @_drives_browser
    def screenshot(self, name: str) -> Path:
        """Save a full-page PNG as `artifacts/<name>.png` at the repo root; returns the path."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / (name if name.endswith(".png") else f"{name}.png")
        self.page.screenshot(path=str(path), full_page=True)
        return path
