"""Layer 4, the widget panel: a session's settings as controls, streaming without blocking.

Rule: importing this package loads ipywidgets; nothing above it imports it eagerly. The panel
is handed a `Session` and never imports the notebook front end.
"""

from __future__ import annotations

from baseten_magic.panel.app import Panel, show_panel

__all__ = ["Panel", "show_panel"]
