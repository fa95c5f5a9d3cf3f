"""render.painter and render.surfaces: throttled, linear-cost painting on a simulated clock.

Streams are simulated: token i arrives at i / rate seconds on a fake clock, and the caller's wait
loop runs `tick()` at every `next_deadline()` that falls before the next arrival. Nothing sleeps.
"""

from __future__ import annotations

import bisect
import itertools
import random
import re
from collections.abc import Mapping
from typing import Any

import pytest

from baseten_magic.core.result import ChatResult, Usage
from baseten_magic.core.stream import Delta
from baseten_magic.render import painter as painter_module
from baseten_magic.render.bundle import answer_bundle, bundle_size
from baseten_magic.render.markdown import assert_safe_html, render_markdown
from baseten_magic.render.painter import (
    MAX_MESSAGES_PER_SECOND,
    MESSAGE_OVERHEAD,
    RATE_ALLOWANCE,
    Painter,
)
from baseten_magic.render.surfaces import IPythonSurface, RecordingSurface

INTERVAL = 0.09
EPS = 1e-9


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(**options: Any) -> tuple[FakeClock, RecordingSurface, Painter]:
    clock = FakeClock()
    surface = RecordingSurface(clock=clock)
    return clock, surface, Painter(surface, clock=clock, **options)


def finish(painter: Painter, content: str, *, reasoning: str = "", **changes: Any) -> None:
    result = ChatResult(
        content=content, reasoning=reasoning, model="m", usage=Usage(5, 7), **changes
    )
    painter.finish(result, pricing_mode="per_token")


def answer_outputs(surface: RecordingSurface) -> list[Mapping[str, Any]]:
    return [
        out
        for out in surface.final_outputs()
        if str(out.get("text/html", "")).startswith('<div class="bm-answer')
    ]


def answer_text(surface: RecordingSurface) -> str:
    return "".join(str(out["text/plain"]) for out in answer_outputs(surface))


# --- realistic streams ------------------------------------------------------------------------

WORDS = [
    "the",
    "model",
    "streams",
    "tokens",
    "into",
    "a",
    "notebook",
    "cell",
    "while",
    "the",
    "painter",
    "keeps",
    "bytes",
    "and",
    "messages",
    "bounded",
    "so",
    "the",
    "browser",
    "stays",
    "responsive",
    "for",
    "every",
    "reader",
    "of",
    "the",
    "answer",
]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 22))]
    if rng.random() < 0.3:
        words[rng.randrange(len(words))] = f"`{rng.choice(WORDS)}()`"
    if rng.random() < 0.2:
        words[rng.randrange(len(words))] = f"**{rng.choice(WORDS)}**"
    if rng.random() < 0.1:
        words[rng.randrange(len(words))] = "[docs](https://example.com/docs)"
    return " ".join(words).capitalize() + rng.choice(".!?.")


def _code(rng: random.Random, lines: int) -> str:
    body = [
        "    " * rng.randint(0, 2)
        + f"value_{i} = compute({rng.choice(WORDS)!r}, {i}) + {rng.randint(0, 99)}  # note"
        for i in range(lines)
    ]
    return "\n".join(["```python", *body, "```"])


def _table(rng: random.Random) -> str:
    rows = ["| name | value | note |", "|---|--:|---|"]
    rows += [
        f"| {rng.choice(WORDS)} | {rng.randint(0, 999)} | {rng.choice(WORDS)} |"
        for _ in range(rng.randint(4, 15))
    ]
    return "\n".join(rows)


def realistic_answer(rng: random.Random, chars: int) -> str:
    """Paragraphs, headings, bullet and numbered lists, code blocks, tables and math."""
    blocks: list[str] = []
    while sum(len(b) + 2 for b in blocks) < chars:
        kind = rng.random()
        if kind < 0.1:
            blocks.append("## " + _sentence(rng)[:-1])
        elif kind < 0.45:
            blocks.append(" ".join(_sentence(rng) for _ in range(rng.randint(3, 7))))
        elif kind < 0.6:
            blocks.append("\n".join(f"- {_sentence(rng)}" for _ in range(rng.randint(2, 6))))
        elif kind < 0.7:
            start = rng.randint(1, 5)
            items = [f"{start + i}. {_sentence(rng)}" for i in range(rng.randint(2, 5))]
            blocks.append("\n".join(items))
        elif kind < 0.85:
            blocks.append(_code(rng, rng.randint(5, 60)))
        elif kind < 0.95:
            blocks.append(_table(rng))
        else:
            blocks.append("Inline $x^2 + y^2$ and display:\n\n$$\\sum_{i=1}^n i$$")
    return "\n\n".join(blocks) + "\n"


def tokens_of(text: str) -> list[str]:
    """Split text into token-sized pieces (about 4 characters, whitespace attached)."""
    pieces = re.findall(r"\s*\S{1,4}|\s+", text)
    assert "".join(pieces) == text
    return pieces


def simulate(painter: Painter, clock: FakeClock, tokens: list[str], rate: float) -> None:
    """Deliver `tokens` at `rate` per second, ticking at every deadline in between."""
    for index, token in enumerate(tokens):
        arrival = index / rate
        while (deadline := painter.next_deadline()) is not None and deadline <= arrival:
            clock.now = max(clock.now, deadline)
            painter.tick()
        clock.now = arrival
        painter.add(Delta(content=token))
    end = len(tokens) / rate
    while (deadline := painter.next_deadline()) is not None and deadline <= end:
        clock.now = max(clock.now, deadline)
        painter.tick()
    clock.now = end


def max_messages_per_second(times: list[float]) -> int:
    return max(
        (bisect.bisect_left(times, t + 1.0 - 1e-6) - i for i, t in enumerate(times)), default=0
    )


def _answers() -> dict[str, str]:
    rng = random.Random(20_000)
    paragraph = " ".join(_sentence(rng) for _ in range(820))
    return {
        "realistic": realistic_answer(rng, 78_000),
        "one-code-block": _code(rng, 1_500) + "\n",
        "one-paragraph": paragraph,
    }


ANSWERS = _answers()


@pytest.mark.parametrize("rate", [3_000, 100])
@pytest.mark.parametrize("kind", list(ANSWERS))
def test_long_answer_stays_linear_bounded_and_exact(kind: str, rate: int) -> None:
    text = ANSWERS[kind]
    tokens = tokens_of(text)
    assert len(tokens) >= 20_000
    clock, surface, painter = make()
    simulate(painter, clock, tokens, rate)
    streamed = len(surface.messages)
    finish(painter, text)
    stats = painter.stats

    # Bytes stay linear, counted as the front end sees them (with message envelopes): fast
    # streams within 3x their final output; slow ones within the rate allowance.
    assert stats.final_output_bytes == sum(bundle_size(o) for o in surface.final_outputs())
    assert stats.bytes_sent == surface.total_bytes
    wire = stats.bytes_sent + MESSAGE_OVERHEAD * stats.messages
    final = stats.final_output_bytes + MESSAGE_OVERHEAD * len(surface.final_outputs())
    duration = len(tokens) / rate
    if rate >= 3_000:
        assert wire <= 3 * final
    assert wire <= max(2.5 * final + 4_096, RATE_ALLOWANCE * duration) + final
    # Messages: at most 17 in any simulated second while streaming, and at most 20 once the
    # final paint (last tail and footer) is counted too.
    times = [m.at for m in surface.messages[:streamed]]
    assert max_messages_per_second(times) <= MAX_MESSAGES_PER_SECOND
    assert max_messages_per_second([m.at for m in surface.messages]) <= 20
    assert len(surface.messages) - streamed <= 2
    assert stats.messages == len(surface.messages)
    # No token waits longer than one interval, and nothing was deferred.
    assert stats.max_lag_s <= INTERVAL + EPS
    assert stats.deferred == 0
    # Nothing is lost or duplicated: the answer outputs' plain text is the answer.
    assert answer_text(surface) == text
    for output in surface.final_outputs():
        assert_safe_html(str(output["text/html"]))


def test_frozen_segments_render_like_the_whole() -> None:
    text = ANSWERS["realistic"][:20_000]
    clock, surface, painter = make()
    simulate(painter, clock, tokens_of(text), 100)
    finish(painter, text)
    outputs = answer_outputs(surface)
    assert len(outputs) > 10
    for output in outputs:
        markup = str(output["text/html"])
        plain = str(output["text/plain"])
        assert "```" not in markup  # fences are never shown as text, even when cut
        if plain.startswith("value_") or "\nvalue_" in plain:
            assert '<div class="highlight"' in markup
        rows = [line for line in plain.splitlines() if line.startswith("| ")]
        if rows and "|---|" not in plain:
            assert "<table" in markup and "<thead>" not in markup


def test_frozen_blocks_carry_the_spacing_of_the_whole_answer() -> None:
    # Margins collapse inside one output but add up across outputs; the renderer's inline
    # spacing is the same wherever a block lands, so the segments' markup, put together, is
    # the whole answer's markup and the page shows the same gaps streamed or not.
    text = (
        "## Heading\n\nA paragraph.\n\n- one\n- two\n\n| a | n |\n|---|--:|\n| x | 1 |\n\n"
        "```python\nx = 1\n```\n\n> quoted\n\nLast paragraph."
    )
    clock, surface, painter = make()
    simulate(painter, clock, tokens_of(text), 20)
    finish(painter, text)
    outputs = answer_outputs(surface)
    assert len(outputs) >= 5
    wrapper = re.compile(r'^<div class="bm-answer[^"]*">(.*)</div>$', re.S)
    inner = [wrapper.sub(r"\1", str(out["text/html"])) for out in outputs]
    assert "".join(inner) == render_markdown(text)
    for markup in inner:
        first = re.match(r"<[a-z0-9]+ [^>]*>", markup)
        assert first is not None and "margin-top: 0" in first.group(0), markup


def test_long_code_block_is_cut_about_every_40_lines_and_stays_code() -> None:
    text = _code(random.Random(1), 130) + "\n"
    clock, surface, painter = make()
    simulate(painter, clock, tokens_of(text), 3_000)
    finish(painter, text)
    outputs = answer_outputs(surface)
    assert len(outputs) >= 3
    for output in outputs:
        if str(output["text/plain"]).strip(" \n`"):
            assert '<div class="highlight"' in str(output["text/html"])
    assert answer_text(surface) == text


def test_first_token_is_painted_at_once_then_throttled() -> None:
    clock, surface, painter = make()
    painter.add(Delta(content="Hello"))
    assert len(surface.messages) == 1
    assert "Hello" in str(surface.final_outputs()[0]["text/html"])
    clock.now = 0.03
    painter.add(Delta(content=" world"))
    assert len(surface.messages) == 1
    assert painter.next_deadline() == pytest.approx(INTERVAL)
    clock.now = 0.05
    painter.tick()
    assert len(surface.messages) == 1
    clock.now = INTERVAL
    painter.tick()
    assert len(surface.messages) == 2
    assert "Hello world" in str(surface.final_outputs()[0]["text/html"])
    assert painter.next_deadline() is None
    assert painter.stats.max_lag_s == pytest.approx(INTERVAL - 0.03)


def test_leading_edge_paints_a_late_delta_immediately() -> None:
    clock, surface, painter = make()
    painter.add(Delta(content="a"))
    clock.now = 0.5
    painter.add(Delta(content="b"))
    assert len(surface.messages) == 2
    assert painter.stats.max_lag_s == 0.0


def test_paints_are_an_interval_apart_and_cost_at_most_two_messages() -> None:
    text = ANSWERS["realistic"][:12_000]
    clock, surface, painter = make()
    simulate(painter, clock, tokens_of(text), 1_000)
    times = sorted({m.at for m in surface.messages})
    assert all(b - a >= INTERVAL - EPS for a, b in itertools.pairwise(times))
    for at in times:
        assert sum(1 for m in surface.messages if m.at == at) <= 2
    assert painter.stats.paints == len(times)


def test_final_paint_always_happens_even_when_the_budget_defers_repaints() -> None:
    clock, surface, painter = make(budget_factor=0.0, slack_bytes=0)
    text = "word " * 400
    simulate(painter, clock, tokens_of(text), 100)
    assert painter.stats.deferred > 0
    finish(painter, text, status="interrupted")
    assert answer_text(surface) == text
    footer = surface.final_outputs()[-1]
    assert "■ interrupted — partial answer" in str(footer["text/plain"])


def test_budget_deferral_delays_repaints_but_keeps_the_total_bounded() -> None:
    text = "word " * 4_000
    clock, surface, painter = make(budget_factor=1.0, slack_bytes=0, tail_limit=100_000)
    # A single line with a cut forbidden (no spaces outside a code span) cannot be cut finer.
    text = "`" + "x" * 20_000 + "`"
    simulate(painter, clock, tokens_of(text), 3_000)
    stats = painter.stats
    assert stats.deferred > 0
    finish(painter, text)
    assert answer_text(surface) == text


def test_reasoning_streams_open_then_closes_when_the_answer_starts() -> None:
    clock, surface, painter = make()
    painter.add(Delta(reasoning="Let me think <b>hard</b>."))
    first = surface.final_outputs()[0]
    assert str(first["text/html"]).startswith("<details open")
    for step in range(1, 30):
        clock.now = step * 0.02
        painter.add(Delta(reasoning=" more"))
        painter.tick()
    assert str(surface.final_outputs()[0]["text/html"]).startswith("<details open")
    clock.now = 1.0
    painter.add(Delta(content="The answer."))
    outputs = surface.final_outputs()
    reasoning = str(outputs[0]["text/html"])
    assert reasoning.startswith("<details ")
    assert "<details open" not in reasoning
    assert "Reasoning (30 tokens)" in reasoning
    assert "&lt;b&gt;hard&lt;/b&gt;" in reasoning
    assert "The answer." in str(outputs[1]["text/html"])
    clock.now = 1.2
    finish(painter, "The answer.", reasoning="Let me think <b>hard</b>." + " more" * 29)
    outputs = surface.final_outputs()
    assert len(outputs) == 3
    assert str(outputs[2]["text/html"]).startswith('<div class="bm-footer')


def test_finish_uses_reported_reasoning_tokens_and_paints_extras_before_footer() -> None:
    _clock, surface, painter = make()
    painter.add(Delta(reasoning="r"))
    extra = {"text/html": "<div>tools</div>", "text/plain": "tools", "application/json": {"a": 1}}
    painter.finish(
        ChatResult(content="", reasoning="r", model="m", usage=Usage(1, 50, 42)),
        pricing_mode="per_call",
        extra=[extra],
    )
    outputs = surface.final_outputs()
    assert "Reasoning (42 tokens)" in str(outputs[0]["text/html"])
    assert outputs[1] == extra
    assert "per call" in str(outputs[2]["text/plain"])
    assert painter.next_deadline() is None


def test_finish_without_streaming_shows_the_whole_result() -> None:
    _clock, surface, painter = make()
    finish(painter, "# Title\n\nBody with `code`.\n", reasoning="why")
    outputs = surface.final_outputs()
    assert len(outputs) == 3
    assert "<details " in str(outputs[0]["text/html"])
    assert re.search(r"<h1[^>]*>Title</h1>", str(outputs[1]["text/html"]))
    assert outputs[1]["text/plain"] == "# Title\n\nBody with `code`.\n"


def test_error_result_is_marked_in_the_footer() -> None:
    _clock, surface, painter = make()
    painter.add(Delta(content="partial"))
    finish(painter, "partial", status="error", error="server said <no>")
    footer = surface.final_outputs()[-1]
    assert "⚠ error: server said &lt;no&gt;" in str(footer["text/html"])
    assert answer_text(surface) == "partial"


def test_deltas_after_finish_are_refused() -> None:
    _clock, _surface, painter = make()
    finish(painter, "done")
    with pytest.raises(RuntimeError, match="before finish"):
        painter.add(Delta(content="late"))


def test_blank_line_freezes_finished_blocks_with_ordered_start_numbers() -> None:
    clock, surface, painter = make()
    text = "1. one\n2. two\n\n3. three\n"
    simulate(painter, clock, tokens_of(text), 10)
    finish(painter, text)
    outputs = answer_outputs(surface)
    assert len(outputs) == 2
    assert '<ol start="3"' in str(outputs[1]["text/html"])
    assert answer_text(surface) == text


def test_a_cut_mid_line_does_not_start_a_list_or_heading() -> None:
    context = painter_module._Context(mid_line=True)
    assert painter_module._source("# not a heading", context) == "\\# not a heading"
    assert painter_module._source("12. not a list", context) == "12\\. not a list"
    assert painter_module._source("plain", context) == "plain"
    rendered = answer_bundle("- x", source=painter_module._source("- x", context))
    assert "<li>" not in rendered["text/html"]


def _reference_mid_line_cut(tail: str) -> int | None:
    """The mid-line cut rule written plainly: the latest candidate leaving nothing open."""
    start = tail.rfind("\n") + 1
    line = tail[start:]
    for pattern in (painter_module._SENTENCE_END_RE, painter_module._SPACE_RE):
        for match in reversed(list(pattern.finditer(line))):
            head = line[: match.end()]
            text = tail[:start] + head
            if (
                text.count("`") % 2 == 0
                and text.count("$$") % 2 == 0
                and head.count("[") == head.count("]")
                and head.count("(") == head.count(")")
            ):
                return start + match.end()
    return None


def test_mid_line_cut_matches_the_plain_rule_on_random_lines() -> None:
    rng = random.Random(7)
    alphabet = ["word", " ", "  ", ". ", "; ", "`", "$$", "$", "[", "]", "(", ")", "\n", "x"]
    for _ in range(400):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        scan = painter_module._scan(tail, painter_module._Context())
        cut = painter_module._mid_line_cut(tail, scan)
        inside = scan.end_context.fence or scan.end_context.table_header
        expected = None if inside else _reference_mid_line_cut(tail)
        assert (cut.position if cut else None) == expected, tail


def test_mid_line_cut_scans_a_long_one_line_json_tail_in_one_pass() -> None:
    # An open "[" blocks every candidate; each piece of the line is counted once, not once per
    # candidate (a 100 KB line of compact JSON took seconds per paint when rescanned).
    tail = "[" + ", ".join(str(n) for n in range(20_000))
    scan = painter_module._scan(tail, painter_module._Context())
    counted: list[int] = []

    class CountingStr(str):
        def __getitem__(self, key: Any) -> CountingStr:
            return CountingStr(str.__getitem__(self, key))

        def count(self, sub: str, *args: Any) -> int:
            counted.append(len(self))
            return str.count(self, sub, *args)

    cut = painter_module._mid_line_cut(CountingStr(tail), scan)
    assert cut is None
    assert sum(counted) <= 20 * len(tail)


# --- surfaces ---------------------------------------------------------------------------------


def test_recording_surface_records_sizes_and_final_outputs() -> None:
    surface = RecordingSurface(clock=lambda: 1.5)
    slot = surface.show({"text/plain": "a"})
    surface.update(slot, {"text/plain": "bb"})
    assert [m.kind for m in surface.messages] == ["show", "update"]
    assert surface.messages[1].at == 1.5
    assert surface.total_bytes == bundle_size({"text/plain": "a"}) + bundle_size(
        {"text/plain": "bb"}
    )
    assert surface.final_outputs() == [{"text/plain": "bb"}]
    with pytest.raises(IndexError):
        surface.update(5, {})


def test_ipython_surface_uses_display_handles_under_a_shell() -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    surface = IPythonSurface()
    with capture_output() as captured:  # type: ignore[no-untyped-call]
        slot = surface.show({"text/html": "<b>1</b>", "text/plain": "1"})
        surface.update(slot, {"text/html": "<b>2</b>", "text/plain": "2"})
    first, second = captured.outputs
    assert first.data == {"text/html": "<b>1</b>", "text/plain": "1"}
    assert not first.update
    assert second.update
    assert second.data["text/plain"] == "2"
    assert first.transient["display_id"] == second.transient["display_id"]


def test_ipython_surface_without_a_shell_prints_plain_text_on_close(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setattr(InteractiveShell, "initialized", classmethod(lambda cls: False))
    surface = IPythonSurface()
    slot = surface.show({"text/html": "<b>x</b>", "text/plain": "draft"})
    surface.update(slot, {"text/html": "<b>y</b>", "text/plain": "final"})
    assert capsys.readouterr().out == ""
    surface.close()
    assert capsys.readouterr().out == "final\n"
