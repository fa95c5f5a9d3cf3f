"""The browser harness: JupyterLab runs a notebook in Chromium and the page can be driven."""

from __future__ import annotations

import asyncio

import pytest
from harness.lab import ARTIFACTS, LabSession, playwright_loop_hidden

DETAILS_CELL = (
    "from IPython.display import HTML, display\n"
    "display(HTML(\"<details><summary>Reasoning</summary><p id='inside'>body</p></details>\"))"
)


@pytest.mark.browser
def test_details_toggles_open_on_click(lab: LabSession) -> None:
    lab.open_notebook(
        "details.ipynb",
        [DETAILS_CELL, "import os\nprint(os.environ['HARNESS_MARKER'])"],
        env={"HARNESS_MARKER": "kernel-env"},
    )
    state = lab.run_all()
    assert state["prompts"] == ["[1]:", "[2]:"]
    page = lab.page
    details = page.locator(".jp-OutputArea-output details")
    assert details.evaluate("el => el.open") is False
    assert not page.locator("#inside").is_visible()
    details.locator("summary").click()
    assert details.evaluate("el => el.open") is True
    assert page.locator("#inside").is_visible()
    assert "kernel-env" in page.locator(".jp-OutputArea-output").nth(1).inner_text()
    path = lab.screenshot("harness-details")
    assert path == ARTIFACTS / "harness-details.png"
    assert path.stat().st_size > 1000


@pytest.mark.browser
def test_run_all_reports_a_failing_cell(lab: LabSession) -> None:
    lab.open_notebook("fails.ipynb", ["1/0", "'never runs'"])
    with pytest.raises(AssertionError, match="a cell raised"):
        lab.run_all(timeout=60)
    lab.open_notebook("fails.ipynb", ["1/0", "'never runs'"])
    state = lab.run_all(timeout=60, allow_errors=True)
    assert state["prompts"] == ["[1]:", "[ ]:"]
    assert "ZeroDivisionError" in lab.page.locator(".jp-OutputArea-output").first.inner_text()


@pytest.mark.browser
def test_asyncio_run_still_works_beside_the_browser(lab: LabSession) -> None:
    lab.page.evaluate("() => 1")  # Playwright now marks its loop as running in this thread
    with playwright_loop_hidden():
        assert asyncio.run(asyncio.sleep(0, result="ran")) == "ran"
    assert lab.page.evaluate("() => 2") == 2


@pytest.mark.browser
def test_two_sessions_at_once_share_one_browser(lab: LabSession) -> None:
    lab.open_notebook("first.ipynb", ["'first'"])
    with LabSession(viewport=(800, 600)) as other:
        other.open_notebook("second.ipynb", ["'second'"])
        other.run_all()
        assert other.page.locator(".jp-OutputArea-output").inner_text() == "'second'"
        assert other.page.viewport_size == {"width": 800, "height": 600}
    # The shared browser outlives the second session: the first still works.
    lab.run_all()
    assert lab.page.locator(".jp-OutputArea-output").inner_text() == "'first'"


def test_a_later_test_without_the_browser_can_use_asyncio_run() -> None:
    # Runs after the tests above started the session's `lab`: conftest hides its loop here.
    assert asyncio.run(asyncio.sleep(0, result="ran")) == "ran"
