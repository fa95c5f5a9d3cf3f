"""Surfaces: where a painter's bundles go.

Rule: a surface only appends outputs (`show`) and replaces them (`update`); it decides nothing.
`IPythonSurface` talks to the front end through display handles (IPython is imported lazily,
on first use); `RecordingSurface` keeps every message in memory for tests and benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from baseten_magic.render.bundle import bundle_size

__all__ = ["IPythonSurface", "Message", "RecordingSurface", "SlotId", "Surface"]

#: Identifies one output a surface has shown (an index in showing order).
SlotId = int


class Surface(Protocol):
    """Something that can append an output and later replace it."""

    def show(self, bundle: Mapping[str, Any]) -> SlotId:
        """Append a new output showing `bundle`; return its slot."""
        ...

    def update(self, slot: SlotId, bundle: Mapping[str, Any]) -> None:
        """Replace what `slot` shows with `bundle`."""
        ...


@dataclass(frozen=True)
class Message:
    """One message a surface sent: a new output or an update of one."""

    kind: Literal["show", "update"]
    slot: SlotId
    bundle: Mapping[str, Any]
    size: int
    at: float


@dataclass
class RecordingSurface:
    """An in-memory surface that records every message with its byte size."""

    clock: Callable[[], float] = time.monotonic
    messages: list[Message] = field(default_factory=list)
    _outputs: list[Mapping[str, Any]] = field(default_factory=list)

    def show(self, bundle: Mapping[str, Any]) -> SlotId:
        """Append an output and record the message."""
        self._outputs.append(bundle)
        slot = len(self._outputs) - 1
        self.messages.append(Message("show", slot, bundle, bundle_size(bundle), self.clock()))
        return slot

    def update(self, slot: SlotId, bundle: Mapping[str, Any]) -> None:
        """Replace an output and record the message."""
        if not 0 <= slot < len(self._outputs):
            raise IndexError(f"expected a slot this surface showed (0..{len(self._outputs) - 1})")
        self._outputs[slot] = bundle
        self.messages.append(Message("update", slot, bundle, bundle_size(bundle), self.clock()))

    def final_outputs(self) -> list[Mapping[str, Any]]:
        """What each output shows now, in showing order."""
        return list(self._outputs)

    @property
    def total_bytes(self) -> int:
        """Bytes of every message sent so far."""
        return sum(message.size for message in self.messages)


class IPythonSurface:
    """Outputs in the current IPython cell, through display handles.

    Meant for rich front ends (a kernel); terminal IPython prints every update, so use
    `TerminalPrinter` there. Without a running `InteractiveShell` (plain Python) there are no
    handles: outputs are kept in memory and their plain text is printed on `close()`.
    """

    def __init__(self) -> None:
        self._handles: list[Any] = []
        self._fallback = RecordingSurface()

    def show(self, bundle: Mapping[str, Any]) -> SlotId:
        """Display `bundle` as a new output with a display id."""
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.display import display as untyped_display

        display: Any = untyped_display
        # Outside a shell display() prints the dict's repr and returns None; keep it instead.
        handle = None
        if InteractiveShell.initialized():
            handle = display(bundle, raw=True, display_id=True)
        self._handles.append(handle)
        slot = len(self._handles) - 1
        if handle is None:
            self._fallback.show(bundle)
        return slot

    def update(self, slot: SlotId, bundle: Mapping[str, Any]) -> None:
        """Replace the output `slot` through its display handle."""
        handle = self._handles[slot]
        if handle is None:
            self._fallback.update(self._fallback_slot(slot), bundle)
        else:
            handle.update(bundle, raw=True)

    def _fallback_slot(self, slot: SlotId) -> SlotId:
        return sum(1 for handle in self._handles[:slot] if handle is None)

    def close(self) -> None:
        """Print, once, the plain text of outputs that could not be displayed live."""
        outputs = self._fallback.final_outputs()
        self._fallback = RecordingSurface()
        text = "".join(bundle.get("text/plain", "") for bundle in outputs)
        if text:
            print(text)
