"""Cost as the user sees it, in a real ipykernel: the ledger's cell is `In [n]`; the chart's PNG
and the result's own display reach the front end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import server_env
from harness.kernel import KernelSession

from baseten_magic.io.ledger import Ledger
from baseten_magic.server import LocalServer

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as local:
        yield local


def test_cell_numbers_chart_and_result_display(server: LocalServer, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    env = {**server_env(server), "BASETEN_MAGIC_LEDGER": str(ledger)}
    with KernelSession(env) as kernel:
        assert kernel.execute("%load_ext baseten_magic").status == "ok"
        counts = []
        for text in ("one", "two"):
            reply = kernel.execute(f"%%baseten -o ans\n/echo {text}")
            assert reply.status == "ok", reply.outputs
            counts.append(reply.execution_count)
        rows = Ledger(ledger).rows()
        # The front end shows `In [n]` with the reply's execution_count: the row says the same.
        assert [row.cell for row in rows] == counts
        assert counts[1] == counts[0] + 1

        # `ans` at the end of a cell renders like the cell did; text/plain is a summary.
        shown = kernel.execute("ans")
        (result,) = shown.of_type("execute_result")
        data = result.content["data"]
        assert "bm-answer" in data["text/html"]
        assert "two" in data["text/html"]
        assert data["text/plain"].startswith("ChatResult · openai/gpt-oss-120b")

        chart = kernel.execute("%baseten cost --plot")
        (display,) = chart.of_type("display_data")
        assert display.content["data"]["image/png"].startswith("iVBOR")  # a PNG, base64
        assert display.content["metadata"] == {"image/png": {"width": 720}}
        frame = kernel.execute(
            "import baseten_magic\n"
            "f = baseten_magic.ledger(as_frame=True, session='current')\n"
            "print(f['cell'].tolist(), f['cell'].dtype)"
        )
        assert frame.stdout.strip() == f"{counts} Int64"
