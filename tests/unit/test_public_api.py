"""The public names that notebooks and code outside this repository rely on."""

from __future__ import annotations

import dataclasses
import inspect
from decimal import Decimal

import baseten_magic
from baseten_magic.core.result import ChatResult, Usage

EXPORTED = {
    "chat",
    "achat",
    "ledger",
    "load_ipython_extension",
    "unload_ipython_extension",
    "ChatResult",
    "Usage",
    "ToolCall",
    "BasetenError",
    "ParameterError",
    "AuthenticationError",
    "ModelNotFoundError",
    "RateLimitError",
    "StreamInterrupted",
    "OutputParseError",
    "Client",
    "AsyncClient",
    "__version__",
}


def test_exported_members() -> None:
    assert set(baseten_magic.__all__) >= EXPORTED
    for name in baseten_magic.__all__:
        assert getattr(baseten_magic, name) is not None, name


def test_chat_signatures() -> None:
    chat = inspect.signature(baseten_magic.chat)
    assert list(chat.parameters)[:2] == ["messages", "model"]
    assert chat.parameters["stream"].default is True
    assert inspect.iscoroutinefunction(baseten_magic.achat)
    assert list(inspect.signature(baseten_magic.achat).parameters) == list(chat.parameters)


def test_result_attributes() -> None:
    names = {f.name for f in dataclasses.fields(ChatResult)}
    for attribute in (
        "content",
        "reasoning",
        "tool_calls",
        "finish_reason",
        "model",
        "usage",
        "parsed",
    ):
        assert attribute in names
    result = ChatResult(usage=Usage(1, 2, 3, 4), cost=Decimal("0.25"))
    assert result.cost_usd == 0.25
    assert dict(result.usage or {}) == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "reasoning_tokens": 3,
        "cached_tokens": 4,
    }
    assert ChatResult().usage is None
    assert ChatResult().reasoning == ""


def test_ledger_row_fields() -> None:
    from baseten_magic.io.ledger import LedgerRow

    names = {f.name for f in dataclasses.fields(LedgerRow)}
    assert {
        "ts",
        "cell",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "cost_usd",
        "latency_s",
        "ttft_s",
        "status",
    } <= names
