"""The notebook's route, timeout and key settings, in a real InteractiveShell against the local
server on loopback: `BasetenMagics.timeout` bounds a stalled cell and a change applies to the
next call, `%baseten config` shows route and timeout, `%baseten key` sets a key from getpass."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils import capture as _capture

from baseten_magic.io.client import AsyncClient, Client
from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.server import Fault, LocalServer

capture_output: Callable[..., Any] = _capture.capture_output

SECRET = "sk-typed-at-the-prompt-0f9e8d7c6b5a"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def shell(server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("BASETEN_BASE_URL", server.url)
    monkeypatch.setenv("BASETEN_API_KEY", server.api_key)
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(tmp_path / "ledger.sqlite3"))
    monkeypatch.delenv("XPAY_KEY", raising=False)
    ipython: Any = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "baseten_magic")
    yield ipython
    ipython.run_line_magic("unload_ext", "baseten_magic")
    ipython.config.pop("BasetenMagics", None)
    ipython.user_ns.pop("_baseten", None)


def magics_of(shell: Any) -> BasetenMagics:
    found = shell.magics_manager.registry["BasetenMagics"]
    assert isinstance(found, BasetenMagics)
    return found


def everything(captured: Any) -> str:
    texts = [captured.stdout, captured.stderr]
    texts += [str(value) for output in captured.outputs for value in output.data.values()]
    return "\n".join(texts)


# -- timeout --------------------------------------------------------------------------------


def test_the_timeout_trait_ends_a_stalled_cell_and_a_change_applies_next_call(
    shell: Any, server: LocalServer
) -> None:
    shell.run_line_magic("config", "BasetenMagics.timeout = 1")
    server.inject(Fault("stall", after_tokens=3, stall_s=6.0))
    started = time.monotonic()
    with capture_output(), pytest.raises(UsageError) as info:
        shell.run_cell_magic("baseten", "--no-memory", "/words 30")
    elapsed = time.monotonic() - started
    assert 0.8 <= elapsed < 3.0  # about the trait's 1 s, not the default 120 s
    message = str(info.value)
    assert "\n" not in message
    assert "1 s" in message and "BasetenMagics.timeout" in message
    assert shell.user_ns["_baseten"].status == "error"

    # A longer timeout set with %config takes effect for the very next call.
    shell.run_line_magic("config", "BasetenMagics.timeout = 5")
    server.inject(Fault("stall", after_tokens=3, stall_s=1.5))
    with capture_output():
        shell.run_cell_magic("baseten", "--no-memory", "/words 30")
    assert shell.user_ns["_baseten"].status == "ok"


def test_the_timeout_feeds_both_clients_and_zero_means_the_environment(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    magics = magics_of(shell)
    session = magics.session
    magics.timeout = 7
    client = session.client
    assert isinstance(client, Client) and client.timeout.read == 7
    async_client = session.async_client()
    assert isinstance(async_client, AsyncClient) and async_client.timeout.read == 7
    magics.timeout = 0  # the environment decides again, on a new client
    monkeypatch.setenv("BASETEN_MAGIC_TIMEOUT", "42")
    assert session.client is not client
    assert isinstance(session.client, Client) and session.client.timeout.read == 42


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_a_bad_timeout_is_refused_with_one_line(shell: Any, bad: float) -> None:
    from traitlets import TraitError

    with pytest.raises(TraitError, match=r"timeout must be a positive number of seconds"):
        magics_of(shell).timeout = bad


# -- route and config -------------------------------------------------------------------------


def test_the_route_trait_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASETEN_MAGIC_ROUTE", "xpay")
    assert BasetenMagics().route == "xpay"
    monkeypatch.delenv("BASETEN_MAGIC_ROUTE")
    magics = BasetenMagics()
    assert magics.route == ""
    assert magics.session.route() == "baseten"


def test_a_bad_route_is_one_usage_error_before_sending(shell: Any, server: LocalServer) -> None:
    before = server.request_count
    with pytest.raises(UsageError, match=r"--route must be baseten or xpay, got 'xp'"):
        shell.run_cell_magic("baseten", "--route xp", "hi")
    from traitlets import TraitError

    with pytest.raises(TraitError, match="route must be baseten or xpay"):
        magics_of(shell).route = "http"
    assert server.request_count == before


def test_xpay_without_its_key_is_one_usage_error_before_sending(shell: Any) -> None:
    with pytest.raises(UsageError, match="XPAY_KEY is not set"):
        shell.run_cell_magic("baseten", "--route xpay", "hi")


def test_config_shows_route_and_timeout(shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with capture_output() as captured:
        shell.run_line_magic("baseten", "config")
    assert "route            baseten" in captured.stdout
    assert "timeout          120 s (default)" in captured.stdout
    shell.run_line_magic("config", "BasetenMagics.timeout = 30")
    shell.run_line_magic("config", 'BasetenMagics.route = "xpay"')
    monkeypatch.setenv("XPAY_KEY", SECRET)
    with capture_output() as captured:
        shell.run_line_magic("baseten", "config")
    assert "timeout          30 s (BasetenMagics.timeout)" in captured.stdout
    assert "route            xpay (https://baseten.mcp.xpay.sh/mcp, XPAY_KEY set" in captured.stdout
    assert SECRET not in captured.stdout


# -- %baseten key -------------------------------------------------------------------------------


def test_key_prompts_with_getpass_and_never_shows_the_key(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts: list[str] = []

    def getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return f"  {SECRET}\n"

    monkeypatch.setattr("getpass.getpass", getpass)
    monkeypatch.delenv("BASETEN_API_KEY")
    with capture_output() as captured:
        shell.run_line_magic("baseten", "key")
    assert os.environ["BASETEN_API_KEY"] == SECRET
    assert prompts and "BASETEN_API_KEY" in prompts[0]
    assert "BASETEN_API_KEY is set for this kernel" in captured.stdout
    with capture_output() as more:
        shell.run_line_magic("baseten", "key --route xpay")
        shell.run_line_magic("baseten", "config")
    assert os.environ["XPAY_KEY"] == SECRET
    assert "XPAY_KEY" in prompts[1]
    shown = everything(captured) + everything(more) + "".join(prompts)
    assert SECRET not in shown
    assert SECRET[:12] not in shown


def test_key_refuses_an_empty_or_unsendable_key_and_keeps_the_old_one(
    shell: Any, monkeypatch: pytest.MonkeyPatch, server: LocalServer
) -> None:
    answers = iter(["", "sk-with\u2019curly-quote-1234", SECRET])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(UsageError, match="no key was entered"):
        shell.run_line_magic("baseten", "key")
    with pytest.raises(UsageError, match="cannot be sent in an HTTP header") as info:
        shell.run_line_magic("baseten", "key")
    assert "curly-quote" not in str(info.value)
    assert os.environ["BASETEN_API_KEY"] == server.api_key  # untouched by both
    with pytest.raises(UsageError, match=r"takes only --route baseten\|xpay"):
        shell.run_line_magic("baseten", "key --route mars")


def test_key_without_an_input_channel_says_what_to_do(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.core.error import StdinNotImplementedError

    def no_stdin(prompt: str = "") -> str:
        raise StdinNotImplementedError("raw_input was called, but this frontend does not support")

    monkeypatch.setattr("getpass.getpass", no_stdin)
    with pytest.raises(UsageError, match=r"set BASETEN_API_KEY in the shell or a \.env file"):
        shell.run_line_magic("baseten", "key")
