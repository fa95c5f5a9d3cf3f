"""The panel's parameter controls, and the settings value they read to and load from.

Rule: a control the user has not set means "server default" and sends nothing. Reading the
controls either returns a complete `PanelSettings` that `prepare_request` accepts, or raises
`ParameterError` with the same one-line message the magic's `--param` would give; nothing here
sends a request or touches the session's settings (the panel links the two).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import ipywidgets as widgets

from baseten_magic.core.catalog import Catalog, ModelInfo
from baseten_magic.core.errors import ParameterError
from baseten_magic.core.params import PARAMETERS, parse_assignment, validate_params
from baseten_magic.engine.call import PreparedRequest, prepare_request

__all__ = [
    "OWN_CONTROLS",
    "CompareControls",
    "OptionalSlider",
    "PanelSettings",
    "SettingsControls",
    "model_label",
    "parse_stop",
]

# Request parameters kept in the `params` trait that have a control of their own; every other
# `params` entry is shown in the Advanced box as a NAME=VALUE line.
OWN_CONTROLS = (
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "seed",
    "stop",
)
# Parameters that are traits of their own (or set by the call itself): not in the Advanced box.
_DEDICATED = ("temperature", "top_p", "max_tokens", "reasoning_effort")
_SET_BY_CALL = {"model": "the Model menu", "messages": "the prompt box", "stream": "the panel"}
_EFFORTS = ("low", "medium", "high")
# Labels sit in a fixed column so the controls line up; wide enough for "Reasoning effort".
_DESCRIPTION_STYLE = {"description_width": "120px"}
_FULL = {"width": "100%"}
#: The words a control is labelled with; its tooltip carries the API name and range.
LABELS = {
    "temperature": "Temperature",
    "top_p": "Top-p",
    "min_p": "Min-p",
    "presence_penalty": "Presence penalty",
    "frequency_penalty": "Frequency penalty",
    "repetition_penalty": "Repetition penalty",
    "top_k": "Top-k",
    "max_tokens": "Max tokens",
    "seed": "Seed",
    "stop": "Stop sequences",
    "reasoning_effort": "Reasoning effort",
}


def tooltip(name: str, unset: str = "empty or unchecked: the server's default") -> str:
    """A control's tooltip: what it does, then the API parameter, its range and its default."""
    spec = PARAMETERS.get(name)
    if spec is None:
        return ""
    accepted = "" if spec.constraint == spec.help else f"; {spec.constraint}"
    default = f"; server default {spec.default}" if spec.default else ""
    return f"{spec.help} (API: {name}{accepted}{default}; {unset})"


@dataclass(frozen=True)
class PanelSettings:
    """What the controls say: the same fields as the session's settings, None meaning unset."""

    model: str
    system: str = ""
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    thinking: bool | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def request_params(self) -> dict[str, Any]:
        """The request parameters these settings send (dedicated fields win over `params`)."""
        merged: dict[str, Any] = dict(self.params)
        for name in _DEDICATED:
            value = getattr(self, name)
            if value is not None:
                merged[name] = value
        return merged

    def messages(self, prompt: str) -> list[dict[str, str]]:
        """The chat messages for one prompt: the system prompt (if any), then the prompt."""
        messages = [{"role": "system", "content": self.system}] if self.system.strip() else []
        messages.append({"role": "user", "content": prompt})
        return messages

    def prepare(
        self, prompt: str, *, stream: bool = True, catalog: Catalog | None = None
    ) -> PreparedRequest:
        """The validated request for `prompt`; raises ParameterError and sends nothing."""
        return prepare_request(
            self.messages(prompt),
            model=self.model,
            stream=stream,
            thinking=self.thinking,
            params=self.request_params(),
            catalog=catalog,
        )


def model_label(info: ModelInfo) -> str:
    """A model's menu label: name, context length and price per million tokens in / out."""
    parts = [info.display_name or info.slug]
    if info.context_length:
        parts.append(f"{round(info.context_length / 1000)}k ctx")
    if info.input_price is not None and info.output_price is not None:
        parts.append(f"{_price(info.input_price)} / {_price(info.output_price)} per M")
    else:
        parts.append("price unknown")
    if info.is_retired():
        parts.append("retired")
    return " · ".join(parts)


def _price(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01'))}" if value >= Decimal("0.01") else f"${value}"


def parse_stop(text: str) -> list[str] | None:
    """Stop sequences from text separated by commas or newlines; None when there are none."""
    items = [item.strip() for item in re.split(r"[,\n]", text)]
    found = [item for item in items if item]
    return found or None


def _parse_value(text: str) -> Any:
    """A typed-in value as `--param` reads it: JSON when it parses, else the raw string."""
    return parse_assignment(f"value={text}")[1]


class OptionalSlider:
    """A slider with a checkbox beside it: unchecked means "server default" (value None)."""

    def __init__(
        self,
        name: str,
        *,
        minimum: float,
        maximum: float,
        step: float,
        default: float,
        label: str | None = None,
        css_name: str | None = None,
    ) -> None:
        self.name = name
        hint = tooltip(name, "unchecked: the server's default")
        words = html.escape(label or LABELS.get(name, name))
        self.enabled = widgets.Checkbox(
            value=False,
            # The checkbox shows its description as its hover text, not the tooltip: the
            # label's own span carries the tooltip (the innermost title is the one shown).
            description=f'<span class="bm-label" title="{html.escape(hint)}">{words}</span>',
            description_allow_html=True,
            indent=False,
            tooltip=hint,
            # Wide enough for "Repetition penalty"; never shrunk by the slider beside it.
            layout=widgets.Layout(width="150px", flex="0 0 auto"),
        )
        self.slider = widgets.FloatSlider(
            value=default,
            min=minimum,
            max=maximum,
            step=step,
            disabled=True,
            continuous_update=False,
            readout_format=".2f",
            tooltip=hint,
            layout=widgets.Layout(flex="1 1 auto", min_width="120px", width="auto"),
        )
        self.default = default
        self.enabled.observe(self._toggle, names="value")
        self.widget = widgets.HBox(
            [self.enabled, self.slider], layout=widgets.Layout(width="100%", min_width="0")
        )
        self.widget.add_class("bm-param-" + (css_name or name).replace("_", "-"))

    def _toggle(self, change: Mapping[str, Any]) -> None:
        self.slider.disabled = not change["new"]

    @property
    def value(self) -> float | None:
        """The slider's value when checked, else None."""
        return float(self.slider.value) if self.enabled.value else None

    @value.setter
    def value(self, value: float | None) -> None:
        if value is None:
            self.enabled.value = False
            return
        self.slider.value = value
        self.enabled.value = True

    def observe(self, callback: Callable[[Any], None]) -> None:
        """Call `callback` whenever the checkbox or the slider changes."""
        self.enabled.observe(callback, names="value")
        self.slider.observe(callback, names="value")


def _text(name: str, placeholder: str = "server default") -> Any:
    box = widgets.Text(
        value="",
        description=LABELS.get(name, name),
        placeholder=placeholder,
        tooltip=tooltip(name),
        continuous_update=False,
        style={"description_width": "80px"},
        layout=widgets.Layout(flex="1 1 0", min_width="0", width="auto"),
    )
    box.add_class("bm-param-" + name.replace("_", "-"))
    return box


def _section(title: str, *children: Any, css: str) -> Any:
    """One titled group of controls (model & reasoning, sampling, ...)."""
    heading = widgets.HTML(f'<div class="bm-section-title">{title}</div>')
    box = widgets.VBox([heading, *children], layout=widgets.Layout(width="100%"))
    box.add_class("bm-section")
    box.add_class(css)
    return box


class SettingsControls:
    """Every parameter control of the panel; `read()` them into settings, `load()` them back."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.model = widgets.Dropdown(
            options=[(model_label(info), info.slug) for info in catalog.offered()],
            description="Model",
            tooltip="The model that answers (API: model); retired models are not offered.",
            style=_DESCRIPTION_STYLE,
            layout=widgets.Layout(flex="1 1 auto", width="auto", min_width="0", max_width="640px"),
        )
        self.reasoning_effort = widgets.Dropdown(
            options=[("server default", ""), *((e, e) for e in _EFFORTS)],
            value="",
            description="Reasoning effort",
            tooltip=tooltip("reasoning_effort"),
            style=_DESCRIPTION_STYLE,
            layout=widgets.Layout(width="290px", flex="0 0 auto"),
        )
        self.thinking = widgets.ToggleButtons(
            options=[("model default", ""), ("on", "on"), ("off", "off")],
            value="",
            tooltips=[
                "The model's own default (API: chat_template_args.enable_thinking unset)",
                "Reasoning on, on models where it is optional",
                "Reasoning off, on models where it is optional",
            ],
            # Sized to the longest label so none is cut short ("model default").
            style={"button_width": "auto"},
            layout=widgets.Layout(width="auto", flex="0 0 auto"),
        )
        self.thinking.add_class("bm-thinking")
        self.temperature = OptionalSlider(
            "temperature", minimum=0.0, maximum=4.0, step=0.05, default=1.0
        )
        self.top_p = OptionalSlider("top_p", minimum=0.01, maximum=1.0, step=0.01, default=1.0)
        self.min_p = OptionalSlider("min_p", minimum=0.0, maximum=1.0, step=0.01, default=0.0)
        self.presence_penalty = OptionalSlider(
            "presence_penalty", minimum=-2.0, maximum=2.0, step=0.05, default=0.0
        )
        self.frequency_penalty = OptionalSlider(
            "frequency_penalty", minimum=-2.0, maximum=2.0, step=0.05, default=0.0
        )
        self.repetition_penalty = OptionalSlider(
            "repetition_penalty", minimum=0.05, maximum=2.0, step=0.05, default=1.0
        )
        self.top_k = _text("top_k")
        self.max_tokens = _text("max_tokens")
        self.seed = _text("seed", placeholder="random")
        self.stop = widgets.Textarea(
            value="",
            description="Stop sequences",
            placeholder="comma or newline separated",
            tooltip="Up to 32 stop sequences (API: stop); for one containing a comma use "
            'stop=["a, b"] under Advanced.',
            continuous_update=False,
            style=_DESCRIPTION_STYLE,
            layout=widgets.Layout(width="auto", height="2.6em"),
        )
        self.system = widgets.Textarea(
            value="",
            description="System prompt",
            placeholder="none",
            tooltip="Sent first, before the prompt (a message with role system).",
            continuous_update=False,
            style=_DESCRIPTION_STYLE,
            layout=widgets.Layout(width="auto", height="3.6em"),
        )
        self.advanced = widgets.Textarea(
            value="",
            placeholder="NAME=VALUE, one per line (VALUE is JSON if it parses), e.g.\n"
            'logprobs=true\nresponse_format={"type": "json_object"}',
            continuous_update=False,
            layout=widgets.Layout(width="auto", height="7em"),
        )
        self.advanced_box = widgets.Accordion(
            children=[
                widgets.VBox(
                    [
                        widgets.HTML(
                            "<small>Any of the other request parameters, validated like "
                            "<code>--param</code>; <code>%baseten help params</code> lists "
                            "them.</small>"
                        ),
                        self.advanced,
                    ],
                    layout=widgets.Layout(width="100%"),
                )
            ],
            titles=("Advanced",),
            layout=widgets.Layout(width="auto"),  # "100%" plus its margins would stick out
        )
        self.sliders = (
            self.temperature,
            self.top_p,
            self.min_p,
            self.presence_penalty,
            self.frequency_penalty,
            self.repetition_penalty,
        )
        self.model.observe(self._model_changed, names="value")
        self.reasoning_effort.observe(self._refresh_enabled, names="value")
        self.thinking.observe(self._refresh_enabled, names="value")
        self._model_changed({"new": self.model.value})
        thinking_label = widgets.Label(
            "Thinking", layout=widgets.Layout(margin="0 6px 0 24px", flex="0 0 auto")
        )
        # The model row is left to the panel, which puts the Compare switch beside the menu.
        self.model_row = widgets.HBox([self.model], layout=widgets.Layout(width="100%"))
        self.reasoning = widgets.HBox(
            # A label beside the buttons: the widget's own description would wrap.
            [self.reasoning_effort, thinking_label, self.thinking],
            layout=widgets.Layout(width="100%", flex_flow="row wrap", align_items="center"),
        )
        self.model_section = _section(
            "Model &amp; reasoning", self.model_row, self.reasoning, css="bm-models"
        )
        sliders = widgets.GridBox(
            [s.widget for s in self.sliders],
            layout=widgets.Layout(
                width="100%",
                # Column by column: temperature, top-p, min-p | the three penalties.
                grid_template_columns="repeat(2, minmax(0, 1fr))",
                grid_template_rows="repeat(3, auto)",
                grid_auto_flow="column",
                grid_gap="0 24px",
            ),
        )
        numbers = widgets.HBox(
            [self.top_k, self.max_tokens, self.seed],
            layout=widgets.Layout(width="100%", grid_gap="0 12px"),
        )
        self.sampling_section = _section(
            "Sampling",
            sliders,
            numbers,
            self.stop,
            self.system,
            self.advanced_box,
            css="bm-sampling",
        )
        self.widget = widgets.VBox(
            [self.model_section, self.sampling_section], layout=widgets.Layout(width="100%")
        )

    # -- model-dependent controls -------------------------------------------------------------

    def model_info(self) -> ModelInfo | None:
        """The catalog entry of the selected model (None for a name the catalog rejects)."""
        try:
            return self.catalog.resolve(str(self.model.value or ""))
        except ParameterError:
            return None

    def _abilities(self) -> tuple[bool, bool]:
        """Whether the selected model takes reasoning_effort, and a thinking switch."""
        info = self.model_info()
        # Unknown models: their abilities are unknown, so let the server decide.
        effort = info is None or not info.known or info.supports_reasoning_effort
        thinking = info is None or info.can_toggle_thinking
        return effort, thinking

    def _model_changed(self, change: Mapping[str, Any]) -> None:
        effort, thinking = self._abilities()
        # Picking a model in the menu drops the options it cannot take.
        if not effort:
            self.reasoning_effort.value = ""
        if not thinking:
            self.thinking.value = ""
        self._refresh_enabled()

    def _refresh_enabled(self, change: Mapping[str, Any] | None = None) -> None:
        effort, thinking = self._abilities()
        # A value the model cannot take (loaded from the traits) stays editable so it can be
        # cleared; read() reports it meanwhile.
        self.reasoning_effort.disabled = not effort and self.reasoning_effort.value == ""
        self.thinking.disabled = not thinking and self.thinking.value == ""

    def _select_model(self, name: str) -> None:
        """Select `name` (slug or alias), adding it to the menu if the catalog lacks it."""
        try:
            slug = self.catalog.resolve(name).slug
        except ParameterError:
            slug = name  # shown as is; read() reports the catalog's error
        options = list(self.model.options)
        if slug not in [value for _, value in options]:
            self.model.options = [*options, (slug, slug)]
        self.model.value = slug

    # -- reading and loading --------------------------------------------------------------------

    def read(self) -> PanelSettings:
        """The settings the controls describe; raises ParameterError on any invalid value."""
        params: dict[str, Any] = {}
        for slider in self.sliders[2:]:
            if slider.value is not None:
                params[slider.name] = slider.value
        for name, box in (("top_k", self.top_k), ("seed", self.seed)):
            text = str(box.value).strip()
            if text:
                params[name] = _parse_value(text)
        stop = parse_stop(str(self.stop.value))
        if stop is not None:
            params["stop"] = stop
        params.update(self._read_advanced(set(params)))
        max_tokens_text = str(self.max_tokens.value).strip()
        raw_max = _parse_value(max_tokens_text) if max_tokens_text else None
        checked = validate_params(
            {
                **params,
                "max_tokens": raw_max,
                "temperature": self.temperature.value,
                "top_p": self.top_p.value,
            }
        )
        effort = str(self.reasoning_effort.value) or None
        thinking = {"on": True, "off": False}.get(str(self.thinking.value))
        settings = PanelSettings(
            model=str(self.model.value or ""),
            system=str(self.system.value),
            temperature=checked.get("temperature"),
            top_p=checked.get("top_p"),
            max_tokens=checked.get("max_tokens"),
            reasoning_effort=effort,
            thinking=thinking,
            params={name: checked[name] for name in checked if name not in _DEDICATED},
        )
        # The whole request, exactly as it would be sent: catches model-level conflicts too.
        settings.prepare("", catalog=self.catalog)
        return settings

    def _read_advanced(self, taken: set[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for number, line in enumerate(str(self.advanced.value).splitlines(), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                name, value = parse_assignment(text)
            except ParameterError:
                raise ParameterError(
                    f"Advanced line {number} must be NAME=VALUE, got {text!r}; "
                    "write e.g. logprobs=true"
                ) from None
            if name in _SET_BY_CALL:
                raise ParameterError(
                    f"Advanced line {number} sets {name}, which comes from "
                    f"{_SET_BY_CALL[name]}; remove the line"
                )
            if name in _DEDICATED or name in taken or name in OWN_CONTROLS:
                raise ParameterError(
                    f"Advanced line {number} sets {name}, which has its own control above; "
                    "set it there and remove the line"
                )
            if name in found:
                raise ParameterError(
                    f"Advanced sets {name} twice (line {number}); keep one line per parameter"
                )
            found[name] = value
        return found

    def load(self, settings: PanelSettings) -> None:
        """Show `settings` in the controls (no validation: read() reports problems)."""
        self._select_model(settings.model)
        self.system.value = settings.system
        self.temperature.value = settings.temperature
        self.top_p.value = settings.top_p
        self.max_tokens.value = "" if settings.max_tokens is None else str(settings.max_tokens)
        effort = settings.reasoning_effort or ""
        if effort and effort not in _EFFORTS:
            effort = ""
        self.reasoning_effort.value = effort
        self.thinking.value = {True: "on", False: "off"}.get(settings.thinking, "")  # type: ignore[arg-type]
        self.load_params(settings.params)

    def load_params(self, params: Mapping[str, Any]) -> None:
        """Show a `params` mapping: own controls get theirs, the rest go to Advanced."""
        rest = dict(params)
        for slider in self.sliders[2:]:
            value = rest.pop(slider.name, None)
            slider.value = value if isinstance(value, int | float) else None
        for name, box in (("top_k", self.top_k), ("seed", self.seed)):
            value = rest.pop(name, None)
            box.value = "" if value is None else json.dumps(value)
        stop = rest.pop("stop", None)
        if isinstance(stop, str):
            stop = [stop]
        if isinstance(stop, list) and all(isinstance(s, str) and "," not in s for s in stop):
            self.stop.value = "\n".join(stop)
        else:
            self.stop.value = ""
            if stop is not None:
                rest["stop"] = stop
        self.advanced.value = "\n".join(
            f"{name}={json.dumps(value, ensure_ascii=False)}"
            for name, value in rest.items()
            if value is not None
        )

    def observe(self, callback: Callable[[Any], None]) -> None:
        """Call `callback` whenever any control changes."""
        for slider in self.sliders:
            slider.observe(callback)
        for control in (
            self.model,
            self.reasoning_effort,
            self.thinking,
            self.top_k,
            self.max_tokens,
            self.seed,
            self.stop,
            self.system,
            self.advanced,
        ):
            control.observe(callback, names="value")


class CompareControls:
    """The second settings column of compare mode: its own model and temperature."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        offered = catalog.offered()
        self.model = widgets.Dropdown(
            options=[(model_label(info), info.slug) for info in offered],
            # The second offered model, so A and B differ out of the box.
            value=offered[1].slug if len(offered) > 1 else None,
            description="Model B",
            tooltip="The model of the second answer; the other settings are shared with A.",
            style=_DESCRIPTION_STYLE,
            layout=widgets.Layout(flex="1 1 auto", width="auto", min_width="0", max_width="640px"),
        )
        self.temperature = OptionalSlider(
            "temperature",
            minimum=0.0,
            maximum=4.0,
            step=0.05,
            default=1.0,
            label="Temperature B",
            css_name="temperature-b",
        )
        self.temperature.widget.layout.max_width = "50%"
        self.widget = widgets.VBox(
            [
                widgets.HTML(
                    '<div class="bm-hint">Compare with: model B answers the same prompt '
                    "beside A; the other settings are shared.</div>"
                ),
                widgets.HBox([self.model], layout=widgets.Layout(width="100%")),
                self.temperature.widget,
            ],
            layout=widgets.Layout(width="100%"),
        )
        self.widget.add_class("bm-compare-controls")

    def differ_from(self, slug: str) -> None:
        """Pick another offered model for B when B is the same as A (`slug`)."""
        if self.model.value != slug:
            return
        for _label, value in self.model.options:
            if value != slug:
                self.model.value = value
                return

    def apply(self, shared: PanelSettings) -> PanelSettings:
        """Settings B: `shared` with model B and temperature B, minus options B cannot take."""
        info = self.catalog.resolve(str(self.model.value))
        effort = shared.reasoning_effort
        if info.known and not info.supports_reasoning_effort:
            effort = None
        thinking = shared.thinking if info.can_toggle_thinking else None
        return replace(
            shared,
            model=info.slug,
            temperature=self.temperature.value,
            reasoning_effort=effort,
            thinking=thinking,
        )
