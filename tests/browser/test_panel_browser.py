"""The panel in JupyterLab 4, in headless Chromium: it renders, streams, and stops."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.lab import ARTIFACTS, LabSession, chromium_available

from baseten_magic.server import LocalServer

pytestmark = pytest.mark.browser


DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "panel.png"
PANEL = ".bm-panel"
# The answer blocks (the reasoning block and the footer carry the class too, not first).
ANSWER = ".bm-column div[class^='bm-answer']"


# Layout facts of the panel as the page lays it out: what sticks out past the panel's right
# edge, which labels are cut short (text wider than its box, or a menu's chosen option wider
# than the menu), and whether the prompt box scrolls sideways.
LAYOUT_JS = """
() => {
  const panel = document.querySelector('.bm-panel');
  const edge = panel.getBoundingClientRect().right;
  const name = el => (el.className || el.tagName).toString().slice(0, 60) + ' "' +
    (el.textContent || '').trim().slice(0, 30) + '"';
  const outside = [...panel.querySelectorAll('*')]
    .filter(el => {
      const r = el.getBoundingClientRect();
      return r.width > 0 && r.right > edge + 1;
    })
    .map(name);
  const labels = panel.querySelectorAll(
    '.widget-label, .widget-label-basic, .widget-toggle-button, button, .bm-section-title');
  const cut = [...labels]
    .filter(el => el.offsetParent !== null && el.clientWidth > 0
      && el.scrollWidth > el.clientWidth + 1)
    .map(name);
  const canvas = document.createElement('canvas').getContext('2d');
  for (const select of panel.querySelectorAll('select')) {
    if (select.offsetParent === null || select.selectedIndex < 0) continue;
    canvas.font = getComputedStyle(select).font;
    const text = select.options[select.selectedIndex].text;
    // 28 px: the arrow and the padding beside the text.
    if (canvas.measureText(text).width + 28 > select.clientWidth) cut.push('select "' + text + '"');
  }
  const prompt = panel.querySelector('.bm-prompt textarea');
  return {outside, cut, promptScroll: prompt.scrollWidth, promptClient: prompt.clientWidth,
          promptRight: prompt.getBoundingClientRect().right, edge};
}
"""

# The computed look of the first paragraph of an answer, in the panel or in a cell (outside
# the panel, which itself sits in a cell's output area).
STYLE_JS = """
(inPanel) => {
  const p = [...document.querySelectorAll('div.bm-answer p')]
    .find(el => !!el.closest('.bm-panel') === inPanel);
  if (!p) return null;
  const s = getComputedStyle(p);
  const table = [...document.querySelectorAll('div.bm-answer table')]
    .find(el => !!el.closest('.bm-panel') === inPanel);
  const left = el => el.getBoundingClientRect().left;
  return {font: s.fontFamily, size: s.fontSize, line: s.lineHeight, color: s.color,
          tableIndent: table ? Math.round(left(table) - left(table.closest('div.bm-answer'))) : 0};
}
"""


def assert_laid_out(page: Any, what: str) -> None:
    facts = page.evaluate(LAYOUT_JS)
    assert facts["outside"] == [], f"{what}: past the panel's right edge: {facts['outside']}"
    assert facts["cut"] == [], f"{what}: labels cut short: {facts['cut']}"
    assert facts["promptScroll"] <= facts["promptClient"], f"{what}: the prompt box overflows"
    assert facts["promptRight"] <= facts["edge"] + 1


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
    # A cell answer below the panel, to hold the panel's answers against.
    cells = ["%load_ext baseten_magic\n%baseten panel", "%%baseten\nSay hello."]
    page = lab.open_notebook("panel.ipynb", cells, env=env)
    lab.run_all()
    panel = page.locator(PANEL)
    panel.wait_for(timeout=30_000)
    for label in ("Send", "Stop", "Re-run last cell"):
        assert panel.locator("button", has_text=label).first.is_visible()
    # Human labels; the API name is in the tooltip.
    temperature_box = panel.locator(".bm-param-temperature .bm-label").first
    assert temperature_box.inner_text().strip() == "Temperature"
    penalty = panel.locator(".bm-param-presence-penalty .bm-label").first
    assert penalty.inner_text().strip() == "Presence penalty"
    tip = panel.locator(".bm-param-presence-penalty .bm-label").first.get_attribute("title")
    assert "API: presence_penalty; a number from -2 to 2" in (tip or "")
    assert_laid_out(page, "compare off")
    panel.locator(".bm-compare").click()
    panel.locator(".bm-compare-controls select").wait_for(timeout=5_000)
    model_b = panel.locator(".bm-compare-controls select").first
    assert "retired" not in model_b.evaluate("s => s.options[s.selectedIndex].text")
    assert all("retired" not in text for text in model_b.locator("option").all_inner_texts())
    assert_laid_out(page, "compare on")
    lab.screenshot("panel-compare-page")
    panel.locator(".bm-compare").click()
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.bm-compare-controls')).display === 'none'"
    )

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
    assert "2 calls" in panel.locator(".bm-cost").inner_text()  # the cell's, then this one
    # The panel's answer looks like the cell's: same font, size and line height.
    in_cell = page.evaluate(STYLE_JS, False)
    in_panel = page.evaluate(STYLE_JS, True)
    assert in_cell is not None and in_cell == in_panel

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
    assert "3 calls" in panel.locator(".bm-cost").inner_text()
    assert_laid_out(page, "after answers")

    lab.screenshot("panel-page")  # the whole page, for looking into failures
    shot = ARTIFACTS / "panel.png"
    page.locator(".jp-Notebook .jp-Cell").first.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_DOC_IMAGES") == "1":  # refresh the README's screenshot on demand
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGE)
