"""The layering of docs/architecture.md, checked by parsing every module's imports with `ast`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "baseten_magic"

PURE = {"result", "errors", "sse", "stream", "params", "catalog", "pricing", "settings", "retry"}
PURE |= {"_version", "jsonable"}
IO = {"client", "cost_ledger"}
# Third-party packages each layer may use (the standard library is always allowed).
ALLOWED_THIRD_PARTY = {
    1: set(),
    2: {"httpx"},
    3: {"markdown_it", "mdit_py_plugins", "pygments", "IPython"},
    4: {"IPython", "traitlets", "ipywidgets", "markdown_it", "pydantic", "nbclient", "nbformat"},
    5: set(),
}


def layer_of(module: str) -> int:
    """Layer number of a module given as a dotted path inside the package (e.g. `render.bundle`)."""
    top = module.split(".", maxsplit=1)[0]
    if top in PURE:
        return 1
    if top in IO:
        return 2
    if top == "render":
        return 3
    if top == "server":
        return 5
    return 4


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        found.append((".".join(parts) or "__init__", path))
    return found


def imports_of(name: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module, is_internal) pairs; internal names are relative to the package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    if name == "__init__":
        package_parts = []
    out: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                internal = alias.name.startswith("baseten_magic")
                target = alias.name.removeprefix("baseten_magic").lstrip(".")
                out.append((target if internal else alias.name, internal))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
                if not node.module:
                    out.extend((f"{target}.{a.name}".lstrip("."), True) for a in node.names)
                else:
                    out.append((target, True))
            elif node.module and node.module.startswith("baseten_magic"):
                out.append((node.module.removeprefix("baseten_magic").lstrip("."), True))
            elif node.module:
                out.append((node.module, False))
    return out


LAYERED = [(name, path) for name, path in modules() if name != "__init__"]


@pytest.mark.parametrize(("name", "path"), LAYERED, ids=[name for name, _ in LAYERED])
def test_imports_respect_the_layers(name: str, path: Path) -> None:
    layer = layer_of(name)
    for target, internal in imports_of(name, path):
        if internal:
            if not target:
                continue
            target_layer = layer_of(target)
            if layer == 5:
                assert target_layer in (1, 5), f"server module {name} imports {target}"
            elif target_layer == 5:
                # Adapters may start the local server (`%baseten local`, the demo runner).
                assert layer == 4, f"{name} (layer {layer}) imports the server"
            else:
                assert target_layer <= layer, f"{name} (layer {layer}) imports {target}"
        else:
            top = target.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            assert top in ALLOWED_THIRD_PARTY[layer], f"{name} (layer {layer}) imports {top}"


def test_the_package_root_imports_only_pure_modules_eagerly() -> None:
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    eager = [
        node.module
        for node in tree.body  # module level only: lazy and type-only imports are nested
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    ]
    assert eager
    assert all(layer_of(module) == 1 for module in eager), eager


def test_only_the_client_imports_httpx() -> None:
    users = [
        name
        for name, path in modules()
        if any(t.split(".")[0] == "httpx" for t, internal in imports_of(name, path) if not internal)
    ]
    assert users == ["client"]


def test_importing_the_package_is_light() -> None:
    code = (
        "import sys, baseten_magic; "
        "print(sorted(m for m in ('httpx', 'ipywidgets', 'markdown_it', 'sqlite3') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_loading_the_extension_is_light() -> None:
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "shell.run_line_magic('load_ext', 'baseten_magic')\n"
        "print(sorted(m for m in ('httpx', 'ipywidgets', 'markdown_it') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
