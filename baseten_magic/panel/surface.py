"""A painting surface made of widgets: one `HTMLMath` child of a `VBox` per output slot.

Rule: front-end traffic stays linear in the answer's length. `show()` appends one child and
`update()` sets only that child's `value`, so a block the painter has frozen is sent once and
never again (reassigning a growing `Output.outputs` would resend every block on every paint).
Bundles only ever carry the project's own safe HTML (see `render.bundle`), so their `text/html`
part goes to the page as is; a bundle without one shows its plain text, escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import ipywidgets as widgets

from baseten_magic.render.surfaces import SlotId

__all__ = ["WidgetSurface"]


def _markup(bundle: Mapping[str, str]) -> str:
    """The HTML a slot shows for a bundle: its own HTML part, or its plain text escaped."""
    markup = bundle.get("text/html")
    if markup is not None:
        return markup
    plain = bundle.get("text/plain", "")
    return f'<pre style="white-space: pre-wrap; margin: 0;">{html.escape(plain)}</pre>'


class WidgetSurface:
    """A `Surface` for `render.painter.Painter` whose slots are children of a `VBox`."""

    def __init__(self, box: widgets.VBox | None = None) -> None:
        self.box: widgets.VBox = box if box is not None else widgets.VBox()
        self._slots: list[widgets.HTMLMath] = []
        self._plain: list[str] = []

    def show(self, bundle: Mapping[str, str]) -> SlotId:
        """Append a new slot showing `bundle`; returns the slot's handle."""
        child = widgets.HTMLMath(value=_markup(bundle), layout=widgets.Layout(width="100%"))
        # JupyterLab's class for rendered HTML output: answers look as they do in a cell.
        child.add_class("jp-RenderedHTMLCommon")
        child.add_class("bm-slot")
        self._slots.append(child)
        self._plain.append(bundle.get("text/plain", ""))
        # One children message per new block (a list of model ids), never per paint.
        self.box.children = (*self.box.children, child)
        return len(self._slots) - 1

    def update(self, slot: SlotId, bundle: Mapping[str, str]) -> None:
        """Replace what slot `slot` shows; only that child's `value` is sent."""
        markup = _markup(bundle)
        child = self._slots[slot]
        self._plain[slot] = bundle.get("text/plain", "")
        if child.value != markup:
            child.value = markup

    def clear(self) -> None:
        """Remove every slot (before a new answer), closing the widgets it held."""
        old = self._slots
        self._slots, self._plain = [], []
        self.box.children = ()
        for child in old:
            child.close()

    @property
    def slots(self) -> tuple[widgets.HTMLMath, ...]:
        """The slot widgets, in display order."""
        return tuple(self._slots)

    @property
    def html(self) -> str:
        """Every slot's HTML, joined: what the page shows."""
        return "\n".join(child.value for child in self._slots)

    @property
    def text(self) -> str:
        """Every slot's plain text, joined: what a terminal would show."""
        return "\n".join(part for part in self._plain if part)
