"""Run an example notebook headless against the local server: no key, no network.

    python -m baseten_magic.demo                      # examples/quickstart.ipynb
    python -m baseten_magic.demo NOTEBOOK [--out PATH] [--tps 400]

Rule: the run is self-contained. A `LocalServer` starts in this process, the notebook's kernel
is pointed at it through `BASETEN_BASE_URL`/`BASETEN_API_KEY` (a throwaway demo key), the cost
ledger and a fresh response cache (`BASETEN_MAGIC_CACHE`) go next to the executed notebook, and
nothing reaches the internet. Needs the `demo` extra (`pip install '.[demo]'`: ipykernel,
nbclient, nbformat).

The executed notebook opens clean in JupyterLab: its `kernelspec` metadata is the spec of the
kernel that ran it, exactly as Lab writes it when it connects a kernel (a different
`display_name`, e.g. "Python 3" against ipykernel's "Python 3 (ipykernel)", is a change Lab
makes on open, so the notebook would show as modified before anyone touched it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_NOTEBOOK = Path("examples/quickstart.ipynb")


def default_output(notebook: Path) -> Path:
    """Where the executed copy of `notebook` is written: `<dir>/out/<name>`."""
    return notebook.parent / "out" / notebook.name


def kernelspec_metadata(kernel_name: str) -> dict[str, Any]:
    """The `kernelspec` metadata JupyterLab writes for the installed kernel `kernel_name`."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(kernel_name)
    return {"name": kernel_name, "display_name": spec.display_name, "language": spec.language}


def run_notebook(
    notebook: Path, out: Path, *, tokens_per_second: float | None = 400.0, timeout: int = 600
) -> tuple[int, int]:
    """Execute `notebook` against a fresh local server, write it to `out`; (cells, errors)."""
    import nbformat
    from nbclient import NotebookClient

    from baseten_magic.server import LocalServer

    out.parent.mkdir(parents=True, exist_ok=True)
    ledger = out.with_suffix(".ledger.sqlite3").resolve()  # the kernel runs in the notebook dir
    ledger.unlink(missing_ok=True)
    # The response cache too: a fresh one next to the output, never the user's own, so the
    # notebook's first --cache cell is sent and its re-run is the hit it shows.
    cache = out.with_suffix(".cache.sqlite3").resolve()
    for stale in (cache, Path(f"{cache}-wal"), Path(f"{cache}-shm")):
        stale.unlink(missing_ok=True)
    nb = nbformat.read(notebook, as_version=4)
    with LocalServer(tokens_per_second=tokens_per_second) as server:
        env = {
            **os.environ,
            "BASETEN_BASE_URL": server.url,
            "BASETEN_API_KEY": server.api_key,
            "BASETEN_MAGIC_LEDGER": str(ledger),
            "BASETEN_MAGIC_CACHE": str(cache),
        }
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            # Run every cell and count the failures below, so a failing cell still leaves an
            # executed notebook to look at (by default the first error aborts the run).
            allow_errors=True,
            resources={"metadata": {"path": str(notebook.parent)}},
        )
        client.execute(env=env)  # the kernel talks to the local server, never the internet
    nb.metadata["kernelspec"] = kernelspec_metadata(client.kernel_name)
    nbformat.validate(nb)
    nbformat.write(nb, out)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    expected = [c for c in code_cells if "raises-exception" in c.metadata.get("tags", [])]
    errors = sum(
        1
        for c in code_cells
        if c not in expected
        for o in c.get("outputs", [])
        if o.output_type == "error"
    )
    return len(code_cells), errors


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m baseten_magic.demo", description=__doc__)
    parser.add_argument("notebook", nargs="?", type=Path, default=DEFAULT_NOTEBOOK)
    parser.add_argument("--out", type=Path, help="executed notebook path (default: <dir>/out/)")
    parser.add_argument("--tps", type=float, default=400.0, help="local server tokens/second")
    args = parser.parse_args(argv)
    if not args.notebook.exists():
        parser.error(f"{args.notebook} not found; run from the repository root or pass a path")
    out = args.out or default_output(args.notebook)
    started = time.monotonic()
    cells, errors = run_notebook(args.notebook, out, tokens_per_second=args.tps)
    took = time.monotonic() - started
    print(f"executed {cells} code cells of {args.notebook} in {took:.1f} s; errors: {errors}")
    print(f"executed notebook: {out}")
    print(f"cost ledger: {out.with_suffix('.ledger.sqlite3')}")
    print(f"response cache: {out.with_suffix('.cache.sqlite3')}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
