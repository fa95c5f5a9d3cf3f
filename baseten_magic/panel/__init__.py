"""The widget panel: the magic's settings as controls, streaming without blocking the kernel.

Rule: importing this package loads ipywidgets; nothing above it imports it eagerly.
"""

from __future__ import annotations

from baseten_magic.panel.app import Panel, show_panel

__all__ = ["Panel", "show_panel"]
