"""The widget panel, in process: a real InteractiveShell, a real LocalServer on loopback.

Widget callbacks are driven as a front end would (`.value =`, `button.click()`); streaming runs
on a fresh event loop made by `asyncio.run` inside each test (tests are not in a kernel).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.panel.app import LINKED_TRAITS, Panel, find_session, show_panel
from baseten_magic.panel.controls import PanelSettings, model_label, parse_stop
from baseten_magic.panel.surface import WidgetSurface
from baseten_magic.server import LocalServer

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def env(server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    server.set_speed(None)
    ledger = tmp_path / "ledger.sqlite3"
    monkeypatch.setenv("BASETEN_BASE_URL", server.url)
    monkeypatch.setenv("BASETEN_API_KEY", server.api_key)
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(ledger))
    for name in ("BASETEN_MAGIC_MODEL", "BASETEN_MAGIC_PRICING", "BASETEN_MAGIC_PRICES"):
        monkeypatch.delenv(name, raising=False)
    return ledger


@pytest.fixture
def shell() -> Any:
    # Typed loosely: IPython's stubs mark several shell attributes Optional.
    return InteractiveShell.instance()


@pytest.fixture
def magics(env: Path, shell: Any) -> Iterator[BasetenMagics]:
    instance = BasetenMagics(shell=shell)
    yield instance
    if instance in shell.configurables:
        shell.configurables.remove(instance)
    instance.close()


@pytest.fixture
def panel(magics: BasetenMagics) -> Iterator[Panel]:
    made = Panel(magics.session)
    yield made
    made.close()


def run(coro_fn: Callable[[], Any]) -> Any:
    """Run an async test body on a fresh loop (a kernel would already have one running)."""
    return asyncio.run(coro_fn())


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Yield to the loop until `condition()` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def error_line(panel: Panel) -> str:
    return str(panel.message.value)


# -- the widget surface ----------------------------------------------------------------------


def test_widget_surface_appends_children_and_updates_only_one() -> None:
    surface = WidgetSurface()
    first = surface.show({"text/html": "<p>one</p>", "text/plain": "one"})
    second = surface.show({"text/html": "<p>two</p>", "text/plain": "two"})
    children = surface.box.children
    assert (first, second) == (0, 1)
    assert [c.value for c in children] == ["<p>one</p>", "<p>two</p>"]
    assert all(isinstance(c, widgets.HTMLMath) for c in children)

    changes: list[int] = []
    children[0].observe(lambda _c: changes.append(0), names="value")
    children[1].observe(lambda _c: changes.append(1), names="value")
    surface.update(second, {"text/html": "<p>two, more</p>", "text/plain": "two, more"})
    assert changes == [1]
    assert surface.box.children == children  # no child was replaced or resent
    assert surface.text == "one\ntwo, more"


def test_widget_surface_escapes_a_plain_only_bundle() -> None:
    surface = WidgetSurface()
    surface.show({"text/plain": "<img src=x onerror=alert(1)>"})
    assert "<img" not in surface.html
    assert "&lt;img" in surface.html


# -- construction and the public surface -------------------------------------------------------


def test_importing_the_package_does_not_import_ipywidgets() -> None:
    code = (
        "import sys, baseten_magic\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "shell.extension_manager.load_extension('baseten_magic')\n"
        "print('ipywidgets' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_panel_has_the_documented_widgets(panel: Panel) -> None:
    assert isinstance(panel.widget, widgets.VBox)
    assert isinstance(panel.prompt, widgets.Textarea)
    assert panel.send_button.description == "Send"
    assert panel.stop_button.description == "Stop"
    assert panel.stop_button.disabled  # nothing to stop yet
    bundle = panel._repr_mimebundle_()
    assert bundle is not None
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == panel.widget.model_id
    assert panel.controls.advanced_box.titles == ("Advanced",)


def test_panel_finds_the_shells_magics_loading_the_extension(env: Path, shell: Any) -> None:
    shell.extension_manager.unload_extension("baseten_magic")
    assert "BasetenMagics" not in shell.magics_manager.registry
    try:
        made = Panel()
        registered = shell.magics_manager.registry["BasetenMagics"]
        assert made.session is registered.session
        assert find_session() is registered.session
        made.close()
        shown = show_panel(registered.session)
        assert shown.session is registered.session
        shown.close()
    finally:
        shell.extension_manager.unload_extension("baseten_magic")


def test_model_labels_show_context_and_prices(panel: Panel) -> None:
    labels = {value: label for label, value in panel.controls.model.options}
    label = labels["zai-org/GLM-4.7"]
    assert "200k ctx" in label
    assert "$0.60 / $2.20 per M" in label
    info = panel.catalog.resolve("gpt-oss")
    assert model_label(info) == labels[info.slug]


def test_retired_models_are_neither_offered_nor_defaulted(panel: Panel) -> None:
    from datetime import date

    retired = {"deepseek-ai/DeepSeek-V3-0324", "zai-org/GLM-4.6"}  # both retired 2026-05-01
    slugs = {info.slug for info in panel.catalog.offered(date(2026, 12, 1))}
    assert slugs and not slugs & retired
    assert retired <= {info.slug for info in panel.catalog.offered(date(2026, 4, 30))}
    for menu in (panel.controls.model, panel.compare_controls.model):
        assert not {value for _, value in menu.options} & retired
        assert all("retired" not in label for label, _ in menu.options)
    # Model B differs from model A out of the box, and again once Compare is switched on.
    assert panel.compare_controls.model.value != panel.controls.model.value
    panel.compare_controls.model.value = panel.controls.model.value
    panel.compare.value = True
    assert panel.compare_controls.model.value != panel.controls.model.value
    assert panel.compare_controls.model.value not in retired


def test_controls_have_human_labels_and_tooltips_with_the_api_name(panel: Panel) -> None:
    from baseten_magic.panel.controls import LABELS

    controls = panel.controls
    penalty = controls.presence_penalty.enabled
    assert "Presence penalty" in penalty.description
    assert "presence_penalty" not in penalty.description.split(">", 1)[1]  # not in the words
    assert "API: presence_penalty; a number from -2 to 2" in penalty.tooltip
    assert "API: presence_penalty" in controls.presence_penalty.slider.tooltip
    assert controls.top_k.description == "Top-k"
    assert "API: top_k" in controls.top_k.tooltip and "server default 50" in controls.top_k.tooltip
    assert controls.max_tokens.description == "Max tokens"
    assert all(" " not in name and name.islower() for name in LABELS)  # keyed by API name
    labels = [label for label, _ in controls.thinking.options]
    assert labels == ["model default", "on", "off"]
    # Compare sits with the models, before the sampling controls and the prompt.
    assert panel.compare in controls.model_row.children
    assert panel.compare_controls.widget in controls.model_section.children
    order = list(panel.widget.children)
    assert order.index(controls.model_section) < order.index(controls.sampling_section)


def test_answers_carry_the_cells_html_class() -> None:
    surface = WidgetSurface()
    surface.show({"text/html": "<p>one</p>", "text/plain": "one"})
    assert "jp-RenderedHTMLCommon" in surface.slots[0]._dom_classes


def test_the_panel_display_adds_a_line_for_static_exports(panel: Panel) -> None:
    from IPython.utils.capture import capture_output

    from baseten_magic.panel.app import SAVED_TEXT

    with capture_output() as captured:
        panel._ipython_display_()
    widget, saved = (output.data for output in captured.outputs)
    assert "application/vnd.jupyter.widget-view+json" in widget
    assert widget["text/plain"] == SAVED_TEXT
    assert SAVED_TEXT in saved["text/html"]
    assert ".jp-NotebookPanel .bm-panel-saved { display: none; }" in saved["text/html"]
    assert saved["text/plain"] == ""  # text front ends already have the widget's line


def test_parse_stop_accepts_commas_and_newlines() -> None:
    assert parse_stop("END, ###\nStop here\n\n") == ["END", "###", "Stop here"]
    assert parse_stop(" \n , ") is None


# -- settings flow both ways ----------------------------------------------------------------------


def test_traits_show_in_the_panel_at_once(panel: Panel, magics: BasetenMagics) -> None:
    controls = panel.controls
    assert controls.temperature.value is None
    magics.temperature = 0.2
    assert controls.temperature.value == pytest.approx(0.2)
    assert controls.temperature.enabled.value
    magics.model = "glm"
    assert controls.model.value == "zai-org/GLM-4.7"
    magics.params = {"top_k": 40, "stop": ["END"], "logprobs": True}
    assert controls.top_k.value == "40"
    assert controls.stop.value == "END"
    assert controls.advanced.value == "logprobs=true"
    magics.max_tokens = 256
    assert controls.max_tokens.value == "256"
    magics.system = "Be brief."
    assert controls.system.value == "Be brief."
    magics.temperature = None
    assert controls.temperature.value is None
    assert not controls.temperature.enabled.value
    assert error_line(panel) == ""


def test_panel_changes_set_the_traits(panel: Panel, magics: BasetenMagics) -> None:
    controls = panel.controls
    controls.temperature.value = 0.7
    assert magics.temperature == pytest.approx(0.7)
    assert magics.model == "gpt-oss"  # the alias is kept while it names the same model
    controls.top_k.value = "40"
    controls.stop.value = "END, ###"
    controls.advanced.value = 'logprobs=true\n# a comment\n\nuser="analyst"'
    assert magics.params == {
        "top_k": 40,
        "stop": ["END", "###"],
        "logprobs": True,
        "user": "analyst",
    }
    controls.max_tokens.value = "300"
    controls.reasoning_effort.value = "high"
    assert (magics.max_tokens, magics.reasoning_effort) == (300, "high")
    controls.model.value = "zai-org/GLM-4.7"
    assert magics.model == "zai-org/GLM-4.7"
    assert magics.reasoning_effort is None  # GLM has no reasoning_effort: the control reset
    controls.thinking.value = "on"
    assert magics.thinking is True
    controls.temperature.enabled.value = False
    assert magics.temperature is None
    # The magic's cells read these settings.
    assert magics.session.defaults() == {
        "top_k": 40,
        "stop": ["END", "###"],
        "logprobs": True,
        "user": "analyst",
        "max_tokens": 300,
    }


def test_a_second_panel_follows_the_first(magics: BasetenMagics) -> None:
    one, two = Panel(magics.session), Panel(magics.session)
    try:
        one.controls.top_p.value = 0.5
        assert two.controls.top_p.value == pytest.approx(0.5)
    finally:
        one.close()
        two.close()


def test_model_dependent_controls(panel: Panel) -> None:
    controls = panel.controls
    controls.model.value = "openai/gpt-oss-120b"  # reasoning effort yes, thinking always on
    assert not controls.reasoning_effort.disabled
    assert controls.thinking.disabled
    controls.model.value = "zai-org/GLM-4.7"  # opt-in thinking, no reasoning effort
    assert controls.reasoning_effort.disabled
    assert not controls.thinking.disabled
    controls.model.value = "moonshotai/Kimi-K2-Instruct-0905"  # no reasoning at all
    assert controls.reasoning_effort.disabled
    assert controls.thinking.disabled


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("control", "value", "expected"),
    [
        ("max_tokens", "abc", "max_tokens must be an integer"),
        ("max_tokens", "0", "max_tokens must be an integer of at least 1"),
        ("top_k", "-2", "top_k must be"),
        ("seed", "1.5", "seed must be an integer"),
        ("advanced", "tempurature=0.5", "did you mean 'temperature'"),
        ("advanced", "top_k=5", "top_k, which has its own control"),
        ("advanced", "model=glm", "comes from the Model menu"),
        ("advanced", "just words", "Advanced line 1 must be NAME=VALUE"),
        ("advanced", "top_logprobs=3", "top_logprobs needs logprobs=true"),
    ],
)
def test_invalid_values_show_inline_and_nothing_is_sent(
    panel: Panel,
    magics: BasetenMagics,
    server: LocalServer,
    control: str,
    value: str,
    expected: str,
) -> None:
    before = server.request_count
    getattr(panel.controls, control).value = value
    message = error_line(panel)
    assert expected in message
    assert "color: #c62828" in message  # the red line
    assert "Traceback" not in message
    assert magics.max_tokens is None and magics.params == {}  # the traits kept their values
    panel.prompt.value = QUESTION

    async def go() -> None:
        panel.send_button.click()
        assert not panel.streaming

    run(go)
    assert server.request_count == before
    assert expected in error_line(panel)
    assert panel.settings is None
    # Fixing the value clears the line.
    getattr(panel.controls, control).value = ""
    assert error_line(panel) == ""


def test_a_trait_the_model_cannot_take_shows_inline(panel: Panel, magics: BasetenMagics) -> None:
    magics.reasoning_effort = "low"
    assert error_line(panel) == ""
    magics.model = "glm"  # the panel shows the traits as they are, and says what is wrong
    effort = panel.controls.reasoning_effort
    assert effort.value == "low"
    assert not effort.disabled  # so that it can be cleared
    assert "reasoning_effort is not supported by zai-org/GLM-4.7" in error_line(panel)
    effort.value = ""
    assert error_line(panel) == ""
    assert magics.reasoning_effort is None
    assert effort.disabled


def test_empty_prompt_and_no_loop_are_reported(panel: Panel, server: LocalServer) -> None:
    before = server.request_count
    panel.prompt.value = "   "
    run(lambda: _click(panel.send_button))
    assert "the prompt is empty" in error_line(panel)
    panel.prompt.value = QUESTION
    panel.send()  # no running event loop here: outside a kernel or async code
    assert "running event loop" in error_line(panel)
    assert server.request_count == before


async def _click(button: widgets.Button) -> None:
    button.click()


# -- sending, stopping, comparing -------------------------------------------------------------


def test_send_streams_the_answer_with_the_magics_rendering(
    panel: Panel, magics: BasetenMagics, server: LocalServer
) -> None:
    panel.controls.temperature.value = 0.3
    panel.controls.top_k.value = "40"
    panel.controls.stop.value = "NEVER-SEEN"
    panel.controls.system.value = "Be brief."
    panel.prompt.value = QUESTION
    assert "0 calls" in panel.cost.value

    async def go() -> list[Any]:
        panel.send_button.click()
        assert panel.streaming
        assert panel.stop_button.disabled is False and panel.send_button.disabled is True
        return await panel.wait()

    (result,) = run(go)
    assert not panel.streaming
    assert panel.send_button.disabled is False and panel.stop_button.disabled is True
    assert result.status == "ok"
    assert result.content
    surface = panel.columns[0].surface
    html_text = surface.html
    assert 'class="bm-answer' in html_text
    assert 'class="bm-footer' in html_text
    assert "bm-reasoning" in html_text  # gpt-oss reasons: the collapsible block is there
    assert result.content.split()[0] in surface.text
    assert "openai/gpt-oss-120b" in surface.text  # the footer line
    body = server.requests[-1].body
    assert body is not None
    assert body["temperature"] == pytest.approx(0.3)
    assert body["top_k"] == 40
    assert body["stop"] == ["NEVER-SEEN"]
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": QUESTION},
    ]
    assert server.requests[-1].headers.get("x-session-affinity", "").startswith(magics.session.id)
    # The call is in the ledger, the session's history and rows, and the cost line.
    row = magics.session.ledger.rows()[-1]
    assert (row.status, row.source, row.session) == ("ok", "panel", magics.session.id)
    assert magics.session.history[-1] is result
    assert magics.session.rows[-1].source == "panel"
    assert "1 call" in panel.cost.value
    assert "last call" in panel.cost.value


def test_send_hides_reasoning_when_the_setting_says_so(panel: Panel, magics: BasetenMagics) -> None:
    magics.show_reasoning = False
    panel.prompt.value = QUESTION
    (result,) = run(lambda: _send_and_wait(panel))
    assert result.reasoning  # the result keeps it
    assert "bm-reasoning" not in panel.columns[0].surface.html


async def _send_and_wait(panel: Panel) -> list[Any]:
    panel.send()
    return await panel.wait()


def test_stop_keeps_the_partial_answer_marked_interrupted(
    panel: Panel, magics: BasetenMagics, server: LocalServer
) -> None:
    server.set_speed(40)
    panel.prompt.value = "Write a long essay about rivers."
    magics.show_reasoning = True

    async def go() -> list[Any]:
        panel.send_button.click()
        await until(lambda: "Reasoning" in panel.columns[0].surface.text)
        assert panel.streaming
        panel.stop_button.click()
        # Stop takes effect at the task's next await; allow for a slow machine, not a stall.
        async with asyncio.timeout(5):
            return await panel.wait()

    (result,) = run(go)
    assert not panel.streaming
    assert result.status == "interrupted"
    assert result.usage is None or result.usage.completion_tokens < 500
    html_text = panel.columns[0].surface.html
    assert "interrupted" in html_text
    assert "Reasoning" in panel.columns[0].surface.text  # the partial output stays
    assert magics.session.ledger.rows()[-1].status == "interrupted"
    assert magics.session.rows[-1].status == "interrupted"
    assert "1 call" in panel.cost.value


def test_compare_runs_two_answers_side_by_side(
    panel: Panel, magics: BasetenMagics, server: LocalServer
) -> None:
    panel.controls.reasoning_effort.value = "low"  # gpt-oss only: dropped for model B
    panel.compare.value = True
    assert panel.columns[1].widget.layout.display is None
    panel.compare_controls.model.value = "zai-org/GLM-4.7"
    panel.compare_controls.temperature.value = 0.9
    panel.prompt.value = QUESTION
    before = server.request_count

    first, second = run(lambda: _send_and_wait(panel))
    assert server.request_count == before + 2
    assert (first.model, second.model) == ("openai/gpt-oss-120b", "zai-org/GLM-4.7")
    assert first.status == second.status == "ok"
    bodies = {r.body["model"]: r.body for r in server.requests[-2:] if r.body}
    assert bodies["zai-org/GLM-4.7"]["temperature"] == pytest.approx(0.9)
    assert "reasoning_effort" not in bodies["zai-org/GLM-4.7"]
    assert bodies["openai/gpt-oss-120b"]["reasoning_effort"] == "low"
    for column, model in zip(
        panel.columns, ("openai/gpt-oss-120b", "zai-org/GLM-4.7"), strict=True
    ):
        assert column.surface.html.count('class="bm-footer') == 1
        assert model in column.title.value
        assert model in column.surface.text
    assert "2 calls" in panel.cost.value
    assert magics.model == "gpt-oss"  # compare settings never touch the traits
    panel.compare.value = False
    assert panel.columns[1].widget.layout.display == "none"


def test_rerun_last_cell_sends_the_cells_request(
    panel: Panel, magics: BasetenMagics, server: LocalServer
) -> None:
    # It used to re-send the prompt with the panel's settings; now the cell's request as sent.
    run(lambda: _click(panel.rerun_button))
    assert "no %%baseten cell has run" in error_line(panel)
    assert panel.rerun_button.description == "Re-run last cell"

    with capture_output():
        magics.baseten("-m kimi-thinking --temperature 0.4", "Name three rivers.")
    cell_body = server.requests[-1].body
    magics.temperature = 1.5  # the panel's settings now differ from the cell's
    assert panel.controls.model.value == "openai/gpt-oss-120b"

    async def go() -> list[Any]:
        panel.rerun_button.click()
        return await panel.wait()

    (result,) = run(go)
    assert panel.prompt.value == "Name three rivers."
    assert result.status == "ok"
    body = server.requests[-1].body
    assert body == cell_body
    assert body is not None
    assert body["model"] == "moonshotai/Kimi-K2-Thinking"
    assert body["temperature"] == pytest.approx(0.4)
    assert "Kimi K2 Thinking" in panel.columns[0].title.value
    assert magics.session.ledger.rows()[-1].source == "panel"


def test_send_while_streaming_is_refused(panel: Panel, server: LocalServer) -> None:
    server.set_speed(40)
    panel.prompt.value = QUESTION

    async def go() -> int:
        panel.send()
        count = len(panel._tasks)
        panel.send()
        assert "still streaming" in error_line(panel)
        panel.stop()
        await panel.wait()
        return count

    assert run(go) == 1


def test_an_http_error_shows_in_the_column(panel: Panel, magics: BasetenMagics) -> None:
    magics.model = "acme/no-such-model"  # an unknown slug is sent as is; the server says 404
    assert error_line(panel) == ""
    panel.prompt.value = QUESTION
    (result,) = run(lambda: _send_and_wait(panel))
    assert result.status == "error"
    column = panel.columns[0]
    assert "color: #c62828" in column.error.value
    assert "Traceback" not in column.error.value
    assert "⚠ error" in column.surface.text
    # Said once: the red line has the message, the footer only marks the failure.
    assert "HTTP 404" in column.error.value
    assert "HTTP 404" not in column.surface.text
    assert "the reason is below" in column.surface.text
    assert magics.session.ledger.rows()[-1].status == "error"


def test_settings_value_round_trips(panel: Panel) -> None:
    settings = PanelSettings(
        model="zai-org/GLM-4.7",
        system="sys",
        temperature=0.5,
        top_p=0.9,
        max_tokens=100,
        thinking=False,
        params={"top_k": 5, "min_p": 0.1, "stop": ["x"], "logprobs": True},
    )
    panel.controls.load(settings)
    assert panel.controls.read() == settings
    assert set(LINKED_TRAITS) >= {"model", "params", "temperature"}


def test_saved_notebooks_show_a_line_not_the_widget_repr() -> None:
    from baseten_magic.panel.app import SAVED_TEXT, Panel

    panel = Panel.__new__(Panel)
    panel.widget = widgets.VBox()
    bundle = panel._repr_mimebundle_()
    assert bundle["text/plain"] == SAVED_TEXT
    assert "application/vnd.jupyter.widget-view+json" in bundle
