"""Entry point: `python3 -m benchmarks.run [--quick] [--json PATH]`.

Rule: run every benchmark in a fixed order (the cheap, self-contained ones first), print one
readable table per benchmark with its targets, and write everything, with the machine it ran on,
as JSON. A benchmark that fails is recorded as an error and the others still run; the exit
status is non-zero if any failed. A missed target is a finding, never a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import Section, batch, decode, import_cost, loopback, memory, notebook_traffic

__all__ = ["BENCHMARKS", "machine", "main", "markdown_report", "render_section"]

BENCHMARKS: dict[str, Callable[[bool], Section]] = {
    "decode": decode.run,
    "loopback": loopback.run,
    "import_cost": import_cost.run,
    "memory": memory.run,
    "notebook_traffic": notebook_traffic.run,
    "batch": batch.run,
}
RESULTS = Path(__file__).parent / "results"
# A quick run must not overwrite the committed results of the full run.
DEFAULT_JSON = {"full": RESULTS / "latest.json", "quick": RESULTS / "quick.json"}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = -1.0
    packages = {}
    for name in ("httpx", "openai", "ipykernel", "IPython"):
        try:
            packages[name] = str(__import__(name).__version__)
        except (ImportError, AttributeError):
            packages[name] = "missing"
    return {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "cpu": cpu,
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_1m_at_start": load,
        "packages": packages,
        "git": _git_revision(),
    }


def _git_revision() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        )
    except OSError:
        return ""
    return done.stdout.strip()


def render_section(section: Section) -> str:
    """A section as a plain-text table with its targets and notes."""
    header = [str(c) for c in section.columns]
    body = [[str(cell) for cell in row] for row in section.rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    out = [section.title, line(header), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in body]
    for target in section.targets:
        sign = "<=" if target.kind == "max" else ">="
        verdict = "met" if target.met else "NOT MET"
        out.append(f"  target {target.name}: {target.value:.3g} {sign} {target.bound:g} {verdict}")
    out += [f"  note: {note}" for note in section.notes]
    return "\n".join(out)


def markdown_report(report: dict[str, Any]) -> str:
    """A saved JSON report as Markdown tables (for benchmarks/README.md)."""
    info = report["machine"]
    out = [
        f"Mode: {report['mode']}. Machine: {info['nproc']} cores ({info['cpu']}), "
        f"Python {info['python']}, {info['platform']}, load average "
        f"{info['load_average_1m_at_start']:.2f} at start, {info['date']}.",
    ]
    for name, section in report["sections"].items():
        if "error" in section:
            out += ["", f"### {name}", "", f"Failed: {section['error']}"]
            continue
        out += ["", f"### {section['title']}", ""]
        out.append("| " + " | ".join(section["columns"]) + " |")
        out.append("|" + "---|" * len(section["columns"]))
        out += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in section["rows"]]
        if section["targets"]:
            out.append("")
        for target in section["targets"]:
            sign = "≤" if target["kind"] == "max" else "≥"
            verdict = "**met**" if target["met"] else "**not met**"
            out.append(
                f"- {target['name']}: {target['value']:.3g} (target {sign} {target['bound']:g}): "
                f"{verdict}"
            )
        for note in section["notes"]:
            out += ["", f"_{note}_"]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; return the exit status."""
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for CI (~4 min)")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write JSON (default: results/latest.json; --quick: results/quick.json)",
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), help="run only these (repeatable)"
    )
    parser.add_argument(
        "--markdown-from", type=Path, help="print a saved JSON report as Markdown and exit"
    )
    args = parser.parse_args(argv)
    if args.markdown_from is not None:
        print(markdown_report(json.loads(args.markdown_from.read_text())), end="")
        return 0
    report: dict[str, Any] = {"mode": "quick" if args.quick else "full", "machine": machine()}
    sections: dict[str, Any] = {}
    failed = False
    for name, bench in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        print(f"== {name} ...", flush=True)
        try:
            section = bench(args.quick)
        except Exception as exc:
            failed = True
            sections[name] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
            continue
        elapsed = time.perf_counter() - started
        sections[name] = {**section.as_json(), "seconds": elapsed}
        print(render_section(section), flush=True)
        print(f"  ({elapsed:.0f} s)\n", flush=True)
    report["sections"] = sections
    path: Path = args.json or DEFAULT_JSON[report["mode"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"results written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
