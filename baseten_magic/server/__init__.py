"""A local server that speaks Baseten's Chat Completions wire format, on loopback.

Rule: stdlib only (asyncio streams) plus the library's own pure layer (`params`, `catalog`), so
the bytes on the wire and the faults are under exact control. For offline demos, teaching,
tests and benchmarks::

    from baseten_magic.server import LocalServer, Fault, use_local_server

    with LocalServer(tokens_per_second=40) as server:
        ...  # point a client at server.url with server.api_key

    use_local_server()  # a notebook: sets BASETEN_BASE_URL and BASETEN_API_KEY, then %%baseten

From a shell: ``python -m baseten_magic.server --port 8000``. What the server answers is
described in `baseten_magic.server.generate`; the faults in `baseten_magic.server.faults`.
The reseller's MCP tool has a stand-in too, `LocalMCPServer` (``--mcp``), loaded on first use
because it needs the `mcp` package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from baseten_magic.server.app import RecordedRequest
from baseten_magic.server.faults import Fault
from baseten_magic.server.local import LocalServer, use_local_server

if TYPE_CHECKING:
    from baseten_magic.server.xpay import LocalMCPServer, use_local_mcp_server

__all__ = [
    "Fault",
    "LocalMCPServer",
    "LocalServer",
    "RecordedRequest",
    "use_local_mcp_server",
    "use_local_server",
]


def __getattr__(name: str) -> Any:
    if name in ("LocalMCPServer", "use_local_mcp_server"):
        from baseten_magic.server import xpay

        return getattr(xpay, name)
    raise AttributeError(f"module 'baseten_magic.server' has no attribute {name!r}")
