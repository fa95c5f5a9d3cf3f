"""The panel in JupyterLab 4, in headless Chromium: it renders, streams, and stops."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.lab import ARTIFACTS, LabSession, chromium_available

from baseten_magic.server import LocalServer

pytestmark = pytest.mark.browser


DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "panel.png"
PANEL = ".bm-panel"
# The answer blocks (the reasoning block and the footer carry the class too, not first).
ANSWER = ".bm-column div[class^='bm-answer']"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture(scope="module")
def lab() -> Iterator[LabSession]:
    if not chromium_available():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    # Tall enough that the controls, the prompt and an answer fit in one screenshot.
    with LabSession(viewport=(1280, 1500)) as session:
        yield session


def test_panel_streams_and_stops_in_jupyterlab(
    lab: LabSession, server: LocalServer, tmp_path: Path
) -> None:
    env = {
        "BASETEN_BASE_URL": server.url,
        "BASETEN_API_KEY": server.api_key,
        "BASETEN_MAGIC_LEDGER": str(tmp_path / "ledger.sqlite3"),
    }
    page = lab.open_notebook("panel.ipynb", ["%load_ext baseten_magic\n%baseten panel"], env=env)
    lab.run_all()
    panel = page.locator(PANEL)
    panel.wait_for(timeout=30_000)
    for label in ("Send", "Stop"):
        assert panel.locator("button", has_text=label).first.is_visible()

    # Set the temperature: tick its box, then move the slider with the keyboard.
    temperature = panel.locator(".bm-param-temperature")
    temperature.locator("input[type=checkbox]").check()
    handle = temperature.locator(".noUi-handle")
    handle.focus()
    for _ in range(6):
        handle.press("ArrowLeft")
    page.wait_for_timeout(300)  # the value reaches the kernel as a comm message

    prompt = panel.locator(".bm-prompt textarea")
    prompt.fill("What is the capital of France? Explain briefly.")
    before = server.request_count
    panel.locator(".bm-send").click()
    footer = panel.locator(".bm-column .bm-footer").first
    footer.wait_for(timeout=30_000)
    answer = panel.locator(ANSWER).first
    assert answer.inner_text().strip()
    assert server.request_count == before + 1
    body = server.requests[-1].body
    assert body is not None
    assert body["temperature"] == pytest.approx(0.7)  # 1.0 less six steps of 0.05
    assert "1 call" in panel.locator(".bm-cost").inner_text()

    # A slow second answer, stopped mid-stream: the partial answer stays, marked.
    server.set_speed(25)
    try:
        prompt.fill("Write a short note on rivers.")
        panel.locator(".bm-send").click()
        page.wait_for_function(
            "() => !document.querySelector('.bm-panel .bm-footer')", timeout=10_000
        )
        panel.locator(ANSWER).first.wait_for(timeout=30_000)
        page.wait_for_timeout(1_500)  # a few more words, for the screenshot
        panel.locator(".bm-stop").click()
        mark = panel.get_by_text("interrupted", exact=False).first
        mark.wait_for(timeout=10_000)
    finally:
        server.set_speed(None)
    assert panel.locator(ANSWER).first.inner_text().strip()
    assert "2 calls" in panel.locator(".bm-cost").inner_text()

    lab.screenshot("panel-page")  # the whole page, for looking into failures
    shot = ARTIFACTS / "panel.png"
    page.locator(".jp-Notebook .jp-Cell").first.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_DOC_IMAGES") == "1":  # refresh the README's screenshot on demand
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGE)
