"""The widget panel: tweak parameters, send a prompt, watch the answer stream, stop it.

Rule: the panel never blocks the kernel. Send starts tasks on the kernel's running event loop
(widget callbacks run on it); there are no threads for HTTP, no nested loops. Stop cancels those
tasks: `ChatCall` logs a cancelled call as `interrupted` and keeps its partial result. The
panel is handed a `Session` (the magics' one, found in the shell when none is given): its
controls and the session's settings (the `BasetenMagics` traits) are linked both ways; each call
starts, is shown and is remembered through the session exactly as a cell's is, and is painted
with the same `Painter` and bundles as the magic, onto a `WidgetSurface`. ipywidgets is imported
here (and in `controls`, `surface`) only, so the package does not load it until a panel is made.
Send follows the session's `cache` setting as a cell does: a stored answer is painted with
"cached" in its footer and nothing is sent; an `ok` answer is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import ipywidgets as widgets
from traitlets import HasTraits

from baseten_magic.core.catalog import Catalog
from baseten_magic.core.errors import BasetenError, ConfigurationError, ParameterError
from baseten_magic.core.pricing import format_usd
from baseten_magic.core.result import ChatResult
from baseten_magic.core.settings import error_line
from baseten_magic.engine.call import CallContext, ChatCall, PreparedRequest
from baseten_magic.engine.session import Session, SessionOwner, cached_notes
from baseten_magic.panel.controls import CompareControls, PanelSettings, SettingsControls
from baseten_magic.panel.surface import WidgetSurface
from baseten_magic.render.painter import Painter

__all__ = ["Panel", "find_session", "saved_bundle", "show_panel"]

#: The settings (the BasetenMagics traits) the panel's controls stand for.
LINKED_TRAITS = (
    "model",
    "system",
    "temperature",
    "top_p",
    "max_tokens",
    "reasoning_effort",
    "thinking",
    "params",
)
_ERROR_STYLE = "color: #c62828; font-size: 0.9em;"
_COST_STYLE = "color: #555; font-size: 0.85em;"
# The footer's error mark when the column's red line below it says why (said once, there).
_SEE_BELOW = "the call failed; the reason is below"

# The panel's own style sheet, shipped in an HTML widget (widget HTML is not sanitized, and
# only this fixed text goes there). Answers get the cells' look: each slot carries JupyterLab's
# `jp-RenderedHTMLCommon` class (fonts, table rules, code blocks), and what the widget CSS
# sets for one-line controls (28 px line height, 13 px font, margins) is undone inside them;
# tables sit at the left, as in an output area (JupyterLab centres them elsewhere).
_PANEL_CSS = """<style>
.bm-panel { gap: 2px; }
.bm-panel .bm-title { font-weight: 600; font-size: var(--jp-ui-font-size2, 15px); }
.bm-panel .bm-section { border-top: 1px solid var(--jp-border-color2, #e0e0e0);
  padding: 6px 0 2px 0; }
.bm-panel .bm-section-title { font-weight: 600; color: var(--jp-ui-font-color1, #333);
  font-size: var(--jp-ui-font-size1, 13px); line-height: 1.6; }
.bm-panel .bm-hint { color: var(--jp-ui-font-color2, #666); font-size: 12px; line-height: 1.5; }
.bm-panel .bm-slot { margin: 0; font-size: var(--jp-content-font-size1, 14px);
  font-family: var(--jp-content-font-family, system-ui, sans-serif);
  color: var(--jp-content-font-color1, rgba(0, 0, 0, 0.87)); }
.bm-panel .bm-slot > .widget-html-content { line-height: var(--jp-content-line-height, 1.6);
  font-size: inherit; font-family: inherit; color: inherit; overflow-x: auto; }
.bm-panel .bm-slot.jp-RenderedHTMLCommon { padding-right: 0; }
.bm-panel .bm-slot table { margin-left: 0; margin-right: 0; }
</style>"""

# What a saved notebook shows in a static export (nbconvert), where a widget cannot render:
# JupyterLab shows the widget's own text/plain there instead, so the line hides itself inside
# a notebook panel and shows only outside one.
_SAVED_HTML = (
    "<style>.jp-NotebookPanel .bm-panel-saved { display: none; }</style>"
    '<div class="bm-panel-saved" style="color: #555; font-style: italic;">{text}</div>'
)


def _error_html(message: str) -> str:
    text = html.escape(message, quote=False)
    return f'<div class="bm-panel-error" style="{_ERROR_STYLE}">{text}</div>'


def _registered_session(shell: Any) -> Session | None:
    """The session of the magics registered on `shell` (the loaded extension's), if any."""
    for magics in shell.magics_manager.registry.values():
        if isinstance(magics, SessionOwner) and isinstance(magics.session, Session):
            return magics.session
    return None


def find_session() -> Session:
    """This shell's session (the one `%load_ext baseten_magic` made), loading it if needed."""
    from IPython.core.interactiveshell import InteractiveShell

    if not InteractiveShell.initialized():
        raise ConfigurationError(
            "Panel() needs a running IPython shell, got none; use it in a notebook, "
            "or pass Panel(session=...) with a baseten_magic Session"
        )
    shell: Any = InteractiveShell.instance()
    found = _registered_session(shell)
    if found is None:
        shell.extension_manager.load_extension("baseten_magic")
        found = _registered_session(shell)
    if found is None:
        raise ConfigurationError(
            "expected %load_ext baseten_magic to register the magics, got none; "
            "run %load_ext baseten_magic and try again"
        )
    return found


def _trait_holder(session: Session) -> HasTraits:
    """The object holding the session's settings as traits, which the controls link to."""
    holder = session.settings
    if not isinstance(holder, HasTraits):
        raise ConfigurationError(
            f"the panel links its controls to settings held as traits, got "
            f"{type(holder).__name__}; pass the session of %load_ext baseten_magic "
            "(Panel() finds it)"
        )
    return holder


class _Column:
    """One answer column: a title, the streamed answer (a WidgetSurface) and an error line."""

    def __init__(self) -> None:
        self.title = widgets.HTML("")
        self.surface = WidgetSurface(widgets.VBox(layout=widgets.Layout(width="100%")))
        self.error = widgets.HTML("")
        self.widget = widgets.VBox(
            [self.title, self.surface.box, self.error],
            layout=widgets.Layout(flex="1 1 0", min_width="0", padding="0 6px"),
        )

    def reset(self, title: str) -> None:
        self.title.value = title
        self.error.value = ""
        self.surface.clear()


#: The panel's plain-text form: widget state is not saved with the notebook.
SAVED_TEXT = "Baseten panel (a live widget: run this cell in a running kernel to use it)"


def saved_bundle() -> dict[str, str]:
    """The output beside the widget that a static export shows (hidden inside JupyterLab)."""
    return {"text/html": _SAVED_HTML.replace("{text}", html.escape(SAVED_TEXT)), "text/plain": ""}


class Panel:
    """The interactive panel; `Panel()` finds this shell's session (loading the extension)."""

    def __init__(self, session: Session | None = None, *, catalog: Catalog | None = None):
        self.session = session if session is not None else find_session()
        self._traits = _trait_holder(self.session)
        # A catalog refreshed by `%baseten models --refresh` lives on the session.
        self.catalog = catalog or self.session.catalog
        self._tasks: list[asyncio.Task[ChatResult | None]] = []
        self._syncing = False
        self._last_cost: Decimal | None = None

        self.controls = SettingsControls(self.catalog)
        self.compare_controls = CompareControls(self.catalog)
        self.compare = widgets.ToggleButton(
            value=False,
            description="Compare",
            icon="columns",
            tooltip="Answer with a second model side by side",
            layout=widgets.Layout(width="auto", flex="0 0 auto"),
        )
        self.compare_controls.widget.layout.display = "none"
        # Compare is about models: its switch sits beside the menu, model B right below.
        self.controls.model_row.children = (*self.controls.model_row.children, self.compare)
        self.controls.model_section.children = (
            *self.controls.model_section.children,
            self.compare_controls.widget,
        )
        self.prompt = widgets.Textarea(
            value="",
            placeholder="Ask something…  (Send runs it with the settings above)",
            # "auto", not "100%": the widget's margins would push a 100% box past the edge.
            layout=widgets.Layout(width="auto", height="6em"),
        )
        self.send_button = widgets.Button(
            description="Send", button_style="primary", icon="paper-plane"
        )
        self.stop_button = widgets.Button(
            description="Stop", button_style="danger", icon="stop", disabled=True
        )
        self.rerun_button = widgets.Button(
            description="Re-run last cell",
            icon="redo",
            tooltip="Send the last %%baseten cell's request again, as the cell sent it (its "
            "model, options and conversation); the answer shows here",
            layout=widgets.Layout(width="auto"),
        )
        self.message = widgets.HTML("")
        self.cost = widgets.HTML("", layout=widgets.Layout(margin="0 0 0 auto"))
        self.columns = (_Column(), _Column())
        self.columns[1].widget.layout.display = "none"
        self.output = widgets.HBox(
            [column.widget for column in self.columns], layout=widgets.Layout(width="100%")
        )
        actions = widgets.HBox(
            [self.send_button, self.stop_button, self.rerun_button, self.cost],
            layout=widgets.Layout(width="100%", align_items="center"),
        )
        prompt_section = widgets.VBox(
            [widgets.HTML('<div class="bm-section-title">Prompt</div>'), self.prompt, actions],
            layout=widgets.Layout(width="100%"),
        )
        self.output_section = widgets.VBox(
            [widgets.HTML('<div class="bm-section-title">Answer</div>'), self.output],
            layout=widgets.Layout(width="100%"),
        )
        self.widget = widgets.VBox(
            [
                widgets.HTML(_PANEL_CSS + '<div class="bm-title">Baseten</div>'),
                self.controls.model_section,
                self.controls.sampling_section,
                prompt_section,
                self.message,
                self.output_section,
            ],
            layout=widgets.Layout(width="100%"),
        )
        for section in (prompt_section, self.output_section):
            section.add_class("bm-section")
        # Stable class names: the page's own hooks for styling and browser tests.
        self.widget.add_class("bm-panel")
        for widget, name in (
            (self.prompt, "bm-prompt"),
            (self.send_button, "bm-send"),
            (self.stop_button, "bm-stop"),
            (self.rerun_button, "bm-rerun"),
            (self.compare, "bm-compare"),
            (self.cost, "bm-cost"),
        ):
            widget.add_class(name)
        for column in self.columns:
            column.widget.add_class("bm-column")

        self.controls.load(self._settings_from_traits())
        self._check_controls()
        self.controls.observe(self._controls_changed)
        self._traits.observe(self._traits_changed, names=list(LINKED_TRAITS))
        self.compare.observe(self._compare_changed, names="value")
        self.send_button.on_click(lambda _button: self.send())
        self.stop_button.on_click(lambda _button: self.stop())
        self.rerun_button.on_click(lambda _button: self.rerun_last())
        self._show_cost()

    # -- display ------------------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)  # type: ignore[no-untyped-call]
        # A saved notebook keeps the widget state (nbclient, papermill), so nbconvert picks
        # the widget view over any fallback in its bundle and, without the widget JavaScript,
        # exports nothing: a second output carries the readable line.
        display(saved_bundle(), raw=True)  # type: ignore[no-untyped-call]

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        # What a saved notebook (or a front end without widgets) shows instead of the widget.
        bundle["text/plain"] = SAVED_TEXT
        return bundle

    def close(self) -> None:
        """Stop streaming, unlink from the session's settings and close every widget."""
        self.stop()
        with contextlib.suppress(ValueError):
            self._traits.unobserve(self._traits_changed, names=list(LINKED_TRAITS))
        _close_tree(self.widget)

    # -- settings, both ways ----------------------------------------------------------------------

    def _settings_from_traits(self) -> PanelSettings:
        s = self.session.settings
        return PanelSettings(
            model=s.model,
            system=s.system,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            reasoning_effort=s.reasoning_effort,
            thinking=s.thinking,
            params=dict(s.params),
        )

    @contextlib.contextmanager
    def _sync(self) -> Iterator[None]:
        # Guards against echo: a change made by one side must not bounce back from the other.
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _traits_changed(self, change: Mapping[str, Any]) -> None:
        if self._syncing:
            return
        with self._sync():
            self.controls.load(self._settings_from_traits())
        self._check_controls()

    def _controls_changed(self, change: Mapping[str, Any]) -> None:
        if self._syncing:
            return
        settings = self._check_controls()
        if settings is None:
            return
        with self._sync():
            self._push(settings)

    def _push(self, settings: PanelSettings) -> None:
        """Set the session's settings from valid controls (only those that differ)."""
        m = self._traits
        wanted: dict[str, Any] = {
            "model": settings.model,
            "system": settings.system,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
            "reasoning_effort": settings.reasoning_effort,
            "thinking": settings.thinking,
            "params": dict(settings.params),
        }
        if self._same_model(self.session.settings.model, settings.model):
            del wanted["model"]  # keep the user's alias (e.g. "gpt-oss") when it names the same
        with m.hold_trait_notifications():
            for name, value in wanted.items():
                if getattr(m, name) != value:
                    setattr(m, name, value)

    def _same_model(self, a: str, b: str) -> bool:
        try:
            return self.catalog.resolve(a).slug == self.catalog.resolve(b).slug
        except ParameterError:
            return a == b

    def _check_controls(self) -> PanelSettings | None:
        """Read the controls; an invalid value shows in the red line and returns None."""
        try:
            settings = self.controls.read()
        except ParameterError as exc:
            self.message.value = _error_html(error_line(exc))
            return None
        self.message.value = ""
        return settings

    def _compare_changed(self, change: Mapping[str, Any]) -> None:
        on = bool(change["new"])
        if on:
            self.compare_controls.differ_from(str(self.controls.model.value))
        self.compare_controls.widget.layout.display = None if on else "none"
        self.columns[1].widget.layout.display = None if on else "none"

    @property
    def settings(self) -> PanelSettings | None:
        """The settings the controls describe now, or None while a value is invalid."""
        return self._check_controls()

    # -- running ----------------------------------------------------------------------------------

    @property
    def streaming(self) -> bool:
        """True while an answer is streaming."""
        return any(not task.done() for task in self._tasks)

    def _prepare(self, prompt: str) -> list[tuple[PanelSettings, PreparedRequest]] | None:
        settings = self._check_controls()
        if settings is None:
            return None
        plans = [settings]
        if self.compare.value:
            plans.append(self.compare_controls.apply(settings))
        stream = self.session.settings.stream
        prepared = []
        for index, plan in enumerate(plans):
            try:
                prepared.append((plan, plan.prepare(prompt, stream=stream, catalog=self.catalog)))
            except ParameterError as exc:
                where = "Model B: " if index else ""
                self.message.value = _error_html(where + error_line(exc))
                return None
        return prepared

    def send(self) -> None:
        """Send the prompt with the panel's settings; returns at once while the answer streams."""
        if self.streaming:
            self.message.value = _error_html(
                "an answer is still streaming; press Stop or wait for it, then send again"
            )
            return
        prompt = str(self.prompt.value)
        if not prompt.strip():
            self.message.value = _error_html("the prompt is empty; type a prompt, then Send")
            return
        plans = self._prepare(prompt)
        if plans is None:
            return  # the red line says why; nothing was sent
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.message.value = _error_html(
                "the panel streams on a running event loop, found none; use it in a Jupyter "
                "kernel, or call send() from async code"
            )
            return
        compare = len(plans) > 1
        self._tasks = []
        for index, (plan, request) in enumerate(plans):
            column = self.columns[index]
            title = f"{'AB'[index]} · {plan.model}"
            column.reset(f"<small><b>{html.escape(title)}</b></small>" if compare else "")
            self._tasks.append(loop.create_task(self._run(column, request)))
        self._set_streaming(True)
        for task in self._tasks:
            task.add_done_callback(self._task_done)

    def stop(self) -> None:
        """Cancel the streaming answer(s); the partial answer stays, marked interrupted."""
        for task in self._tasks:
            if not task.done():
                task.cancel()

    @property
    def results(self) -> list[ChatResult]:
        """The results of the last Send that have finished, in column order (A, then B)."""
        found = []
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is None:
                result = task.result()
                if result is not None:
                    found.append(result)
        return found

    async def wait(self) -> list[ChatResult]:
        """Wait for the running answer(s) to finish; returns the results of the last Send."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
            self._task_done(tasks[-1])
        return self.results

    def rerun_last(self) -> None:
        """Send the last `%%baseten` cell's request again, as the cell sent it."""
        request = self.session.last_request
        if request is None:
            self.message.value = _error_html(
                "no %%baseten cell has run in this session yet; run one, or type a prompt"
            )
            return
        if self.streaming:
            self.message.value = _error_html(
                "an answer is still streaming; press Stop or wait for it, then re-run"
            )
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.message.value = _error_html(
                "the panel streams on a running event loop, found none; use it in a Jupyter "
                "kernel, or call rerun_last() from async code"
            )
            return
        # The cell's model, options and conversation, not the panel's: the prompt box shows
        # what is asked, the column title says whose settings answer.
        self.message.value = ""
        self.prompt.value = self.session.last_prompt
        self.compare.value = False
        column = self.columns[0]
        title = f"Last cell's request · {request.model.display_name or request.model.slug}"
        column.reset(f"<small><b>{html.escape(title)}</b></small>")
        self._tasks = [loop.create_task(self._run(column, request))]
        self._set_streaming(True)
        self._tasks[0].add_done_callback(self._task_done)

    def _set_streaming(self, on: bool) -> None:
        self.send_button.disabled = on
        self.rerun_button.disabled = on
        self.stop_button.disabled = not on

    def _task_done(self, _task: asyncio.Task[ChatResult | None]) -> None:
        if not self.streaming:
            self._set_streaming(False)
            self._show_cost()

    async def _run(self, column: _Column, request: PreparedRequest) -> ChatResult | None:
        """Stream one answer into `column`; never raises (errors show in the column)."""
        session = self.session
        interval = session.settings.paint_interval
        painter = Painter(column.surface, interval=interval)
        try:
            # Inside a try: a ledger that cannot be opened, or a bad route, is a red line here,
            # not a task that dies unseen.
            context = session.context_for("panel")
        except Exception as exc:
            column.error.value = _error_html(error_line(exc))
            return None
        if session.cache_enabled:  # the `cache` setting: a stored answer is shown, not bought
            hit = self._from_cache(column, painter, request, context)
            if hit is not None:
                return hit
        call = ChatCall(request, context, on_delta=session.on_delta(painter.add))
        ticker = asyncio.get_running_loop().create_task(_tick(painter, interval))
        try:
            # The settings' route: on xpay the answer arrives whole, painted at once.
            async with session.async_client(context.route) as client:
                await call.arun(client)
        except asyncio.CancelledError:
            # Our own Stop: the call logged itself as interrupted; end this task quietly.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except BasetenError as exc:
            column.error.value = _error_html(error_line(exc))
        except Exception as exc:  # the panel shows failures; a traceback would say no more
            column.error.value = _error_html(f"{type(exc).__name__}: {error_line(exc)}")
        finally:
            ticker.cancel()
        result = call.result
        if result is not None:
            shown = session.shown(result)
            if column.error.value and shown.status == "error":
                shown = dataclasses.replace(shown, error=_SEE_BELOW)  # said once, below
            painter.finish(
                shown,
                pricing_mode=context.billing.mode,
                notes=session.footer_notes(),  # the budget, from 80% of the cap
            )
            session.remember(result, context)
            self._last_cost = result.cost
            if session.cache_enabled:
                self._store(column, request, context, result)
        return result

    # -- the response cache (the `cache` setting) ------------------------------------------------

    def _from_cache(
        self, column: _Column, painter: Painter, request: PreparedRequest, context: CallContext
    ) -> ChatResult | None:
        """Paint and remember the stored answer to `request`; None on a miss (or a cache that
        cannot be read, said in the column's red line: the call is then sent as usual)."""
        session = self.session
        try:
            hit = session.cached_answer(request, context.route)
        except BasetenError as exc:
            column.error.value = _error_html(error_line(exc))
            return None
        if hit is None:
            return None
        painter.finish(
            session.shown(hit.result),
            pricing_mode=context.billing.mode,
            notes=[*cached_notes(hit.saved_usd), *session.footer_notes()],
        )
        session.remember(hit.result, context, saved=hit.saved_usd)
        self._last_cost = hit.result.cost
        return hit.result

    def _store(
        self, column: _Column, request: PreparedRequest, context: CallContext, result: ChatResult
    ) -> None:
        try:
            self.session.store_answer(request, context.route, result)
        except BasetenError as exc:
            column.error.value = _error_html(error_line(exc))

    # -- cost -------------------------------------------------------------------------------------

    def session_cost(self) -> tuple[int, Decimal]:
        """This session's call count and total cost (cells and panel calls alike)."""
        return self.session.cost()

    def _show_cost(self) -> None:
        calls, total = self.session_cost()
        parts = [f"Session: {format_usd(total)} over {calls} call{'s' if calls != 1 else ''}"]
        if self._last_cost is not None:
            parts.append(f"last call: {format_usd(self._last_cost)}")
        self.cost.value = (
            f'<div class="bm-panel-cost" style="{_COST_STYLE}">'
            f"{html.escape(' · '.join(parts))}</div>"
        )


async def _tick(painter: Painter, interval: float) -> None:
    """Repaint while no delta arrives, so a throttled tail is never left behind."""
    while True:
        await asyncio.sleep(interval)
        painter.tick()


def _close_tree(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def show_panel(session: Session | None = None) -> Panel:
    """Display a new panel for `session` (or this shell's) and return it."""
    from IPython.display import display

    panel = Panel(session)
    display(panel)  # type: ignore[no-untyped-call]
    return panel
