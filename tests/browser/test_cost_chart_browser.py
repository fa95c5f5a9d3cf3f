"""`%baseten cost --plot` in JupyterLab 4, in headless Chromium: the chart is an image on the
page, sharp (drawn at twice its shown width), and still there once the notebook is saved and
reopened untrusted. The screenshot `artifacts/cost-chart-lab.png` is taken here."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from harness import server_env
from harness.lab import ARTIFACTS, LabSession

from baseten_magic.server import LocalServer

pytestmark = pytest.mark.browser

DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "cost-chart.png"

CHART = ".jp-Notebook .jp-CodeCell:last-child .jp-OutputArea-output img"
CELLS = [
    "%load_ext baseten_magic\n%config BasetenMagics.budget_usd = 0.004",
    "%%baseten -m gpt-oss --max-tokens 400\nWhat is a rolling mean?",
    "%%baseten -m glm --max-tokens 400\nAnd an exponentially weighted one?",
    "%%baseten -m kimi --max-tokens 400\nWhich should I use for noisy sensor data?",
    "%%baseten -m gpt-oss --max-tokens 400\nShow it in pandas.",
    "%baseten cost --plot",
]


def _chart_shown(lab: LabSession) -> dict[str, Any]:
    image = lab.page.locator(CHART)
    image.wait_for(timeout=30_000)
    image.evaluate("img => img.decode()")
    found: dict[str, Any] = image.evaluate(
        "img => ({src: img.src.slice(0, 22), natural: img.naturalWidth,"
        " shown: img.getBoundingClientRect().width})"
    )
    return found


def test_the_cost_chart_shows_and_survives_a_reopen(
    lab: LabSession, session_server: LocalServer
) -> None:
    name = "cost-chart.ipynb"
    page = lab.open_notebook(name, CELLS, env=server_env(session_server))
    lab.run_all(timeout=120)
    shown = _chart_shown(lab)
    assert shown["src"] == "data:image/png;base64,"
    assert shown["natural"] == 1440
    assert 600 <= shown["shown"] <= 720  # the width metadata, shrunk only to fit the page

    page.keyboard.press("Escape")
    page.evaluate("() => document.activeElement?.blur()")
    # Cosmetic only: no cell toolbar over the picture.
    page.add_style_tag(content=".jp-cell-toolbar { visibility: hidden !important; }")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "cost-chart-lab.png"
    page.locator(".jp-Notebook .jp-CodeCell:last-child").screenshot(path=str(shot))
    assert shot.stat().st_size > 15_000
    if os.environ.get("UPDATE_DOC_IMAGES") == "1":  # refresh the README's picture on demand
        shutil.copyfile(shot, DOCS_IMAGE)

    # Saved, then opened as a copy from elsewhere (untrusted): a PNG still shows.
    lab.command("docmanager:save")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000
    )
    saved: dict[str, Any] = lab.api("GET", f"/api/contents/{name}?content=1")
    notebook = saved["content"]
    (output,) = notebook["cells"][-1]["outputs"]
    assert output["data"]["image/png"]
    assert output["metadata"] == {"image/png": {"width": 720}}
    shared = "cost-chart-shared.ipynb"
    notebook["metadata"]["shared_by"] = "someone else"  # the signature no longer fits
    (lab.root / shared).write_text(json.dumps(notebook), encoding="utf-8")
    page.goto(f"{lab.url}/lab/tree/{shared}?reset&token={lab.token}")
    page.wait_for_function(
        "(path) => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " return !!w && !!w.context && w.context.path === path; }",
        arg=shared,
        timeout=90_000,
    )
    assert _chart_shown(lab)["natural"] == 1440
