"""examples/batch.ipynb runs in a real kernel: typed schema columns, a progress summary that
stays in the saved notebook, the cost, and a re-run answered from the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from harness.kernel import run_notebook

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOK = EXAMPLES / "batch.ipynb"

pytestmark = pytest.mark.kernel


def _cell(nb: nbformat.NotebookNode, first_line: str) -> Any:
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(first_line):
            return cell
    raise AssertionError(f"no code cell starts with {first_line!r}")


def _text(cell: Any) -> str:
    parts: list[str] = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(str(output.data.get("text/plain", "")))
    return "\n".join(parts)


def test_the_generator_writes_the_committed_notebook() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_batch", EXAMPLES / "build_batch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    assert [c.source for c in committed.cells] == [c.source for c in module.build().cells]


def test_batch_notebook(tmp_path: Path) -> None:
    nb = run_notebook(
        NOTEBOOK, env={"BASETEN_MAGIC_LEDGER": str(tmp_path / "ledger.db")}, timeout=120
    )
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert errors == []
    assert "nothing sent" in _text(_cell(nb, "prompt = "))
    run = _cell(nb, "out = baseten_magic.map(")
    displays = [o for o in run.outputs if o.output_type in ("display_data", "update_display_data")]
    # One display, updated in place: the saved output is the one-line summary.
    assert len(displays) == 1
    assert displays[0].data["text/plain"].startswith("baseten map: 24/24 rows")
    dtypes = _text(_cell(nb, "out.dtypes"))
    assert "stars" in dtypes and "Int64" in dtypes
    again = _text(_cell(nb, "again = "))
    assert "24 cached, 0 requests sent" in again and "True" in again
    assert "(True," in _text(_cell(nb, "batch_rows = "))
    # The same from a cell: the live line left as the summary, then the frame's first rows.
    over = _cell(nb, "%%baseten --over reviews")
    shown = [o for o in over.outputs if o.output_type in ("display_data", "update_display_data")]
    summary = shown[0].data["text/plain"]
    # The map() calls above spent part of the server's minute: some rows may be retried.
    assert summary.startswith("baseten map: 24/24 rows, ") and ", 0 errors," in summary
    assert any("<table" in o.data.get("text/html", "") for o in shown[1:])
    assert _text(_cell(nb, "short.attrs")).strip() == "(24, True)"
