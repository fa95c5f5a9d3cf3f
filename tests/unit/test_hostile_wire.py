"""The client and ChatCall against a hostile server on loopback: broken usage values, gzip,
oversized events and bodies, responses that are not an event stream, silent servers."""

from __future__ import annotations

import gzip
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from harness.hostile import HostileServer, Request, http_response, sse, sse_head

from baseten_magic.core import errors
from baseten_magic.core.pricing import Pricing
from baseten_magic.engine.call import CallContext, ChatCall, prepare_request
from baseten_magic.io.client import Client
from baseten_magic.io.ledger import Ledger

KEY = "sk-hostile-test-key-0123456789"


def _chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "openai/gpt-oss-120b",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def _run(
    server: HostileServer, tmp_path: Path, *, pricing: Pricing | None = None, **client_kw: Any
) -> tuple[ChatCall, Ledger]:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    context = CallContext(session="s", ledger=ledger, pricing=pricing or Pricing())
    call = ChatCall(prepare_request("hi", model="gpt-oss"), context)
    with Client(base_url=server.url, api_key=KEY, sleep=lambda s: None, **client_kw) as c:
        try:
            call.run(c)
        except errors.BasetenError:
            pass
    return call, ledger


# -- item 6: hostile usage values and indices ------------------------------------------------


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "lots", "completion_tokens": -5},
        {"prompt_tokens": 3.5, "completion_tokens": float("nan")},
        {"prompt_tokens": 10**30, "completion_tokens": 10**30},
        {"prompt_tokens": 4, "completion_tokens_details": "x", "prompt_tokens_details": [1]},
        {"prompt_tokens": True, "completion_tokens": None},
    ],
)
def test_hostile_usage_keeps_the_answer_and_writes_the_row(
    usage: dict[str, Any], tmp_path: Path
) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        body = json.dumps(_chunk("hello ", usage=usage), allow_nan=True)
        sock.sendall(sse_head() + sse(body) + sse(_chunk("world", "stop", usage=usage)))
        sock.sendall(sse("[DONE]"))

    with HostileServer(script) as server:
        call, ledger = _run(server, tmp_path)
    assert call.result is not None and call.result.status == "ok"
    assert call.result.content == "hello world"
    assert call.result.usage is not None
    for value in call.result.usage.values():
        assert 0 <= value <= 10**9
    assert call.result.cost < 1000  # not 10^23 dollars
    rows = ledger.rows()
    assert len(rows) == 1 and rows[0].status == "ok"


@pytest.mark.parametrize("index", ["0", 1.5, -1, 10**20, None, [0]])
def test_a_non_integer_choice_index_keeps_the_answer(index: Any, tmp_path: Path) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        chunk = _chunk("hello", "stop")
        chunk["choices"][0]["index"] = index
        sock.sendall(sse_head() + sse(chunk) + sse("[DONE]"))

    with HostileServer(script) as server:
        call, ledger = _run(server, tmp_path)
    assert call.result is not None and call.result.status == "ok"
    assert call.result.content == "hello"
    assert [r.status for r in ledger.rows()] == ["ok"]
