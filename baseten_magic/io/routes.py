"""Which client a route takes: the one place the front ends ask for a client by route.

Rule: `client_for(route)` and `async_client_for(route)` return a client the engine can run a
call on; `baseten` is the HTTP client (`io.client`), `xpay` the reseller's MCP tool
(`io.xpay`). The route is read from `BASETEN_MAGIC_ROUTE` when not given, at call time, and an
unknown one is a ConfigurationError. Nothing is imported (httpx, mcp) until a client is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baseten_magic.core import settings
from baseten_magic.core.settings import Route

if TYPE_CHECKING:
    from baseten_magic.io.client import AsyncClient, Client
    from baseten_magic.io.xpay import AsyncXPayClient, ProgressCallback, XPayClient


def route_of(route: str | None = None) -> Route:
    """`route` checked, or the one `BASETEN_MAGIC_ROUTE` names (default `baseten`)."""
    return settings.route(route)


def client_for(
    route: str | None = None,
    *,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> Client | XPayClient:
    """A new blocking client for `route` (None: `BASETEN_MAGIC_ROUTE`); close it when done.
    `timeout`: the longest wait for the next piece of an answer (None: `BASETEN_MAGIC_TIMEOUT`).
    `on_progress`: told the xpay server's progress reports (the baseten route streams tokens
    instead, so it never calls it)."""
    if route_of(route) == "xpay":
        from baseten_magic.io.xpay import XPayClient

        if timeout is None:
            return XPayClient(on_progress=on_progress)
        return XPayClient(timeout=timeout, on_progress=on_progress)
    from baseten_magic.io.client import Client

    return Client(timeout=timeout)


def async_client_for(
    route: str | None = None, *, timeout: float | None = None
) -> AsyncClient | AsyncXPayClient:
    """A new awaitable client for `route` (None: `BASETEN_MAGIC_ROUTE`); `aclose()` it."""
    if route_of(route) == "xpay":
        from baseten_magic.io.xpay import AsyncXPayClient

        return AsyncXPayClient() if timeout is None else AsyncXPayClient(timeout=timeout)
    from baseten_magic.io.client import AsyncClient

    return AsyncClient(timeout=timeout)
