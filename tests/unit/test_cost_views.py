"""Cost you can look at: `%baseten cost --by`, `--plot` (a PNG in the bundle), matplotlib
missing, and a result that displays itself as its cell did."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils import capture as _capture

from baseten_magic.core.result import ChatResult, Usage
from baseten_magic.io.ledger import LedgerRow
from baseten_magic.render.costplot import cost_chart
from baseten_magic.render.result import result_bundle
from baseten_magic.render.tables import summary_table
from baseten_magic.server import LocalServer

capture_output: Callable[..., Any] = _capture.capture_output
ROOT = Path(__file__).resolve().parents[2]


def rows() -> list[LedgerRow]:
    return [
        LedgerRow(ts="2026-11-25T10:00:00.000+00:00", cell=1, model="a/M1", cost_usd=Decimal("1")),
        LedgerRow(ts="2026-11-25T11:00:00.000+00:00", cell=2, model="b/M2", cost_usd=Decimal("2")),
        LedgerRow(ts="2026-11-26T09:00:00.000+00:00", cell=2, model="a/M1", cost_usd=Decimal("1")),
        LedgerRow(ts="2026-11-26T09:00:00.000+00:00", model="a/M1", source="panel"),
    ]


def test_summaries_by_model_day_and_cell() -> None:
    by_model = summary_table(rows(), "model")["text/plain"].splitlines()
    assert by_model[0].split() == ["model", "calls", "in", "out", "cost", "share"]
    assert by_model[2].split()[:2] == ["a/M1", "3"]
    assert by_model[2].split()[-2:] == ["$2.00", "50%"]
    assert by_model[-1].split()[-2:] == ["$4.00", "100%"]
    by_day = summary_table(rows(), "day")["text/plain"]
    assert "2026-11-25      2" in by_day
    by_cell = summary_table(rows(), "cell")["text/plain"]
    assert "In [2]" in by_cell
    assert "panel/api" in by_cell


def test_the_chart_is_a_png_with_a_plain_summary() -> None:
    bundle, metadata = cost_chart(rows(), by="day", cap=Decimal("10"))
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG")
    assert bundle["text/plain"] == "Cost chart: $4.00 over 4 calls (budget $10.00)"
    assert metadata == {"image/png": {"width": 720}}
    # Drawn at twice the width it is shown at, so it stays sharp on dense screens.
    width = int.from_bytes(png[16:20], "big")
    assert width == 2 * 720


def test_drawing_leaves_pyplot_alone() -> None:
    code = (
        "import sys\n"
        "from decimal import Decimal\n"
        "from baseten_magic.io.ledger import LedgerRow\n"
        "from baseten_magic.render.costplot import cost_chart\n"
        "cost_chart([LedgerRow(cell=1, cost_usd=Decimal('0.1'))])\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def shell(server: LocalServer, ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("BASETEN_BASE_URL", server.url)
    monkeypatch.setenv("BASETEN_API_KEY", server.api_key)
    ipython: Any = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "baseten_magic")
    yield ipython
    ipython.run_line_magic("unload_ext", "baseten_magic")
    ipython.config.pop("BasetenMagics", None)
    for name in ("_baseten", "ans"):
        ipython.user_ns.pop(name, None)


def test_cost_subcommand_summaries_and_plot(shell: Any) -> None:
    with capture_output() as captured:
        shell.run_line_magic("baseten", "cost --plot")
    assert "No calls to plot yet" in captured.stdout
    shell.run_line_magic("config", "BasetenMagics.budget_usd = 1.0")
    with capture_output():
        shell.run_cell_magic("baseten", "", "/echo one")
        shell.run_cell_magic("baseten", "-m glm", "/echo two")
    with capture_output() as captured:
        shell.run_line_magic("baseten", "cost --by model")
    plain = captured.outputs[-1].data["text/plain"]
    assert "of the $1.00 budget" in plain.splitlines()[0]
    assert "zai-org/GLM-4.7" in plain
    assert "100%" in plain.splitlines()[-1]
    with capture_output() as captured:
        shell.run_line_magic("baseten", "cost --plot")
    output = captured.outputs[-1]
    assert base64.b64decode(output.data["image/png"]).startswith(b"\x89PNG")
    assert output.metadata == {"image/png": {"width": 720}}
    assert "(budget $1.00)" in output.data["text/plain"]
    with capture_output() as captured:
        shell.run_line_magic("baseten", "cost --plot --by day --all")
    assert "image/png" in captured.outputs[-1].data
    with pytest.raises(UsageError, match="--plot draws spend per cell or per day"):
        shell.run_line_magic("baseten", "cost --plot --by model")
    with pytest.raises(UsageError, match="takes only --by model"):
        shell.run_line_magic("baseten", "cost --by week")


def test_without_matplotlib_one_line_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from baseten_magic.render.costplot import cost_chart\n"
        "from baseten_magic.core.errors import ConfigurationError\n"
        "try:\n"
        "    cost_chart([])\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == (
        "%baseten cost --plot needs matplotlib, which is not installed; "
        "install it with pip install 'baseten_magic[plot]'"
    )


def test_a_result_displays_itself_as_its_cell_did(shell: Any) -> None:
    with capture_output():
        shell.run_cell_magic("baseten", "-o ans", "/echo **bold** <script>x</script>")
    # What the display hook sends for `ans` at the end of a cell (a kernel test sees it arrive).
    data, _ = shell.display_formatter.format(shell.user_ns["ans"])
    html = data["text/html"]
    assert "<strong>bold</strong>" in html
    assert "<script>" not in html  # through the same safe renderer
    assert "&lt;script&gt;" in html
    assert "bm-footer" in html
    assert data["text/plain"].startswith("ChatResult · openai/gpt-oss-120b · ")
    assert "bold" in data["text/plain"].splitlines()[1]


def test_result_bundle_has_reasoning_parsed_and_footer() -> None:
    result = ChatResult(
        content='{"a": 1}',
        reasoning="thinking <b>",
        model="m",
        usage=Usage(10, 20, 5),
        cost=Decimal("0.002"),
        parsed={"a": 1},
    )
    bundle = result_bundle(result)
    html = bundle["text/html"]
    assert html.index("bm-reasoning") < html.index("bm-answer") < html.index("bm-json")
    assert "thinking &lt;b&gt;" in html
    assert "$0.002" in html
    assert bundle["text/plain"] == "ChatResult · m · 30 tokens · $0.002\n'{\"a\": 1}'"


def test_chat_results_display_in_a_shell_without_the_extension(
    server: LocalServer, ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import baseten_magic

    monkeypatch.setenv("BASETEN_BASE_URL", server.url)
    monkeypatch.setenv("BASETEN_API_KEY", server.api_key)
    ipython: Any = InteractiveShell.instance()
    formatter = ipython.display_formatter.mimebundle_formatter
    formatter.type_printers.pop(ChatResult, None)
    result = baseten_magic.chat("/echo hi")
    data, _ = ipython.display_formatter.format(result)
    assert "bm-answer" in data["text/html"]
