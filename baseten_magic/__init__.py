"""baseten_magic: Baseten's Chat Completions API, native to Jupyter.

`%load_ext baseten_magic` registers the `%%baseten` cell magic and the `%baseten` line magic.
From Python: `chat()` / `achat()` send one completion, `map()` / `amap()` one per row of a
DataFrame, `ledger()` reads the cost ledger (also as a DataFrame), `history()` gives the
notebook's conversation.

Rule: importing the package is cheap. Heavy modules (httpx, ipywidgets, the server) load on
first use through module `__getattr__` (PEP 562).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from baseten_magic._version import __version__
from baseten_magic.core.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BasetenError,
    BasetenWarning,
    BatchError,
    BatchInterrupted,
    BudgetExceededError,
    ConfigurationError,
    MidStreamError,
    ModelNotFoundError,
    OutputParseError,
    ParameterError,
    RateLimitError,
    ServerError,
    StreamError,
    StreamInterrupted,
)
from baseten_magic.core.result import ChatResult, Choice, TokenLogprob, ToolCall, Usage

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from baseten_magic.api import achat, amap, chat, history, ledger, map, read_history
    from baseten_magic.core.budget import Budget
    from baseten_magic.core.pricing import Pricing
    from baseten_magic.core.structured import parse_reply, response_format_for
    from baseten_magic.core.tools import tool_spec
    from baseten_magic.engine.batch.runner import BatchEstimate
    from baseten_magic.io.client import AsyncClient, Client

_LAZY = {
    "chat": "api",
    "achat": "api",
    "ledger": "api",
    "history": "api",
    "read_history": "api",
    "Budget": "core.budget",
    "map": "api",
    "amap": "api",
    "BatchEstimate": "engine.batch.runner",
    "Client": "io.client",
    "AsyncClient": "io.client",
    "Pricing": "core.pricing",
    "tool_spec": "core.tools",
    "parse_reply": "core.structured",
    "response_format_for": "core.structured",
}

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BasetenError",
    "BasetenWarning",
    "BatchError",
    "BatchEstimate",
    "BatchInterrupted",
    "Budget",
    "BudgetExceededError",
    "ChatResult",
    "Choice",
    "Client",
    "ConfigurationError",
    "MidStreamError",
    "ModelNotFoundError",
    "OutputParseError",
    "ParameterError",
    "Pricing",
    "RateLimitError",
    "ServerError",
    "StreamError",
    "StreamInterrupted",
    "TokenLogprob",
    "ToolCall",
    "Usage",
    "__version__",
    "achat",
    "amap",
    "chat",
    "history",
    "ledger",
    "load_ipython_extension",
    "map",
    "parse_reply",
    "read_history",
    "response_format_for",
    "tool_spec",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'baseten_magic' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the magics (`%load_ext baseten_magic`); loading twice is harmless."""
    from baseten_magic.notebook.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Forget this shell's magics state (`%unload_ext baseten_magic`)."""
    from baseten_magic.notebook.magics import unload_ipython_extension as unload

    unload(ipython)
