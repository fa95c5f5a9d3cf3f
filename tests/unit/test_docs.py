"""docs/architecture.md cannot drift: the modules it lists are the package's, its names resolve."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "baseten_magic"
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")

MODULE_PATH = re.compile(r"`(baseten_magic/[\w/]+\.py)`")
DOTTED_NAME = re.compile(r"`(baseten_magic(?:\.\w+)+)`")


def _named_paths() -> set[str]:
    return set(MODULE_PATH.findall(ARCHITECTURE))


def test_every_module_named_exists() -> None:
    missing = sorted(path for path in _named_paths() if not (ROOT / path).is_file())
    assert missing == []


def test_every_module_of_the_package_is_named() -> None:
    modules = {path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*.py")}
    assert sorted(modules - _named_paths()) == []


def test_each_module_has_one_line() -> None:
    listed = [
        found.group(1)
        for line in ARCHITECTURE.splitlines()
        if line.startswith("- ") and (found := MODULE_PATH.match(line[2:]))
    ]
    assert len(listed) == len(set(listed))
    assert set(listed) == _named_paths()


@pytest.mark.parametrize("dotted", sorted(set(DOTTED_NAME.findall(ARCHITECTURE))))
def test_every_dotted_name_resolves(dotted: str) -> None:
    parts = dotted.split(".")
    # The longest importable prefix is the module; the rest are attributes inside it.
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            assert hasattr(target, attribute), f"{dotted}: no {attribute!r}"
            target = getattr(target, attribute)
        return
    pytest.fail(f"{dotted}: no module of it imports")
