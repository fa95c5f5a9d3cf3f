"""render.bundle: reasoning blocks, answer segments and the footer as safe MIME bundles."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from baseten_magic.core.result import ChatResult, Usage
from baseten_magic.render.bundle import (
    LIVE_REASONING_CHARS,
    answer_bundle,
    bundle_size,
    empty_bundle,
    footer_bundle,
    footer_text,
    reasoning_final_bundle,
    reasoning_live_bundle,
    status_mark,
)
from baseten_magic.render.markdown import assert_safe_html


def _result(**changes: object) -> ChatResult:
    base: dict[str, object] = {
        "content": "hi",
        "model": "openai/gpt-oss-120b",
        "usage": Usage(prompt_tokens=1200, completion_tokens=340, reasoning_tokens=120),
        "cost": Decimal("0.000290"),
        "ttft_s": 0.42,
        "latency_s": 2.12,
    }
    base.update(changes)
    return ChatResult(**base)  # type: ignore[arg-type]


def test_bundle_size_is_json_utf8_bytes() -> None:
    bundle = {"text/html": "é<", "text/plain": "x"}
    assert bundle_size(bundle) == len(json.dumps(bundle, ensure_ascii=False).encode("utf-8"))
    assert bundle_size(empty_bundle()) < bundle_size(bundle)


def test_live_reasoning_is_open_and_shows_only_the_escaped_tail() -> None:
    reasoning = "A" * 5000 + "<script>alert(1)</script> the end"
    bundle = reasoning_live_bundle(reasoning, tokens=312)
    markup = bundle["text/html"]
    assert markup.startswith("<details open")
    assert "Reasoning · 312 tokens…" in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt; the end" in markup
    assert "white-space: pre-wrap" in markup
    assert markup.count("A") < LIVE_REASONING_CHARS + 50
    assert len(markup) < LIVE_REASONING_CHARS + 800
    assert bundle["text/plain"] == "Reasoning · 312 tokens…"
    assert_safe_html(markup)


def test_live_reasoning_counts_one_token_in_the_singular() -> None:
    assert "Reasoning · 1 token…" in reasoning_live_bundle("x", tokens=1)["text/html"]


def test_final_reasoning_is_closed_and_rendered_in_full() -> None:
    reasoning = "First **think**.\n\n" + "x " * 2000 + "\n\n<img src=x onerror=alert(1)>"
    bundle = reasoning_final_bundle(reasoning, tokens=1234)
    markup = bundle["text/html"]
    assert markup.startswith("<details ")
    assert "<details open" not in markup
    assert "Reasoning (1,234 tokens)" in markup
    assert "<strong>think</strong>" in markup
    assert "&lt;img src=x onerror=alert(1)&gt;" in markup
    assert markup.count("x ") >= 2000
    assert_safe_html(markup)
    assert bundle["text/plain"].startswith("Reasoning (1,234 tokens):\n")
    assert reasoning in bundle["text/plain"]


def test_answer_segment_is_markdown_in_a_wrapper_and_plain_is_exact() -> None:
    segment = "## Result\n\n<b>bold?</b> and `x < y`\n"
    bundle = answer_bundle(segment)
    assert bundle["text/html"].startswith('<div class="bm-answer')
    assert re.search(r"<h2[^>]*>Result</h2>", bundle["text/html"])
    assert "&lt;b&gt;bold?&lt;/b&gt;" in bundle["text/html"]
    assert bundle["text/plain"] == segment
    assert_safe_html(bundle["text/html"])


def test_answer_source_renders_but_plain_stays_the_segment() -> None:
    bundle = answer_bundle("x = 1\n", source="```python\nx = 1\n")
    assert '<div class="highlight"' in bundle["text/html"]
    assert bundle["text/plain"] == "x = 1\n"


def test_live_answer_is_cheaper_and_not_highlighted() -> None:
    text = "```python\n" + "value = compute(1, 2)\n" * 30
    live = answer_bundle(text, live=True)
    final = answer_bundle(text)
    assert "<span" not in live["text/html"]
    assert bundle_size(live) * 2 < bundle_size(final)


def test_footer_has_model_tokens_cost_times_and_speed() -> None:
    line = footer_text(_result(), pricing_mode="per_token")
    assert line.startswith("openai/gpt-oss-120b")
    assert "1,200 in / 340 out (120 reasoning)" in line
    assert "cached" not in line
    assert "$0.00029" in line
    assert "TTFT 0.42 s" in line
    assert "total 2.12 s" in line
    assert "200.0 tok/s" in line  # 340 / (2.12 - 0.42)


def test_footer_shows_cached_tokens_when_present() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=5, cached_tokens=8)
    line = footer_text(_result(usage=usage), pricing_mode="per_token")
    assert "10 in / 5 out (8 cached)" in line


def test_footer_per_call_pricing_and_missing_usage() -> None:
    line = footer_text(
        _result(usage=None, cost=Decimal("0.01"), ttft_s=None), pricing_mode="per_call"
    )
    assert "tokens: not reported" in line
    assert "$0.01 per call" in line
    assert "TTFT" not in line
    assert "tok/s" not in line


def test_footer_bundle_is_small_muted_and_safe() -> None:
    bundle = footer_bundle(_result(), pricing_mode="per_token")
    assert "font-size: 0.8em" in bundle["text/html"]
    assert bundle["text/plain"] == footer_text(_result(), pricing_mode="per_token")
    assert_safe_html(bundle["text/html"])


def test_interrupted_mark() -> None:
    result = _result(status="interrupted")
    assert status_mark(result) == "■ interrupted — partial answer"
    bundle = footer_bundle(result, pricing_mode="per_token")
    assert "■ interrupted — partial answer" in bundle["text/html"]
    assert bundle["text/plain"].startswith("■ interrupted — partial answer\n")


def test_error_mark_is_escaped() -> None:
    result = _result(status="error", error="bad <script>alert(1)</script> gateway")
    assert status_mark(result) == "⚠ error: bad <script>alert(1)</script> gateway"
    bundle = footer_bundle(result, pricing_mode="per_token")
    assert "⚠ error: bad &lt;script&gt;" in bundle["text/html"]
    assert "<script>" not in bundle["text/html"]
    assert_safe_html(bundle["text/html"])
    assert bundle["text/plain"].splitlines()[0] == "⚠ error: bad <script>alert(1)</script> gateway"


def test_ok_result_has_no_mark() -> None:
    assert status_mark(_result()) is None
    assert "⚠" not in footer_bundle(_result(), pricing_mode="per_token")["text/plain"]


def test_an_answer_cut_by_the_token_limit_says_so() -> None:
    result = _result(finish_reason="length")
    assert status_mark(result) == "■ stopped at the token limit — raise --max-tokens for the rest"
    assert footer_bundle(result, pricing_mode="per_token")["text/plain"].startswith("■ stopped")
