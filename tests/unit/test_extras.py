"""Renderers for tool calls, JSON, logprobs and several choices: readable, and safe."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from baseten_magic.core.result import ChatResult, Choice, TokenLogprob, ToolCall
from baseten_magic.core.tools import ToolOutput
from baseten_magic.engine.call import CallContext, ChatCall, prepare_request
from baseten_magic.io.client import Client
from baseten_magic.io.ledger import Ledger
from baseten_magic.render.extras import (
    choices_bundle,
    json_bundle,
    logprobs_bundle,
    to_jsonable,
    tool_calls_bundle,
)
from baseten_magic.render.markdown import assert_safe_html
from baseten_magic.server import LocalServer

EVIL = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def _html(bundle: dict[str, Any]) -> str:
    markup = bundle["text/html"]
    assert isinstance(markup, str)
    assert_safe_html(markup)
    assert "<script" not in markup
    assert "<img" not in markup
    return markup


def _text(markup: str) -> str:
    """The text a reader sees: markup parsed, entities decoded (however the highlighter escapes)."""

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []

        def handle_data(self, data: str) -> None:
            self.parts.append(data)

    parser = Text()
    parser.feed(markup)
    return "".join(parser.parts)


def _titles(markup: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'title="([^"]*)"', markup)]


# -- tool calls ---------------------------------------------------------------------------------


def test_tool_calls_show_arguments_and_results() -> None:
    calls: list[ToolCall] = [
        {"id": "functions.get_weather:0", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"id": "call_2", "name": "boom", "arguments": "{broken"},
    ]
    outputs = [
        ToolOutput("functions.get_weather:0", "get_weather", {"city": "Paris"}, '{"sky": "sun"}'),
        ToolOutput("call_2", "boom", None, "", "ToolError: ValueError: " + EVIL),
    ]
    bundle = tool_calls_bundle(calls, outputs)
    markup = _html(bundle)
    assert markup.count("<details") == 2
    assert "get_weather" in markup
    assert "functions.get_weather:0" in markup
    assert '"city": "Paris"' in _text(markup)  # pretty-printed arguments, highlighted
    assert "<span" in markup
    assert "{broken" in markup  # bad JSON shown as it came
    assert "&lt;script&gt;" in markup  # the error is text
    plain = bundle["text/plain"]
    assert 'get_weather({"city":"Paris"})' in plain
    assert "ToolError: ValueError" in plain


def test_tool_calls_without_outputs_and_evil_names() -> None:
    calls: list[ToolCall] = [{"id": EVIL, "name": EVIL, "arguments": json.dumps({"x": EVIL})}]
    markup = _html(tool_calls_bundle(calls, None))
    assert "Result" not in markup
    assert "&lt;img" in markup


# -- JSON ---------------------------------------------------------------------------------------


@dataclass
class Point:
    x: int
    label: str


def test_json_bundle_is_pretty_coloured_and_carries_json() -> None:
    bundle = json_bundle({"points": [Point(1, EVIL)], "ok": True})
    markup = _html(bundle)
    assert "color:" in markup  # syntax colouring
    assert bundle["application/json"] == {"points": [{"x": 1, "label": EVIL}], "ok": True}
    assert bundle["text/plain"] == json.dumps(
        {"points": [{"x": 1, "label": EVIL}], "ok": True}, indent=2
    )
    assert json_bundle(3)["application/json"] == {"value": 3}
    assert to_jsonable({"n": float("nan"), "s": {1}}) == {"n": "nan", "s": [1]}


# -- logprobs -----------------------------------------------------------------------------------


def test_logprob_tokens_are_escaped_with_alternatives_in_titles() -> None:
    logprobs = [
        TokenLogprob("<script>", -0.05, (("<script>", -0.05), ('"quoted"', -3.2))),
        TokenLogprob(" world\n", -2.5),
    ]
    markup = _html(logprobs_bundle(logprobs))
    assert ">&lt;script&gt;</span>" in markup
    titles = _titles(markup)
    assert titles[0].startswith("<script>: p=0.951")
    assert 'alternatives: <script> 0.951, "quoted" 0.041' in titles[0]
    assert titles[1].startswith(r" world\n: p=0.082")
    # Likely tokens are green, unlikely ones red.
    hues = [int(h) for h in re.findall(r"hsl\((\d+),", markup)[:2]]
    assert hues[0] > 100 > 20 > hues[1]
    assert "Token probability" in markup  # the legend


def test_logprobs_from_the_local_server(server: LocalServer, tmp_path: Path) -> None:
    result = _ask(server, tmp_path, "/echo Hello <b>there</b>", logprobs=True, top_logprobs=2)
    assert result.logprobs
    markup = _html(logprobs_bundle(result.logprobs))
    assert markup.count('class="bm-token"') == len(result.logprobs)
    assert "&lt;b&gt;" in markup
    assert all("alternatives:" in t for t in _titles(markup)[: len(result.logprobs)])


# -- choices ------------------------------------------------------------------------------------


def test_choices_side_by_side() -> None:
    choices = [
        Choice(0, "**bold** " + EVIL, finish_reason="stop", reasoning="thinking <b>"),
        Choice(1, "second", finish_reason="length"),
    ]
    bundle = choices_bundle(choices)
    markup = _html(bundle)
    assert "display: flex" in markup
    assert markup.count('class="bm-choice"') == 2
    assert "<strong>bold</strong>" in markup
    assert "finish: stop" in markup
    assert "finish: length" in markup
    assert "thinking &lt;b&gt;" in markup
    assert "--- Choice 2 · finish: length ---\nsecond" in bundle["text/plain"]


def test_two_choices_from_the_local_server(tmp_path: Path) -> None:
    with LocalServer(allow_n=True) as server:
        result = _ask(server, tmp_path, "Say hi", n=2, temperature=1.0)
    assert len(result.choices) == 2
    markup = _html(choices_bundle(result.choices))
    assert markup.count('class="bm-choice"') == 2


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def server(session_server: LocalServer) -> LocalServer:
    """The shared server: these tests only read answers."""
    return session_server


def _ask(server: LocalServer, tmp_path: Path, prompt: str, **params: Any) -> ChatResult:
    request = prepare_request(prompt, model="moonshotai/Kimi-K2-Instruct-0905", params=params)
    call = ChatCall(request, CallContext(session="t", ledger=Ledger(tmp_path / "l.db")))
    with Client(base_url=server.url, api_key=server.api_key) as client:
        return call.run(client)
