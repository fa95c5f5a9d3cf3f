"""The client and ChatCall against a hostile server on loopback: broken usage values, gzip,
oversized events and bodies, responses that are not an event stream, silent servers."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import time
import traceback
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
    with (
        Client(base_url=server.url, api_key=KEY, sleep=lambda s: None, **client_kw) as c,
        contextlib.suppress(errors.BasetenError),
    ):
        call.run(c)
    return call, ledger


# -- hostile usage values and indices ------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "reported"),
    [
        ({"prompt_tokens": "lots", "completion_tokens": -5}, False),
        ({"prompt_tokens": 3.5, "completion_tokens": float("nan")}, False),
        ({"prompt_tokens": 10**30, "completion_tokens": 10**30}, True),
        (
            {"prompt_tokens": 4, "completion_tokens_details": "x", "prompt_tokens_details": [1]},
            True,
        ),
        ({"prompt_tokens": True, "completion_tokens": None}, False),
    ],
)
def test_hostile_usage_keeps_the_answer_and_writes_the_row(
    usage: dict[str, Any], reported: bool, tmp_path: Path
) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        body = json.dumps(_chunk("hello ", usage=usage), allow_nan=True)
        sock.sendall(sse_head() + sse(body) + sse(_chunk("world", "stop", usage=usage)))
        sock.sendall(sse("[DONE]"))

    with HostileServer(script) as server:
        call, ledger = _run(server, tmp_path)
    assert call.result is not None and call.result.status == "ok"
    assert call.result.content == "hello world"
    # Bad fields are read as not reported; a usage with no valid count is no usage at all.
    assert (call.result.usage is not None) == reported
    for value in (call.result.usage or {}).values():
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


# -- gzip ----------------------------------------------------------------------------

OK_EVENTS = (
    sse(_chunk("hello ", usage={"prompt_tokens": 3, "completion_tokens": 1}))
    + sse(_chunk("world", "stop", usage={"prompt_tokens": 3, "completion_tokens": 2}))
    + sse("[DONE]")
)


def test_a_gzipped_stream_is_decoded(tmp_path: Path) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        sock.sendall(sse_head({"Content-Encoding": "gzip"}) + gzip.compress(OK_EVENTS))

    with HostileServer(script) as server:
        call, _ = _run(server, tmp_path)
    assert call.result is not None and call.result.status == "ok", call.result
    assert call.result.content == "hello world"


# -- size caps ------------------------------------------------------------------------


def test_an_endless_event_is_a_one_line_error_with_the_partial(tmp_path: Path) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        sock.sendall(sse_head() + sse(_chunk("kept")) + b"data: ")
        piece = b"x" * (1024 * 1024)
        for _ in range(20):  # 20 MB on one line, past the 16 MB cap
            sock.sendall(piece)

    with HostileServer(script) as server:
        call, ledger = _run(server, tmp_path)
    assert call.result is not None and call.result.status == "error"
    assert call.result.content == "kept"
    assert call.result.error and "at most 16 MB" in call.result.error
    assert "\n" not in call.result.error
    assert [r.status for r in ledger.rows()] == ["error"]


def test_a_huge_error_body_is_read_only_up_to_its_cap(tmp_path: Path) -> None:
    sent: list[int] = []

    def script(n: int, request: Request, sock: socket.socket) -> None:
        body = b'{"error": "' + b"e" * (8 * 1024 * 1024) + b'"}'
        sock.sendall(http_response(503, b"", {"Content-Length": str(len(body))}, length=False))
        total = 0
        with contextlib.suppress(OSError):
            for start in range(0, len(body), 65536):
                sock.sendall(body[start : start + 65536])
                total += 65536
        sent.append(total)

    with HostileServer(script) as server:
        call, _ = _run(server, tmp_path)
        assert server.requests == 3  # retried twice, as a 503 is
    assert call.result is not None and call.result.error
    assert "HTTP 503" in call.result.error
    # Each attempt stopped reading near the 1 MB cap instead of taking the 8 MB body.
    assert all(total < 8 * 1024 * 1024 for total in sent)


def test_a_huge_json_completion_is_refused(tmp_path: Path) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        body = json.dumps({"choices": [{"message": {"content": "x" * (65 * 1024 * 1024)}}]})
        with contextlib.suppress(OSError):
            sock.sendall(http_response(200, body.encode(), {"Content-Type": "application/json"}))

    with HostileServer(script) as server:
        call, _ = _run(server, tmp_path)
    assert call.result is not None and call.result.error
    assert "at most 64 MB" in call.result.error


# -- what arrived instead of an event stream ------------------------------------------


def test_a_json_completion_to_a_streaming_request_is_the_answer(tmp_path: Path) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        body = {
            "id": "chatcmpl-2",
            "object": "chat.completion",
            "model": "openai/gpt-oss-120b",
            "choices": [{"index": 0, "message": {"content": "whole"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1},
        }
        sock.sendall(
            http_response(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
        )

    with HostileServer(script) as server:
        call, _ = _run(server, tmp_path, pricing=Pricing(mode="per_call"))
    assert call.result is not None and call.result.status == "ok"
    assert call.result.content == "whole"
    assert call.result.usage is not None and call.result.usage.completion_tokens == 1
    assert str(call.result.cost) == "0.01"  # it reached the model


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (200, {"Content-Type": "text/html"}, b"<html>Please log in</html>", "text/html"),
        (301, {"Location": "https://elsewhere.example/v1"}, b"", "redirect"),
        (307, {"Location": "https://elsewhere.example/v1"}, b"", "redirect"),
    ],
)
def test_a_page_or_a_redirect_says_what_arrived_and_costs_nothing(
    status: int, headers: dict[str, str], body: bytes, expected: str, tmp_path: Path
) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        sock.sendall(http_response(status, body, headers))

    with HostileServer(script) as server:
        call, ledger = _run(server, tmp_path, pricing=Pricing(mode="per_call"))
        assert server.requests == 1
    assert call.result is not None and call.result.status == "error"
    assert call.result.error and expected in call.result.error
    assert "cut" not in call.result.error
    assert call.result.cost == 0
    assert [r.cost_usd for r in ledger.rows()] == [0]


# -- timeouts ------------------------------------------------------------------------


def test_keep_alives_do_not_count_as_progress(tmp_path: Path) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        sock.sendall(sse_head() + sse(_chunk("partial")))
        for _ in range(40):  # a keep-alive every 0.25 s, never an event
            time.sleep(0.25)
            sock.sendall(b": keep-alive\n\n")

    with HostileServer(script) as server:
        started = time.monotonic()
        call, _ = _run(server, tmp_path, timeout=1.0)
        took = time.monotonic() - started
    assert took < 3.0
    assert call.result is not None and call.result.status == "error"
    assert call.result.content == "partial"
    assert call.result.error and "BASETEN_MAGIC_TIMEOUT" in call.result.error


def test_a_silent_server_fails_after_one_timeout_not_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASETEN_MAGIC_TIMEOUT", "0.5")

    def script(n: int, request: Request, sock: socket.socket) -> None:
        time.sleep(3)

    with HostileServer(script) as server:
        started = time.monotonic()
        call, _ = _run(server, tmp_path)
        took = time.monotonic() - started
        assert server.requests == 1
    assert took < 1.5
    assert call.result is not None and call.result.error
    assert "0.5 s" in call.result.error and "BASETEN_MAGIC_TIMEOUT" in call.result.error


def test_a_bad_timeout_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASETEN_MAGIC_TIMEOUT", "soon")
    with pytest.raises(errors.ConfigurationError, match="BASETEN_MAGIC_TIMEOUT"):
        _ = Client(api_key=KEY).timeout
    with pytest.raises(errors.ConfigurationError, match="timeout"):
        Client(api_key=KEY, timeout=0)


# -- the key in frame locals ---------------------------------------------------------


def _frame_reprs(exc: BaseException) -> str:
    seen = []
    error: BaseException | None = exc
    while error is not None:
        for frame, _ in traceback.walk_tb(error.__traceback__):
            if frame.f_code.co_filename == __file__:
                continue  # this test's own frame holds the key it passed in
            seen.extend(repr(value) for value in frame.f_locals.values())
        # What `%xmode Verbose` shows: the chain, unless the context was suppressed.
        error = None if error.__suppress_context__ else error.__context__
    return "\n".join(seen)


@pytest.mark.parametrize("fault", ["refused", "status", "midstream", "bad-key"])
def test_the_key_is_in_no_frame_local_of_a_traceback(fault: str) -> None:
    key = KEY if fault != "bad-key" else KEY + "\u201d"

    def script(n: int, request: Request, sock: socket.socket) -> None:
        if fault == "status":
            sock.sendall(http_response(400, b'{"error": "bad"}'))
        else:
            sock.sendall(sse_head() + sse(_chunk("a")) + sse({"error": {"message": "boom"}}))

    with HostileServer(script) as server:
        url = "http://127.0.0.1:1/v1" if fault == "refused" else server.url
        client = Client(base_url=url, api_key=key, sleep=lambda s: None)
        call = ChatCall(prepare_request("hi", model="gpt-oss"), CallContext(session="s"))
        with pytest.raises(errors.BasetenError) as info:
            call.run(client)
    reprs = _frame_reprs(info.value)
    assert reprs  # frames were inspected
    assert KEY not in reprs


# -- server-sent text redacted with the key actually used ----------------------------


def test_text_the_server_echoes_is_redacted_with_the_clients_key(tmp_path: Path) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        if n == 1:
            chunk = _chunk("a", model=f"model-{KEY}", id=f"id-{KEY}")
            chunk["model"], chunk["id"] = f"model-{KEY}", f"id-{KEY}"
            sock.sendall(
                sse_head({"x-request-id": KEY})
                + sse(chunk)
                + sse({"error": {"message": f"bad key {KEY}"}})
            )
        else:
            sock.sendall(
                http_response(401, f'{{"error": "no {KEY}"}}'.encode(), {"x-request-id": KEY})
            )

    with HostileServer(script) as server:
        first, ledger = _run(server, tmp_path)
        second = ChatCall(
            prepare_request("hi", model="gpt-oss"), CallContext(session="s", ledger=ledger)
        )
        with (
            Client(base_url=server.url, api_key=KEY) as c,
            pytest.raises(errors.BasetenError) as info,
        ):
            second.run(c)
    for result in (first.result, second.result):
        assert result is not None
        assert KEY not in repr(result) and KEY not in str(result.error)
        assert KEY not in result.model and KEY not in str(result.request_id)
    assert KEY not in str(info.value) and KEY not in repr(getattr(info.value, "request_id", ""))
    assert KEY not in (tmp_path / "ledger.sqlite3").read_bytes().decode("latin-1")
    for row in ledger.rows():
        assert KEY not in repr(row.as_dict())


def test_chat_takes_a_timeout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import baseten_magic

    def script(n: int, request: Request, sock: socket.socket) -> None:
        time.sleep(3)

    with HostileServer(script) as server:
        monkeypatch.setenv("BASETEN_BASE_URL", server.url)
        monkeypatch.setenv("BASETEN_API_KEY", KEY)
        started = time.monotonic()
        with pytest.raises(errors.APITimeoutError, match=r"within 0\.5 s"):
            baseten_magic.chat("hi", model="gpt-oss", ledger=False, timeout=0.5)
        assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("what", ["malformed event", "non-JSON completion", "html page"])
def test_an_echoed_key_in_a_broken_answer_is_redacted(what: str, tmp_path: Path) -> None:
    def script(n: int, request: Request, sock: socket.socket) -> None:
        if what == "malformed event":
            sock.sendall(sse_head() + f"data: oops {KEY}\n\n".encode())
        elif what == "non-JSON completion":
            headers = {"Content-Type": "application/json"}
            sock.sendall(http_response(200, f"[{KEY!r}".encode(), headers))
        else:
            sock.sendall(
                http_response(200, f"<p>{KEY}</p>".encode(), {"Content-Type": "text/html"})
            )

    with HostileServer(script) as server:
        call, _ = _run(server, tmp_path)
    assert call.result is not None and call.result.status == "error"
    assert call.result.error and "***" in call.result.error
    assert KEY not in call.result.error
    assert KEY not in (tmp_path / "ledger.sqlite3").read_bytes().decode("latin-1")


def test_the_async_client_reads_gzip_json_and_refuses_html() -> None:
    import asyncio

    from baseten_magic.io.client import AsyncClient

    def script(n: int, request: Request, sock: socket.socket) -> None:
        if n == 1:
            sock.sendall(sse_head({"Content-Encoding": "gzip"}) + gzip.compress(OK_EVENTS))
        elif n == 2:
            body = {"choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}]}
            headers = {"Content-Type": "application/json"}
            sock.sendall(http_response(200, json.dumps(body).encode(), headers))
        else:
            sock.sendall(http_response(200, b"<html>login</html>", {"Content-Type": "text/html"}))

    async def run(server: HostileServer) -> list[str]:
        texts = []
        async with AsyncClient(base_url=server.url, api_key=KEY) as client:
            for _ in range(2):
                stream = await client.stream(prepare_request("hi", model="gpt-oss").body)
                texts.append("".join([d.content async for d in stream]))
            with pytest.raises(errors.StreamError, match="text/html"):
                await client.stream(prepare_request("hi", model="gpt-oss").body)
        return texts

    with HostileServer(script) as server:
        assert asyncio.run(run(server)) == ["hello world", "whole"]
