"""The response cache for cells (`%%baseten --cache`, `BasetenMagics.cache`), shared with map().

A real InteractiveShell against the local server on loopback; every "sends nothing" is counted
at the server.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils import capture as _capture

import baseten_magic
from baseten_magic.core.pricing import format_usd
from baseten_magic.core.result import ChatResult
from baseten_magic.io.cache import ResponseCache
from baseten_magic.io.ledger import Ledger
from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.server import Fault, LocalServer

capture_output: Callable[..., Any] = _capture.capture_output

PROMPT = "Explain rivers in a few paragraphs."


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "responses.sqlite3"


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def shell(
    server: LocalServer, ledger_file: Path, cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    server.set_speed(None)
    monkeypatch.setenv("BASETEN_BASE_URL", server.url)
    monkeypatch.setenv("BASETEN_API_KEY", server.api_key)
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(ledger_file))
    monkeypatch.setenv("BASETEN_MAGIC_CACHE", str(cache_file))
    for name in ("BASETEN_MAGIC_MODEL", "BASETEN_MAGIC_PRICING", "BASETEN_MAGIC_BUDGET"):
        monkeypatch.delenv(name, raising=False)
    ipython: Any = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "baseten_magic")
    yield ipython
    ipython.run_line_magic("unload_ext", "baseten_magic")
    ipython.config.pop("BasetenMagics", None)
    for name in ("_baseten", "answer", "again", "get_weather"):
        ipython.user_ns.pop(name, None)


def magics_of(shell: Any) -> BasetenMagics:
    found = shell.magics_manager.registry["BasetenMagics"]
    assert isinstance(found, BasetenMagics)
    return found


def run(shell: Any, line: str, cell: str = PROMPT) -> tuple[ChatResult, Any]:
    with capture_output() as captured:
        shell.run_cell_magic("baseten", line, cell)
    result = shell.user_ns["_baseten"]
    assert isinstance(result, ChatResult)
    return result, captured


def final_outputs(captured: Any) -> list[dict[str, str]]:
    """Every output's data as it finally stands (display updates applied), blanks dropped."""
    by_id: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for index, output in enumerate(captured.outputs):
        key = str((output.transient or {}).get("display_id") or f"#{index}")
        if key not in by_id:
            order.append(key)
        by_id[key] = dict(output.data)
    return [by_id[k] for k in order if by_id[k].get("text/plain") or by_id[k].get("text/html")]


def answer_text(captured: Any) -> str:
    """The answer as painted (reasoning block and answer segments; the footer left out).
    Segments' plain parts concatenate exactly, however the live paint cut the answer."""
    outputs = final_outputs(captured)
    assert "bm-footer" in outputs[-1]["text/html"]
    return "".join(o["text/plain"] for o in outputs[:-1])


def footer(captured: Any) -> str:
    return final_outputs(captured)[-1]["text/plain"]


def test_a_hit_sends_nothing_and_paints_the_same_answer(
    shell: Any, server: LocalServer, cache_file: Path
) -> None:
    before = server.request_count
    first, live = run(shell, "--cache --no-memory --reasoning-effort low")
    assert server.request_count - before == 1
    assert first.cached is False and first.cost > 0
    assert "cached · saved" not in footer(live)

    hit, again = run(shell, "--cache --no-memory --reasoning-effort low")
    assert server.request_count - before == 1  # answered from the cache: nothing sent
    assert hit.cached is True
    assert (hit.content, hit.reasoning, hit.model) == (first.content, first.reasoning, first.model)
    assert hit.cost_usd == 0 and hit.status == "ok"
    assert answer_text(again) == answer_text(live)  # reasoning block and answer alike
    html_parts = [o["text/html"] for o in final_outputs(again)]
    assert any("bm-reasoning" in part for part in html_parts)
    assert "<details" in html_parts[0]  # the collapsible block, above the answer
    line = footer(again)
    assert "cached · saved $" in line
    assert first.model in line
    assert len(ResponseCache(cache_file)) == 1


def test_a_miss_stores_the_answer_under_map_s_key(
    shell: Any, server: LocalServer, cache_file: Path
) -> None:
    result, _ = run(shell, "--cache --no-memory", "/echo stored")
    assert result.content == "stored"
    session = magics_of(shell).session
    request = session.last_request
    assert request is not None
    with ResponseCache(cache_file) as cache:
        stored = cache.get(session.cache_key(request, "baseten"))
    assert stored is not None
    assert stored.result.content == "stored"
    assert stored.saved_usd == result.cost


@pytest.mark.parametrize(
    "fault", [Fault("status", status=400), Fault("cut", after_tokens=24)], ids=["status", "cut"]
)
def test_errors_and_cut_answers_are_never_stored(
    shell: Any, server: LocalServer, cache_file: Path, fault: Fault
) -> None:
    server.inject(fault)
    with capture_output(), pytest.raises(UsageError):
        shell.run_cell_magic("baseten", "--cache --no-memory --reasoning-effort low", "/words 40")
    assert shell.user_ns["_baseten"].status == "error"
    assert len(ResponseCache(cache_file)) == 0
    before = server.request_count
    result, _ = run(shell, "--cache --no-memory --reasoning-effort low", "/words 40")
    assert server.request_count - before == 1  # sent again, not served the failure
    assert result.status == "ok" and not result.cached


def test_interrupted_and_failed_results_are_not_stored(shell: Any, cache_file: Path) -> None:
    session = magics_of(shell).session
    run(shell, "--no-memory", "/echo x")
    request = session.last_request
    assert request is not None
    ok = ChatResult(content="x", model="m", cost=Decimal("0.01"))
    for status in ("interrupted", "error"):
        bad = dataclasses.replace(ok, status=status)
        assert session.store_answer(request, "baseten", bad) is False
    assert len(ResponseCache(cache_file)) == 0
    assert session.store_answer(request, "baseten", ok) is True


def test_the_trait_turns_it_on_and_no_cache_overrides_it(
    shell: Any, server: LocalServer, cache_file: Path
) -> None:
    magics = magics_of(shell)
    assert magics.cache is False  # off by default for cells
    before = server.request_count
    run(shell, "--no-memory", "/echo trait")
    run(shell, "--no-memory", "/echo trait")
    assert server.request_count - before == 2  # off: both sent, nothing stored
    assert len(ResponseCache(cache_file)) == 0

    shell.run_line_magic("config", "BasetenMagics.cache = True")
    assert magics.cache is True
    run(shell, "--no-memory", "/echo trait")
    assert server.request_count - before == 3  # a miss, now stored
    hit, captured = run(shell, "--no-memory", "/echo trait")
    assert server.request_count - before == 3
    assert hit.cached and "cached · saved $" in footer(captured)
    sent, captured = run(shell, "--no-memory --no-cache", "/echo trait")
    assert server.request_count - before == 4
    assert not sent.cached and "cached · saved" not in footer(captured)


def test_out_var_of_a_hit_is_a_zero_cost_result_marked_cached(shell: Any) -> None:
    run(shell, "--cache --no-memory -o answer", "/echo kept")
    run(shell, "--cache --no-memory -o again", "/echo kept")
    first, hit = shell.user_ns["answer"], shell.user_ns["again"]
    assert first.cached is False and first.cost_usd > 0
    assert hit.cached is True and hit.cost_usd == 0 and hit.status == "ok"
    assert hit.content == "kept" and hit.usage == first.usage
    assert shell.user_ns["_baseten"] is hit


def test_cost_counts_hits_beside_the_calls_and_the_ledger_has_no_row_for_them(
    shell: Any, ledger_file: Path
) -> None:
    first, _ = run(shell, "--cache --no-memory", "/echo counted")
    run(shell, "--cache --no-memory", "/echo counted")
    run(shell, "--cache --no-memory", "/echo counted")
    session = magics_of(shell).session
    assert len(session.rows) == 1 and len(Ledger(ledger_file).rows()) == 1
    assert session.cache_saved() == (2, 2 * first.cost)
    with capture_output() as captured:
        shell.run_line_magic("baseten", "cost")
    text = captured.outputs[-1].data["text/plain"]
    assert "2 calls answered from the cache" in text
    assert f"saved {format_usd(2 * first.cost)}" in text
    assert "1 call" in text  # the table's total: the one call that was sent
    html = captured.outputs[-1].data["text/html"]
    assert "answered from the cache" in html


def test_a_hit_leaves_the_budget_untouched_and_is_served_at_the_cap(
    shell: Any, server: LocalServer
) -> None:
    magics = magics_of(shell)
    run(shell, "--cache --no-memory", "/echo budget")
    spent = magics.session.budget.spent
    assert spent > 0
    magics.budget_usd = float(spent)  # the cap is reached: a new call is refused
    with capture_output(), pytest.raises(UsageError, match="budget"):
        shell.run_cell_magic("baseten", "--no-cache --no-memory", "/echo budget")
    before = server.request_count
    hit, _ = run(shell, "--cache --no-memory", "/echo budget")
    assert hit.cached and hit.content == "budget"
    assert server.request_count == before
    assert magics.session.budget.spent == spent


def test_a_map_row_answered_before_makes_the_same_cell_a_hit(
    shell: Any, server: LocalServer
) -> None:
    out = baseten_magic.map("/echo {value}", ["shared-a"], model="glm", progress=False)
    assert out["answer"].tolist() == ["shared-a"]
    before = server.request_count
    hit, captured = run(shell, "--cache --no-memory -m glm", "/echo shared-a")
    assert server.request_count == before
    assert hit.cached and hit.content == "shared-a"
    assert "cached · saved $" in footer(captured)


def test_a_cell_answered_before_makes_the_same_map_row_a_hit(
    shell: Any, server: LocalServer
) -> None:
    run(shell, "--cache --no-memory -m glm", "/echo shared-b")
    before = server.request_count
    out = baseten_magic.map("/echo {value}", ["shared-b"], model="glm", progress=False)
    assert server.request_count == before
    assert out.attrs["baseten"]["cached"] == 1
    assert out["answer"].tolist() == ["shared-b"] and out["cost_usd"].tolist() == [0.0]


def test_memory_is_part_of_the_request_and_a_hit_is_remembered(
    shell: Any, server: LocalServer
) -> None:
    before = server.request_count
    run(shell, "--cache", "/echo first")
    run(shell, "--cache", "/echo second")  # its request carries the first exchange
    assert server.request_count - before == 2
    shell.run_line_magic("baseten", "reset")
    run(shell, "--cache", "/echo first")  # the same request as before the reset: a hit
    assert server.request_count - before == 2
    run(shell, "--cache", "/echo second")  # the hit was remembered, so this is a hit too
    assert server.request_count - before == 2
    shell.run_line_magic("baseten", "reset")
    run(shell, "--cache", "/echo second")  # without the first exchange: another request
    assert server.request_count - before == 3


def test_tool_loops_are_never_answered_from_the_cache(shell: Any, server: LocalServer) -> None:
    calls: list[str] = []

    def get_weather(city: str) -> dict[str, Any]:
        """Current weather for a city.

        Args:
            city: the city name.
        """
        calls.append(city)
        return {"city": city, "temperature": 21}

    shell.user_ns["get_weather"] = get_weather
    before = server.request_count
    line = "--cache -m kimi-k2 --no-memory --tools get_weather --run-tools"
    run(shell, line, "Weather in Paris?")
    run(shell, line, "Weather in Paris?")
    assert server.request_count - before == 4  # two rounds each time: the tools ran again
    assert calls == ["Paris", "Paris"]


def test_the_panel_s_send_follows_the_trait(shell: Any, server: LocalServer) -> None:
    from baseten_magic.panel.app import Panel

    magics = magics_of(shell)
    magics.cache = True
    panel = Panel(magics.session)
    try:
        panel.prompt.value = "/echo from the panel"

        async def send() -> list[ChatResult]:
            panel.send()
            return await panel.wait()

        before = server.request_count
        (first,) = asyncio.run(send())
        assert server.request_count - before == 1 and not first.cached
        (hit,) = asyncio.run(send())
        assert server.request_count - before == 1
        assert hit.cached and hit.content == first.content
        surface = panel.columns[0].surface
        assert "cached · saved $" in surface.text
        assert "from the panel" in surface.text
        assert magics.session.cache_saved()[0] == 1
    finally:
        panel.close()


def test_a_cache_that_cannot_be_opened_is_one_line_and_nothing_is_sent(
    shell: Any, server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("BASETEN_MAGIC_CACHE", str(blocker / "responses.sqlite3"))
    before = server.request_count
    with capture_output(), pytest.raises(UsageError) as info:
        shell.run_cell_magic("baseten", "--cache --no-memory", "/echo never")
    message = str(info.value)
    assert "\n" not in message and "BASETEN_MAGIC_CACHE" in message and "--no-cache" in message
    assert server.request_count == before
    result, _ = run(shell, "--no-cache --no-memory", "/echo sent")  # the way out it names
    assert result.content == "sent"


def test_a_json_hit_is_parsed_again(shell: Any, server: LocalServer) -> None:
    first, _ = run(shell, "--cache --no-memory --json", 'Answer as JSON like {"ok": true}.')
    before = server.request_count
    hit, captured = run(shell, "--cache --no-memory --json", 'Answer as JSON like {"ok": true}.')
    assert server.request_count == before
    assert hit.cached and hit.parsed == first.parsed and hit.parsed is not None
    assert "cached · saved $" in footer(captured)


def test_a_hit_in_terminal_ipython_prints_the_answer_and_the_cached_footer(
    shell: Any, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("baseten_magic.notebook.execute.is_terminal", lambda shell: True)
    first, _ = run(shell, "--cache --no-memory --reasoning-effort low", "/words 30")
    before = server.request_count
    with capture_output() as captured:
        shell.run_cell_magic("baseten", "--cache --no-memory --reasoning-effort low", "/words 30")
    assert server.request_count == before
    assert captured.outputs == []
    assert first.content in captured.stdout
    assert "cached · saved $" in captured.stdout


def test_config_shows_the_setting_and_the_file(shell: Any, cache_file: Path) -> None:
    magics_of(shell).cache = True
    with capture_output() as captured:
        shell.run_line_magic("baseten", "config")
    text = captured.stdout + "".join(str(o.data.get("text/plain", "")) for o in captured.outputs)
    line = next(x for x in text.splitlines() if x.startswith("cache "))
    assert "True" in line and str(cache_file) in line and "BASETEN_MAGIC_CACHE" in line


def test_a_cached_result_shows_itself_as_cached(shell: Any) -> None:
    from baseten_magic.render.result import result_bundle

    run(shell, "--cache --no-memory -o answer", "/echo shown")
    run(shell, "--cache --no-memory -o again", "/echo shown")
    sent, hit = result_bundle(shell.user_ns["answer"]), result_bundle(shell.user_ns["again"])
    assert "· cached" in hit["text/plain"] and "· cached" in hit["text/html"]
    assert "· cached" not in sent["text/plain"] and "· cached" not in sent["text/html"]
