"""Presentation: model text to safe HTML, MIME bundles, throttled live painting.

Rule: model text reaches the page only through `render.markdown.render_markdown` (or escaped);
nothing here prints or displays on its own except through a `Surface` it is given. Import the
submodules directly (`render.markdown`, `render.bundle`, `render.painter`, `render.surfaces`,
`render.terminal`); this package imports none of them, so importing it stays cheap.
"""

from __future__ import annotations
