"""Import cost: `%load_ext baseten_magic` in a fresh interpreter, against `import httpx` alone.

Rule: every measurement runs in a fresh subprocess (nothing cached in `sys.modules`), several
times, and the median is reported. The `%load_ext` time excludes creating the
`InteractiveShell`; the subprocess also reports which heavy modules the extension loaded:
`ipywidgets` must not be among them (the panel imports it on first use).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks import Section, Target, median, ratio

__all__ = ["run"]

_LOAD_EXT = """
import json, sys, time
heavy = ("ipywidgets", "httpx", "markdown_it", "pygments", "sqlite3", "baseten_magic.server")
from IPython.core.interactiveshell import InteractiveShell
t0 = time.perf_counter()
shell = InteractiveShell.instance()
t1 = time.perf_counter()
before = {name for name in heavy if name in sys.modules}
shell.run_line_magic("load_ext", "baseten_magic")
t2 = time.perf_counter()
print(json.dumps({
    "shell_s": t1 - t0,
    "load_ext_s": t2 - t1,
    "loaded": {name: name in sys.modules and name not in before for name in heavy},
    "magics": sorted(shell.magics_manager.magics["cell"]),
}))
"""

_IMPORT_HTTPX = """
import json, time
t0 = time.perf_counter()
import httpx
print(json.dumps({"import_s": time.perf_counter() - t0}))
"""


def _fresh(code: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"expected the timing subprocess to succeed, got exit {done.returncode}: "
            f"{done.stderr.strip().splitlines()[-1:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool) -> Section:
    """Time `%load_ext baseten_magic` and `import httpx` in alternating fresh subprocesses."""
    repetitions = 5 if quick else 15
    load_ext: list[dict[str, Any]] = []
    httpx_times: list[float] = []
    with tempfile.TemporaryDirectory() as home:
        # A throwaway IPython profile and ledger: nothing touches the user's own.
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASETEN_")}
        env["IPYTHONDIR"] = os.path.join(home, "ipython")
        env["BASETEN_MAGIC_LEDGER"] = os.path.join(home, "ledger.sqlite")
        _fresh(_LOAD_EXT, env)  # warm the OS file cache and the profile directory
        for _ in range(repetitions):
            load_ext.append(_fresh(_LOAD_EXT, env))
            httpx_times.append(float(_fresh(_IMPORT_HTTPX, env)["import_s"]))
    ext_s = median([float(r["load_ext_s"]) for r in load_ext])
    shell_s = median([float(r["shell_s"]) for r in load_ext])
    httpx_s = median(httpx_times)
    loaded: dict[str, bool] = load_ext[-1]["loaded"]
    widgets_loaded = any(bool(r["loaded"]["ipywidgets"]) for r in load_ext)
    if "baseten" not in load_ext[-1]["magics"]:
        raise AssertionError("expected %load_ext baseten_magic to register the %%baseten magic")
    return Section(
        name="import_cost",
        title="Import cost (fresh subprocesses)",
        columns=("what", "median ms", "vs import httpx"),
        rows=(
            (
                "%load_ext baseten_magic (shell excluded)",
                f"{1e3 * ext_s:.1f}",
                f"{ratio(ext_s, httpx_s):.2f}",
            ),
            ("import httpx", f"{1e3 * httpx_s:.1f}", "1.00"),
            (
                "InteractiveShell creation (excluded)",
                f"{1e3 * shell_s:.1f}",
                f"{ratio(shell_s, httpx_s):.2f}",
            ),
        ),
        targets=(
            Target(
                "ipywidgets imported by %load_ext (0 = no)",
                1.0 if widgets_loaded else 0.0,
                0.0,
                "max",
            ),
        ),
        notes=(
            f"Median of {repetitions} runs each. Heavy modules %load_ext itself imported: "
            + ", ".join(f"{name}={'yes' if flag else 'no'}" for name, flag in loaded.items()),
        ),
        data={
            "repetitions": repetitions,
            "load_ext_s": ext_s,
            "import_httpx_s": httpx_s,
            "shell_s": shell_s,
            "load_ext_over_httpx": ratio(ext_s, httpx_s),
            "loaded_after_load_ext": loaded,
            "ipywidgets_loaded": widgets_loaded,
        },
    )
