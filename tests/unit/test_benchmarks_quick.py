"""The benchmark suite runs end to end in quick mode and reports every section.

No timing assertions: the figures are the suite's business; this checks that it runs, that each
section has a table and its targets, and that the JSON records the machine it ran on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("decode", "loopback", "import_cost", "memory", "notebook_traffic", "batch")


@pytest.mark.kernel
@pytest.mark.timeout(400)
def test_quick_run_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=390,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    assert report["machine"]["nproc"] >= 1
    assert report["machine"]["python"].startswith("3.")
    sections = report["sections"]
    assert set(sections) == set(SECTIONS)
    for name in SECTIONS:
        section = sections[name]
        assert "error" not in section, section.get("error")
        assert section["rows"], f"{name} has an empty table"
        assert all(len(row) == len(section["columns"]) for row in section["rows"])
        for target in section["targets"]:
            assert isinstance(target["met"], bool)
    # Every section's headline figure is present (values are not judged here).
    decode = sections["decode"]["data"]["layouts"]["1-4 KB reads"]
    assert {"openai_over_ours", "ours_over_floor"} <= set(decode)
    assert decode["ours_us_per_chunk"] > 0
    assert set(sections["loopback"]["data"]["clients"]) == {"baseten_magic", "openai", "raw httpx"}
    assert sections["import_cost"]["data"]["ipywidgets_loaded"] in (True, False)
    assert sections["memory"]["data"]["surfaces"]
    runs = sections["notebook_traffic"]["data"]["runs"]
    assert {(r["client"], r["tokens"]) for r in runs} >= {
        ("baseten_magic", 1_000),
        ("baseten_magic", 5_000),
        ("naive", 1_000),
    }
    batch = sections["batch"]["data"]["results"]
    assert batch["baseten_magic, rpm=600 given"]["failed"] == 0
    assert sections["batch"]["data"]["cached_ms_per_1000"] > 0
    assert "target" in done.stdout


def test_table_renders_targets_and_notes() -> None:
    from benchmarks import Section, Target
    from benchmarks.run import render_section

    section = Section(
        name="x",
        title="Title",
        columns=("what", "value"),
        rows=(("a", 1), ("longer label", 22)),
        targets=(Target("ratio", 2.0, 1.2, "max"), Target("speedup", 12.0, 10.0, "min")),
        notes=("a note",),
    )
    text = render_section(section)
    lines = text.splitlines()
    assert lines[0] == "Title"
    assert lines[1].startswith("what        ")
    assert "ratio: 2 <= 1.2 NOT MET" in text
    assert "speedup: 12 >= 10 met" in text
    assert "note: a note" in text
    assert section.as_json()["targets"][0]["met"] is False
