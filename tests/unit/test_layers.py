"""The architecture: import-linter's contracts in pyproject.toml, and what `import` must not load.

The contracts (layers by folder, exhaustive; the server on the core alone; only the HTTP client
imports httpx; no cycles between siblings) are run here so a broken layer fails the test suite,
not only `lint-imports` in CI.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "baseten_magic"


def test_import_linter_contracts_hold() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; "
            "sys.exit(lint_imports_command(['--no-cache']))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout, out.stdout[-3000:]


def test_every_top_level_module_is_in_a_layer() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    named |= set(layers.get("exhaustive_ignores", []))
    found = {
        path.stem if path.is_file() else path.name
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__" and path.stem != "__main__")
        or (path.is_dir() and (path / "__init__.py").exists())
    }
    assert found == named


def test_the_package_root_imports_only_pure_modules_eagerly() -> None:
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    eager = [
        node.module
        for node in tree.body  # module level only: lazy and type-only imports are nested
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.startswith("baseten_magic")
    ]
    assert eager
    assert all(
        module.startswith("baseten_magic.core.") or module == "baseten_magic._version"
        for module in eager
    ), eager


def test_importing_the_package_is_light() -> None:
    code = (
        "import sys, baseten_magic; "
        "heavy = ('httpx', 'ipywidgets', 'markdown_it', 'sqlite3', 'pydantic', 'pandas', "
        "'matplotlib', 'dask', 'tqdm'); "
        "print(sorted(m for m in heavy if m in sys.modules)); "
        "baseten_magic.map; baseten_magic.amap; "
        "print(sorted(m for m in ('pandas', 'dask', 'tqdm', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Even naming map() loads none of them: pandas comes with the first call.
    assert out.stdout.strip().splitlines() == ["[]", "[]"]


def test_loading_the_extension_is_light() -> None:
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "shell.run_line_magic('load_ext', 'baseten_magic')\n"
        "heavy = ('httpx', 'ipywidgets', 'markdown_it', 'pydantic', 'pandas', 'matplotlib', "
        "'dask', 'tqdm')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
