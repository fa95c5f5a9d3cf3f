"""The API key never appears in output, exception text, reprs or the ledger file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils import capture as _capture

from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.notebook.subcommands import config_text
from baseten_magic.server import Fault, LocalServer

capture_output: Callable[..., Any] = _capture.capture_output

KEY = "sk-SECRET-5f3a9c1e-DISTINCTIVE-key-value"
WRONG_KEY = "sk-WRONG-77aa99-DISTINCTIVE-other-key"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(api_key=KEY) as running:
        yield running


@pytest.fixture
def shell(server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("BASETEN_BASE_URL", server.url)
    monkeypatch.setenv("BASETEN_API_KEY", KEY)
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(tmp_path / "ledger.sqlite3"))
    ipython: Any = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "baseten_magic")
    yield ipython
    ipython.run_line_magic("unload_ext", "baseten_magic")
    ipython.user_ns.pop("_baseten", None)


def _texts(captured: Any) -> list[str]:
    texts = [captured.stdout, captured.stderr]
    for output in captured.outputs:
        texts.extend(str(value) for value in output.data.values())
        texts.append(repr(output.metadata))
    return texts


def _assert_clean(texts: list[str], *keys: str) -> None:
    for text in texts:
        for key in keys:
            assert key not in text
            assert key[6:30] not in text  # no fragment of it either


def test_key_never_leaks(shell: Any, server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    texts: list[str] = []
    scenarios: list[tuple[str, Fault | None, str | None]] = [
        ("ok", None, None),
        ("401", None, WRONG_KEY),
        ("404", Fault("status", status=404, message=f"no model for Bearer {KEY}"), None),
        ("cut", Fault("cut", after_tokens=24), None),
        ("error event", Fault("error_event", after_tokens=24, message=f"leak {KEY}"), None),
    ]
    for name, fault, key in scenarios:
        monkeypatch.setenv("BASETEN_API_KEY", key or KEY)
        if fault is not None:
            server.inject(fault)
        with capture_output() as captured:
            try:
                shell.run_cell_magic("baseten", "--reasoning-effort low", "/words 40")
            except Exception as exc:  # the failing scenarios raise UsageError
                assert name != "ok"
                texts.extend([str(exc), repr(exc), repr(exc.args)])
            else:
                assert name == "ok"
        texts.extend(_texts(captured))
        result = shell.user_ns["_baseten"]
        texts.extend([repr(result), str(result.error), str(result)])
    monkeypatch.setenv("BASETEN_API_KEY", KEY)
    magics = shell.magics_manager.registry["BasetenMagics"]
    assert isinstance(magics, BasetenMagics)
    with capture_output() as captured:
        shell.run_line_magic("baseten", "config")
        shell.run_line_magic("baseten", "cost")
    texts.extend(_texts(captured))
    texts.extend(
        [
            repr(magics),
            repr(magics.session),
            repr(magics.session.client),
            repr(magics.session.conversation),
            config_text(magics.session),
        ]
    )
    texts.extend(repr(row) for row in magics.session.rows)
    ledger_path = Path(magics.session.ledger.path)
    for path in (ledger_path, ledger_path.with_name(ledger_path.name + "-wal")):
        if path.exists():  # WAL mode: recent rows may still sit in the -wal file
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    assert [r.status for r in magics.session.rows] == ["ok", "error", "error", "error", "error"]
    _assert_clean(texts, KEY, WRONG_KEY)
