"""The spend cap: reserve the worst case before sending, settle after; refused calls send nothing.

Cells, the panel and `chat()` each run against a real LocalServer on loopback, and the server's
request count is what proves that a refused call was never sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from harness.settings import PlainSettings
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils import capture as _capture

import baseten_magic
from baseten_magic.core.budget import (
    Budget,
    budget_from_env,
    estimate_prompt_tokens,
    process_budget,
    worst_case_cost,
)
from baseten_magic.core.catalog import default_catalog
from baseten_magic.core.errors import BudgetExceededError, ConfigurationError, ParameterError
from baseten_magic.core.pricing import Pricing
from baseten_magic.engine.session import Session
from baseten_magic.io.ledger import Ledger
from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.server import LocalServer

capture_output: Callable[..., Any] = _capture.capture_output
GPT_OSS = default_catalog().resolve("gpt-oss")  # $0.10 in, $0.50 out per million


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def env(server: LocalServer, ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BASETEN_BASE_URL", server.url)
    monkeypatch.setenv("BASETEN_API_KEY", server.api_key)
    return ledger_path


@pytest.fixture
def shell(env: Path) -> Iterator[Any]:
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


def cell(shell: Any, line: str, body: str) -> Any:
    with capture_output() as captured:
        shell.run_cell_magic("baseten", line, body)
    return captured


# -- the Budget object ----------------------------------------------------------------------------


def test_reserve_settle_spent_and_the_cap() -> None:
    budget = Budget(Decimal("1.00"))
    first = budget.reserve(Decimal("0.60"))
    assert (budget.spent, budget.held) == (Decimal(0), Decimal("0.60"))
    with pytest.raises(BudgetExceededError, match=r"\$0.60 held by calls in flight"):
        budget.reserve(Decimal("0.50"))  # 0.60 held + 0.50 > 1.00
    budget.settle(first, Decimal("0.25"))
    budget.settle(first, Decimal("0.25"))  # a second settle of one token counts nothing
    assert (budget.spent, budget.held) == (Decimal("0.25"), Decimal(0))
    budget.settle(budget.reserve(Decimal("0.75")), Decimal("0.70"))  # exactly to the cap fits
    assert budget.spent == Decimal("0.95")
    assert budget.used() == Decimal("0.95")
    budget.check(Decimal("0.05"))  # check holds nothing
    assert budget.held == 0
    with pytest.raises(BudgetExceededError) as refused:
        budget.check(Decimal("0.06"))
    message = str(refused.value)
    assert "\n" not in message
    assert "$0.95 is spent" in message
    assert "the $1.00 budget" in message
    assert "could cost up to $0.06" in message
    assert "nothing was sent" in message
    assert "BASETEN_MAGIC_BUDGET" in message


def test_no_cap_still_counts_and_caps_are_validated() -> None:
    budget = Budget()
    budget.settle(budget.reserve(Decimal("1000")), Decimal("2"))
    assert (budget.cap, budget.spent, budget.used()) == (None, Decimal(2), None)
    budget.cap = "3"
    assert budget.used() == Decimal(2) / 3
    with pytest.raises(ParameterError, match="budget_usd must be a number of dollars"):
        budget.cap = -1
    with pytest.raises(ParameterError, match="got 'lots'"):
        Budget("lots")


def test_reservations_are_thread_safe() -> None:
    budget = Budget(Decimal("10"))
    won: list[int] = []

    def worker() -> None:
        for _ in range(200):
            try:
                token = budget.reserve(Decimal("0.01"))
            except BudgetExceededError:
                continue
            won.append(1)
            budget.settle(token, Decimal("0.01"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1000  # exactly the cap's worth of $0.01 calls, never one more
    assert budget.spent == Decimal("10.00")


def test_worst_case_per_token_and_per_call() -> None:
    body = {"model": GPT_OSS.slug, "messages": [{"role": "user", "content": "x" * 400}]}
    prompt = estimate_prompt_tokens(body)
    assert prompt == 3 + 4 + 200  # generous: one token per two characters
    capped = {**body, "max_tokens": 1000}
    expected = (Decimal(prompt) * Decimal("0.10") + 1000 * Decimal("0.50")) / 1_000_000
    assert worst_case_cost(capped, GPT_OSS, Pricing()) == expected
    # No max_tokens: the context left after the prompt is the bound; `n` multiplies it.
    open_ended = worst_case_cost(body, GPT_OSS, Pricing())
    assert open_ended > worst_case_cost({**capped, "max_tokens": 100_000}, GPT_OSS, Pricing())
    assert worst_case_cost({**capped, "n": 3}, GPT_OSS, Pricing()) > 2 * expected
    per_call = Pricing("per_call", Decimal("0.01"))
    assert worst_case_cost(body, GPT_OSS, per_call) == Decimal("0.01")


def test_the_env_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    assert budget_from_env() is None
    monkeypatch.setenv("BASETEN_MAGIC_BUDGET", "2.50")
    assert budget_from_env() == Decimal("2.50")
    monkeypatch.setenv("BASETEN_MAGIC_BUDGET", "two")
    with pytest.raises(ConfigurationError, match="BASETEN_MAGIC_BUDGET must be a number"):
        budget_from_env()


def test_the_session_cap_follows_the_setting_then_the_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = PlainSettings()
    session = Session(settings)
    assert session.budget.cap is None
    monkeypatch.setenv("BASETEN_MAGIC_BUDGET", "4")
    assert session.budget.cap == Decimal(4)
    settings.budget_usd = 0.5  # the setting wins over the environment
    assert session.budget.cap == Decimal("0.5")


# -- nothing is sent: a cell, the panel, chat() ---------------------------------------------


def test_a_cell_over_the_budget_is_refused_before_sending(
    shell: Any, server: LocalServer, env: Path
) -> None:
    magics = magics_of(shell)
    cell(shell, "--max-tokens 200", "/echo first")
    spent = magics.session.budget.spent
    assert spent > 0
    shell.run_line_magic("config", f"BasetenMagics.budget_usd = {float(spent) + 0.00005}")
    before = len(server.requests)
    with pytest.raises(UsageError) as refused:
        cell(shell, "--max-tokens 200", "/echo second")  # could cost up to ~$0.0001
    assert len(server.requests) == before  # nothing was sent
    message = str(refused.value)
    assert "\n" not in message
    assert "budget reached" in message
    assert "%config BasetenMagics.budget_usd = 1" in message
    assert "BASETEN_MAGIC_BUDGET" in message
    assert len(Ledger(env).rows()) == 1  # a refused call was never attempted: no row
    # A small enough call still fits; a raised cap lets the big one through.
    shell.run_line_magic("config", "BasetenMagics.budget_usd = 1.0")
    cell(shell, "--max-tokens 200", "/echo second")
    assert len(server.requests) == before + 1


def test_the_footer_says_so_from_80_percent(shell: Any, server: LocalServer) -> None:
    magics = magics_of(shell)
    captured = cell(shell, "--max-tokens 50", "/echo one")
    assert "budget" not in captured.outputs[-1].data["text/plain"]
    spent = magics.session.budget.spent
    # The next call's worst case fits; its real cost takes the spend past 80% of the cap.
    shell.run_line_magic("config", f"BasetenMagics.budget_usd = {float(spent) * 2.2}")
    captured = cell(shell, "--max-tokens 50", "/echo one")
    footer = captured.outputs[-1].data["text/plain"]
    assert "budget 9" in footer  # "budget 91% used ($… of $…)"
    assert "% used ($" in footer


def test_cost_shows_the_spend_against_the_cap(shell: Any) -> None:
    with capture_output() as captured:
        shell.run_line_magic("baseten", "cost")
    assert (
        "no budget set (%config BasetenMagics.budget_usd = 5"
        in (captured.outputs[-1].data["text/plain"])
    )
    cell(shell, "--max-tokens 50", "/echo hi")
    shell.run_line_magic("config", "BasetenMagics.budget_usd = 2.0")
    with capture_output() as captured:
        shell.run_line_magic("baseten", "cost")
    plain = captured.outputs[-1].data["text/plain"]
    assert plain.startswith("Session spend $0.0000")
    assert "of the $2.00 budget (0%)" in plain
    assert "of the $2.00 budget" in captured.outputs[-1].data["text/html"]


def test_the_budget_trait_is_validated(shell: Any) -> None:
    magics = magics_of(shell)
    from traitlets import TraitError

    with pytest.raises(TraitError, match="budget_usd must be a number of dollars of 0 or more"):
        magics.budget_usd = -2.0
    magics.budget_usd = 3
    assert magics.budget_usd == 3.0


def test_the_panel_refuses_without_sending(shell: Any, server: LocalServer) -> None:
    from baseten_magic.panel.app import Panel

    magics = magics_of(shell)
    magics.budget_usd = 0.0
    panel = Panel(magics.session)
    try:
        panel.prompt.value = "hello"
        before = len(server.requests)

        async def send() -> None:
            panel.send()
            await panel.wait()

        asyncio.run(send())
        assert len(server.requests) == before
        shown = " ".join(str(column.error.value) for column in panel.columns)
        assert "budget reached" in shown
        assert magics.session.rows == []  # nothing to remember
    finally:
        panel.close()


def test_chat_outside_a_notebook_uses_the_process_budget(
    env: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(InteractiveShell, "_instance", None)  # no shell in this process
    budget = process_budget()
    baseline = budget.spent
    monkeypatch.setenv("BASETEN_MAGIC_BUDGET", str(baseline + Decimal("0.00001")))
    before = len(server.requests)
    with pytest.raises(BudgetExceededError, match="BASETEN_MAGIC_BUDGET="):
        baseten_magic.chat("/echo hi", max_tokens=500)
    assert len(server.requests) == before
    monkeypatch.setenv("BASETEN_MAGIC_BUDGET", "5")
    result = baseten_magic.chat("/echo hi", max_tokens=500)
    assert budget.spent == baseline + result.cost
    assert Ledger(env).rows()[-1].session.startswith("api-")


def test_chat_and_achat_in_a_notebook_spend_from_its_session(
    shell: Any, server: LocalServer, env: Path
) -> None:
    session = magics_of(shell).session
    result = baseten_magic.chat("/echo hi", max_tokens=100)
    assert session.budget.spent == result.cost
    assert Ledger(env).rows()[-1].session == session.id  # ledger(session="current") has it
    session.settings.budget_usd = float(result.cost)  # type: ignore[misc]
    before = len(server.requests)
    with pytest.raises(BudgetExceededError):
        asyncio.run(baseten_magic.achat("/echo hi", max_tokens=100))
    assert len(server.requests) == before


def test_the_panel_footer_says_so_too(shell: Any, server: LocalServer) -> None:
    from baseten_magic.panel.app import Panel

    magics = magics_of(shell)
    magics.budget_usd = 1.0
    magics.max_tokens = 50
    magics.session.budget.add(Decimal("0.85"))  # spent earlier, e.g. by chat()
    panel = Panel(magics.session)
    try:
        panel.prompt.value = "hello"

        async def send() -> None:
            panel.send()
            await panel.wait()

        asyncio.run(send())
        html = panel.columns[0].surface.html
        assert 'class="bm-footer' in html
        assert "budget 85% used ($0.85 of $1.00)" in html
    finally:
        panel.close()
