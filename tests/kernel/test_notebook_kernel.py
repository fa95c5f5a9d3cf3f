"""The `%%baseten` magic in a real ipykernel: example notebooks, IOPub traffic, interrupts, secrets.

Rule: what a front end receives is the contract here. Every test drives a real kernel process
(`harness.kernel.KernelSession`) pointed at a `LocalServer` in this process over loopback, and
asserts on the IOPub messages and the outputs a notebook would save.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nbformat
import pytest
from harness import server_env
from harness.kernel import ExecResult, KernelSession

from baseten_magic.demo import kernelspec_metadata
from baseten_magic.io.ledger import Ledger
from baseten_magic.server import LocalServer

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
INTERRUPTED_MARK = "■ interrupted — partial answer"
# Display messages may carry at most this multiple of the final outputs' bytes.
BYTES_MULTIPLE = 3
# jupyter_server drops IOPub messages above 1000/s; the painter should stay far below.
MAX_MESSAGES_PER_S = 50


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    """One server for the module; tests that change its speed put it back."""
    with LocalServer() as local:
        yield local


@pytest.fixture(scope="module")
def module_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kernel's cost ledger (the kernel's environment is fixed when it starts)."""
    return tmp_path_factory.mktemp("ledger") / "ledger.sqlite3"


@pytest.fixture(scope="module")
def kernel(server: LocalServer, module_ledger: Path) -> Iterator[KernelSession]:
    """One kernel for the module, with the magic loaded; starting one costs about a second."""
    env = {**server_env(server), "BASETEN_MAGIC_LEDGER": str(module_ledger)}
    with KernelSession(env) as session:
        loaded = session.execute("%load_ext baseten_magic", timeout=60)
        assert loaded.status == "ok", loaded.outputs
        yield session


@pytest.fixture
def speed(server: LocalServer) -> Iterator[LocalServer]:
    """The module's server; whatever speed a test sets is reset to unthrottled afterwards."""
    try:
        yield server
    finally:
        server.set_speed(None)


def _display_messages(result: ExecResult) -> list[Any]:
    return result.of_type("display_data") + result.of_type("update_display_data")


def _answer_text(outputs: tuple[Mapping[str, Any], ...]) -> str:
    """The answer's plain text: answer segments only (no reasoning block, footer or mark)."""
    parts = []
    for out in outputs:
        html = str(out.get("data", {}).get("text/html", ""))
        if html.startswith('<div class="bm-answer'):
            parts.append(str(out["data"]["text/plain"]))
    return "".join(parts)


def _outputs_bytes(outputs: tuple[Mapping[str, Any], ...]) -> int:
    # Measured like the harness measures message content: JSON-encoded.
    return sum(len(json.dumps(out.get("data", {}))) for out in outputs)


def test_quickstart_notebook_runs_clean_with_the_readme_command(tmp_path: Path) -> None:
    """`python3 -m baseten_magic.demo examples/quickstart.ipynb --out q.ipynb` exits 0."""
    out = tmp_path / "q.ipynb"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "baseten_magic.demo",
            "examples/quickstart.ipynb",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "errors: 0" in proc.stdout
    nb = nbformat.read(out, as_version=4)  # type: ignore[no-untyped-call]
    magic_cells = [
        c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%baseten")
    ]
    answered = 0
    for cell in magic_cells:
        if "raises-exception" in cell.metadata.get("tags", []):
            continue
        htmls = [str(o.get("data", {}).get("text/html", "")) for o in cell.outputs]
        assert any('class="bm-footer' in h for h in htmls), (cell.source, cell.outputs)
        assert any(h.startswith('<div class="bm-answer') for h in htmls), cell.source
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
        answered += 1
    assert answered >= 6
    # The default model (gpt-oss) always reasons: its block is a collapsible <details>.
    first = magic_cells[0]
    assert any(
        str(o.get("data", {}).get("text/html", "")).startswith("<details") for o in first.outputs
    )
    footer = next(
        str(o["data"]["text/plain"])
        for o in first.outputs
        if 'class="bm-footer' in str(o.get("data", {}).get("text/html", ""))
    )
    assert " in / " in footer and "$" in footer and "tok/s" in footer

    # The budget refuses the call it cannot cover, the chart is a PNG, both stay in the file.
    by_source = {c.source: c for c in nb.cells if c.cell_type == "code"}
    refused = next(c for source, c in by_source.items() if "Write me a novel" in source)
    # IPython shows a UsageError as one line on stderr, not as a traceback.
    said = "".join(str(o.get("text", "")) for o in refused.outputs if o.output_type == "stream")
    assert "UsageError: budget reached" in said
    assert "nothing was sent" in said
    # The cached re-run: the first --cache cell is sent (the demo's cache starts empty), the
    # same request from the next cell is answered from the cache at $0, painted the same.
    fresh, again = (c for c in magic_cells if "what does a response cache save?" in c.source)
    fresh_footer, again_footer = (_footer_of(c) for c in (fresh, again))
    assert "cached · saved" not in fresh_footer and "tok/s" in fresh_footer
    assert "cached · saved $" in again_footer and " · $0.00 · " in again_footer
    assert _answer_plain(fresh) == _answer_plain(again)
    check = next(c for c in nb.cells if c.source.startswith("print(again.cached"))
    assert "".join(str(o.get("text", "")) for o in check.outputs) == "True 0.0 True\n"
    cost_text = "".join(
        str(o.get("data", {}).get("text/plain", "")) for o in by_source["%baseten cost"].outputs
    )
    assert "1 call answered from the cache" in cost_text
    (chart,) = by_source["%baseten cost --plot"].outputs
    assert chart["data"]["image/png"].startswith("iVBOR")
    # An nbconvert HTML export shows the chart as an image, at its display width.
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter().from_notebook_node(nb)
    assert 'src="data:image/png;base64,iVBOR' in page
    assert 'width="720"' in page
    _assert_opens_unmodified_in_lab(out)
    _assert_static_export_keeps_code_monospace(out)


def _footer_of(cell: Any) -> str:
    return next(
        str(o["data"]["text/plain"])
        for o in cell.outputs
        if 'class="bm-footer' in str(o.get("data", {}).get("text/html", ""))
    )


def _answer_plain(cell: Any) -> str:
    """A cell's painted answer (reasoning and answer segments, footer left out), as text."""
    return "".join(
        str(o.get("data", {}).get("text/plain", ""))
        for o in cell.outputs
        if "bm-footer" not in str(o.get("data", {}).get("text/html", ""))
    )


def _assert_opens_unmodified_in_lab(path: Path) -> None:
    """What JupyterLab would change on open is already so: nothing marks the notebook modified."""
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
    nbformat.validate(nb)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    assert all(cell.get("id") for cell in nb.cells)
    # Lab writes the connected kernel's spec into the metadata; a different display name
    # ("Python 3" against ipykernel's "Python 3 (ipykernel)") was the change that did it.
    assert nb.metadata.kernelspec == kernelspec_metadata("python3")
    assert nbformat.writes(nb) + "\n" == text  # type: ignore[no-untyped-call]
    for source in ("quickstart.ipynb", "tools_and_structured.ipynb"):
        example = nbformat.read(REPO / "examples" / source, as_version=4)  # type: ignore[no-untyped-call]
        assert example.metadata.kernelspec == kernelspec_metadata("python3"), source


def _assert_static_export_keeps_code_monospace(path: Path) -> None:
    """`jupyter nbconvert --to html`: answer code keeps a monospace font, text cells align left."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(path))  # type: ignore[no-untyped-call]
    answers = re.findall(r'<div class="bm-answer[^"]*">.*?</div>\n?</div>', body, re.S)
    pres = [tag for answer in answers for tag in re.findall(r"<pre[^>]*>", answer)]
    assert pres, "expected code blocks in the exported answers"
    assert all("font-family:" in tag and "monospace" in tag for tag in pres), pres
    cells = [tag for answer in answers for tag in re.findall(r"<td[^>]*>", answer)]
    assert cells and all("text-align:" in tag for tag in cells)


def test_long_fast_stream_is_throttled_and_complete(
    kernel: KernelSession, speed: LocalServer
) -> None:
    """A 20,000-token answer at 3,000 tok/s: at most 400 display messages, at most 50/s, and
    their bytes at most 3x the final outputs' bytes; the final text is the server's answer."""
    speed.set_speed(3000)
    started = time.monotonic()
    result = kernel.execute("%%baseten -m kimi-k2 --no-memory\n/words 20000", timeout=120)
    took = time.monotonic() - started
    assert result.status == "ok", result.outputs
    shown = _display_messages(result)
    display_bytes = sum(m.nbytes for m in shown)
    final_bytes = _outputs_bytes(result.outputs)
    assert len(shown) <= 400, result.counts
    assert display_bytes <= BYTES_MULTIPLE * final_bytes, (display_bytes, final_bytes)
    # The stream takes about 7 s at this speed, so this is a rate, not a wall-clock limit.
    assert len(shown) / took <= MAX_MESSAGES_PER_S, (len(shown), took)
    assert result.count("stream") == 0  # nothing printed beside the display outputs

    speed.set_speed(None)
    # The same prompt, not streamed, through the Python API: the server's whole answer.
    reference = kernel.execute(
        "import json, baseten_magic\n"
        "print(json.dumps(baseten_magic.chat('/words 20000', model='kimi-k2', stream=False)"
        ".content))",
        timeout=60,
    )
    assert reference.status == "ok", reference.outputs
    expected = json.loads(reference.stdout)
    answer = _answer_text(result.outputs)
    assert len(answer.split()) == 20000
    assert answer == expected


def test_interrupt_mid_stream_keeps_the_partial_answer(
    kernel: KernelSession, speed: LocalServer, module_ledger: Path
) -> None:
    speed.set_speed(20)
    msg_id = kernel.start_execute("%%baseten -m kimi-k2 --no-memory\n/words 2000")
    kernel.wait_for(
        msg_id,
        lambda m: (
            m.msg_type in ("display_data", "update_display_data")
            and "bm-answer" in str(m.content.get("data", {}).get("text/html", ""))
        ),
        timeout=30,
    )
    time.sleep(0.5)  # let a few more tokens arrive, so the partial answer has some words
    interrupted_at = time.monotonic()
    kernel.interrupt()
    result = kernel.wait(msg_id, timeout=30)
    stopped_after = time.monotonic() - interrupted_at
    # The full answer would take 100 s; ~2 s means the interrupt ended it.
    assert stopped_after <= 2.5, stopped_after
    assert result.status == "error"
    assert result.error_name == "KeyboardInterrupt"
    partial = _answer_text(result.outputs)
    assert 0 < len(partial.split()) < 2000, partial
    plains = [str(o.get("data", {}).get("text/plain", "")) for o in result.outputs]
    assert any(INTERRUPTED_MARK in p for p in plains), plains

    rows = Ledger(module_ledger).rows()
    assert rows and rows[-1].status == "interrupted", rows[-1:]
    assert rows[-1].model.startswith("moonshotai/")

    speed.set_speed(None)
    after = kernel.execute("%%baseten -m kimi-k2 --no-memory\n/echo ok", timeout=30)
    assert after.status == "ok", after.outputs
    assert _answer_text(after.outputs) == "ok"
    assert Ledger(module_ledger).rows()[-1].status == "ok"


def _leaks(result: ExecResult, *secrets: str) -> list[str]:
    """The types of the IOPub messages whose JSON content contains any of `secrets`."""
    found = []
    for msg in result.messages:
        text = json.dumps(msg.content)
        raw = json.dumps(msg.content, ensure_ascii=False)
        if any(s in text or s in raw for s in secrets):
            found.append(msg.msg_type)
    return found


def test_api_key_never_reaches_iopub(kernel: KernelSession, speed: LocalServer) -> None:
    key = speed.api_key
    assert len(key) >= 16  # a real secret, not a substring of ordinary text

    ok = kernel.execute("%%baseten -m gpt-oss --no-memory\nWhat is a token?", timeout=30)
    assert ok.status == "ok", ok.outputs
    assert _leaks(ok, key) == []

    wrong = "sk-wrong-" + key[::-1]
    kernel.execute(f"%env BASETEN_API_KEY={wrong}")
    try:
        denied = kernel.execute("%%baseten -m gpt-oss --no-memory\nhello", timeout=30)
    finally:
        restored = kernel.execute(f"%env BASETEN_API_KEY={key}")
    assert restored.status == "ok"
    assert denied.status == "error"
    assert "401" in denied.stderr or "401" in json.dumps(denied.outputs), denied.outputs
    assert _leaks(denied, key, wrong, wrong[-12:], key[:12]) == []

    speed.set_speed(20)
    msg_id = kernel.start_execute("%%baseten -m gpt-oss --no-memory\n/words 2000")
    kernel.wait_for(
        msg_id,
        lambda m: "bm-answer" in str(m.content.get("data", {}).get("text/html", "")),
        timeout=30,
    )
    kernel.interrupt()
    stopped = kernel.wait(msg_id, timeout=30)
    assert stopped.error_name == "KeyboardInterrupt"
    assert _leaks(stopped, key, key[:12], key[-12:]) == []


def test_an_http_error_is_said_once_and_stops_run_all(server: LocalServer, tmp_path: Path) -> None:
    from harness.kernel import run_notebook, write_notebook
    from nbclient.exceptions import CellExecutionError

    cells = ["%load_ext baseten_magic", "%%baseten -m acme/no-such-model\nhello", "print('after')"]
    path = write_notebook(tmp_path / "error.ipynb", cells)
    env = {**server_env(server), "BASETEN_MAGIC_LEDGER": str(tmp_path / "ledger.sqlite3")}
    with pytest.raises(CellExecutionError, match="HTTP 404"):
        run_notebook(path, env)  # Run All stops at the failing cell, as papermill would
    executed = run_notebook(path, env, allow_errors=True)
    outputs = executed.cells[1].outputs
    said = [
        text
        for output in outputs
        for text in (
            output.get("text", ""),
            *(str(v) for v in output.get("data", {}).values()),
            output.get("evalue", ""),
        )
        if "does not exist" in text
    ]
    assert len(said) == 1, outputs  # the message is in the error line only
    (error,) = [o for o in outputs if o.output_type in ("error", "stream") and "HTTP 404" in str(o)]
    assert "UsageError" in str(error)
    assert any("the reason is below" in str(o.get("data", {})) for o in outputs)
