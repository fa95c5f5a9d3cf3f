"""Test harnesses that drive a real Jupyter kernel (`kernel`) and JupyterLab in Chromium (`lab`).

`settings` holds `PlainSettings`, session settings without traitlets.

Rule: harnesses start real processes and always stop them; they hold no project logic.
Import them from tests as `from harness.kernel import KernelSession` (pytest puts `tests/` on
`sys.path` because it holds the root `conftest.py` and no `__init__.py`).

Usage::

    from harness import server_env
    from harness.kernel import KernelSession

    with KernelSession(server_env(local_server)) as kernel:
        kernel.execute("%load_ext baseten_magic")
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ServerLike", "server_env"]


class ServerLike(Protocol):
    """What `server_env` needs from a server (`baseten_magic.server.LocalServer` fits)."""

    @property
    def url(self) -> str: ...

    @property
    def api_key(self) -> str: ...


def server_env(server: ServerLike) -> dict[str, str]:
    """The variables that point client code (or a kernel) at `server`."""
    return {"BASETEN_BASE_URL": server.url, "BASETEN_API_KEY": server.api_key}
