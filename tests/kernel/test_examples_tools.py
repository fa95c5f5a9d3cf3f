"""examples/tools_and_structured.ipynb runs in a real kernel and shows what it promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from harness.kernel import run_notebook

from baseten_magic.render.markdown import assert_safe_html

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOK = EXAMPLES / "tools_and_structured.ipynb"

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


def _html(cell: Any) -> str:
    return "\n".join(
        str(o.data["text/html"]) for o in cell.outputs if "text/html" in o.get("data", {})
    )


def test_the_generator_writes_the_committed_notebook() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_tools_notebook", EXAMPLES / "build_tools_notebook.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    built = module.build()
    assert [c.source for c in committed.cells] == [c.source for c in built.cells]


def test_tools_and_structured_notebook(tmp_path: Path) -> None:
    nb = run_notebook(
        NOTEBOOK, env={"BASETEN_MAGIC_LEDGER": str(tmp_path / "ledger.db")}, timeout=90
    )
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert errors == []
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert_safe_html(_html(cell))

    spec = _text(_cell(nb, "from typing import Literal"))
    assert "'required': ['city']" in spec
    assert "'enum': ['celsius', 'fahrenheit']" in spec

    # Offered, not run: the calls are shown with Kimi's ids.
    asked = _text(_cell(nb, "[(call['id']"))
    assert "'functions.get_weather:0'" in asked
    assert "'functions.local_time:1'" in asked

    # Run: every tool's result (and the failing tool's error) reached the answer.
    looped = _cell(nb, "%%baseten -m gpt-oss --tools")
    markup = _html(looped)
    assert markup.count('class="bm-tool-call"') == 3
    assert "ToolError: LookupError: no census data for Lisbon" in _text(looped)
    summary = _text(_cell(nb, "print(looped.finish_reason"))
    assert summary.startswith("stop $")
    assert '"sky": "sunny"' in summary
    assert "**local_time**: 14:05" in summary

    assert _text(_cell(nb, "type(data.parsed)")).startswith("('dict',")
    assert _text(_cell(nb, "city.parsed")).startswith("City(name='Rome'")
    assert "bm-json" in _html(_cell(nb, "%%baseten -m gpt-oss --schema City"))
    mismatch = _text(_cell(nb, "from baseten_magic import OutputParseError, chat"))
    assert "OutputParseError: the reply does not match schema 'City': at $.name" in mismatch
