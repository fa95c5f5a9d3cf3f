"""render.markdown: model text never reaches the page as live markup, and Markdown still renders.

Each XSS case must come out with its text visible (escaped, as text a reader can see), pass
`assert_safe_html`, and be what the renderer produced on its own (the final check is a backstop,
not the thing that makes the case safe).
"""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser

import pytest

from baseten_magic.render import markdown
from baseten_magic.render.markdown import (
    UnsafeHTMLError,
    assert_safe_html,
    escape_text,
    is_safe_url,
    render_markdown,
)

MONO = markdown.MONOSPACE
SPACING = markdown.BLOCK_SPACING


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.tags: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def visible(markup: str) -> str:
    """The text a reader sees (tags removed, entities decoded)."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


def tags(markup: str) -> list[str]:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return parser.tags


# (markdown source, text that must be visible in the output)
XSS_CASES: list[tuple[str, str]] = [
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>"),
    ("before <img src=x onerror=alert(1)> after", "<img src=x onerror=alert(1)>"),
    ("<svg onload=alert(1)>", "<svg onload=alert(1)>"),
    ('<iframe src="https://evil.example"></iframe>', '<iframe src="https://evil.example">'),
    ('<iframe srcdoc="<script>alert(1)</script>">', "srcdoc="),
    ("<style>body { display: none }</style>", "<style>"),
    ("<object data=x></object><embed src=x>", "<embed src=x>"),
    ('<div onclick="alert(1)">\nblock\n</div>', '<div onclick="alert(1)">'),
    ('<a href="javascript:alert(1)">raw link</a>', '<a href="javascript:alert(1)">'),
    ("[click](javascript:alert(1))", "javascript:alert(1)"),
    ("[click](JaVaScRiPt:alert(1))", "JaVaScRiPt:alert(1)"),
    ("[click]( javascript:alert(1) )", "javascript:alert(1)"),
    ("[click](javascript&colon;alert(1))", "click"),
    ("[click](&#x6A;avascript:alert(1))", "click"),
    ("[click](java&#9;script:alert(1))", "click"),
    ("[click](%6Aavascript:alert(1))", "click"),
    ("[click](<javascript:alert(1)>)", "javascript:alert(1)"),
    ("[click](vbscript:msgbox(1))", "vbscript:msgbox(1)"),
    ("[click](data:text/html;base64,PHNjcmlwdD4=)", "data:text/html"),
    ("[click](file:///etc/passwd)", "file:///etc/passwd"),
    ("[click][ref]\n\n[ref]: javascript:alert(1)", "javascript:alert(1)"),
    ("[click][ref]\n\n[ref]: JAVASCRIPT&#58;alert(1)", "click"),
    ("<javascript:alert(1)>", "<javascript:alert(1)>"),
    ("<JavaScript:alert(1)>", "<JavaScript:alert(1)>"),
    ("<data:text/html,<script>alert(1)</script>>", "alert(1)"),
    ("![x](data:image/png;base64,iVBORw0KGgo=)", "data:image/png"),
    ("![x](javascript:alert(1))", "javascript:alert(1)"),
    ("`<img src=x onerror=alert(1)>`", "<img src=x onerror=alert(1)>"),
    ("```html\n<script>alert(1)</script>\n```", "<script>alert(1)</script>"),
    ("```\n<script>alert(1)</script>\n```", "<script>alert(1)</script>"),
    ("```no-such-language\n<svg onload=alert(1)>\n```", "<svg onload=alert(1)>"),
    ("    <script>alert(1)</script>", "<script>alert(1)</script>"),
    ("[<img src=x onerror=alert(1)>](https://example.com)", "<img src=x onerror=alert(1)>"),
    ('[t](https://example.com "x\\" onmouseover=\\"alert(1)")', "t"),
    ('[t](https://example.com/"onmouseover="alert(1))', "t"),
    ("$<img src=x onerror=alert(1)>$", "<img src=x onerror=alert(1)>"),
    ("$$\n</span><script>alert(1)</script>\n$$", "<script>alert(1)</script>"),
    ("| a |\n|---|\n| <img src=x onerror=alert(1)> |", "<img src=x onerror=alert(1)>"),
    ("<!-- comment --><!DOCTYPE html><![CDATA[x]]>", "<!-- comment -->"),
]


@pytest.mark.parametrize(("source", "text"), XSS_CASES, ids=[c[0][:40] for c in XSS_CASES])
def test_xss_case_is_shown_as_text_and_safe(source: str, text: str) -> None:
    out = render_markdown(source)
    assert_safe_html(out)
    assert text in visible(out)
    # Not the fail-closed fallback: the renderer itself produced safe output.
    assert out == markdown._render_unchecked(source)
    for bad in ("script", "img", "iframe", "svg", "style", "object", "embed"):
        assert bad not in tags(out)


def _hrefs(markup: str) -> list[str]:
    found: list[str] = []

    class _Links(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend((value or "").lower() for name, value in attrs if name == "href")

    _Links().feed(markup)
    return found


@pytest.mark.parametrize(("source", "text"), XSS_CASES, ids=[c[0][:40] for c in XSS_CASES])
def test_xss_case_has_no_unsafe_link(source: str, text: str) -> None:
    for href in _hrefs(render_markdown(source)):
        assert is_safe_url(href)
        assert href.startswith(("https://", "http://", "mailto:", "#", "/", ".")) or ":" not in href


def test_image_becomes_a_link_showing_its_alt_text() -> None:
    out = render_markdown("![a *cat* photo](https://example.com/cat.png)")
    assert "img" not in tags(out)
    assert '<a href="https://example.com/cat.png"' in out
    assert "a cat photo" in visible(out)
    assert 'rel="noopener noreferrer nofollow"' in out


def test_links_open_in_a_new_tab_without_opener() -> None:
    out = render_markdown(
        "[web](https://example.com/a?b=1) [rel](./notes.md) [frag](#part) [mail](mailto:a@b.org)"
    )
    assert _hrefs(out) == ["https://example.com/a?b=1", "./notes.md", "#part", "mailto:a@b.org"]
    assert out.count('target="_blank" rel="noopener noreferrer nofollow"') == 4


def test_autolink_http_is_a_link() -> None:
    out = render_markdown("see <https://example.com/x>")
    assert _hrefs(out) == ["https://example.com/x"]


@pytest.mark.parametrize(
    "url",
    [
        "https://a.b/c",
        "http://a.b",
        "mailto:x@y.z",
        "/abs/path",
        "rel/path",
        "./x:y",
        "#frag",
        "?q=1",
    ],
)
def test_safe_urls(url: str) -> None:
    assert is_safe_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "\x01javascript:alert(1)",
        "javascript&colon;alert(1)",
        "&#106;avascript:alert(1)",
        "%6Aavascript:alert(1)",
        "%256Aavascript:alert(1)",
        "vbscript:x",
        "data:text/html,x",
        "data:image/png;base64,AAAA",
        "file:///etc/passwd",
        "ftp://example.com",
        "weird:thing",
        "",
    ],
)
def test_unsafe_urls(url: str) -> None:
    assert not is_safe_url(url)


@pytest.mark.parametrize(
    "markup",
    [
        "<script>alert(1)</script>",
        "<SCRIPT>alert(1)</SCRIPT>",
        "<img src=x>",
        "<iframe></iframe>",
        "<object></object>",
        "<embed>",
        "<svg></svg>",
        "<style>p{}</style>",
        "<math></math>",
        "<form></form>",
        '<p onclick="x">t</p>',
        '<p ONMOUSEOVER="x">t</p>',
        '<div srcdoc="x"></div>',
        '<a href="javascript:alert(1)">x</a>',
        '<a href="&#106;avascript:alert(1)">x</a>',
        '<a href="https://x" target="_blank">x</a>',
        '<span style="background: url(https://x/y.png)">x</span>',
        '<span style="width: expression(alert(1))">x</span>',
        "<!-- hidden -->",
        "<p>unterminated <scr",
        "<p class='x'>single-quoted</p>",
        "<p class=x>unquoted</p>",
        "<a/href=x>",
    ],
)
def test_assert_safe_html_rejects(markup: str) -> None:
    with pytest.raises(UnsafeHTMLError):
        assert_safe_html(markup)


def test_random_markdown_soup_renders_safe_without_the_fallback() -> None:
    rng = random.Random(7)
    alphabet = [*"<>&\"'`$*_[]()!#|-:\n \t\\/=~.1aAjs", "javascript:", "<img ", "onerror=",
                "```py\n", "$$", "](", "![", "http://x", "&#", "&colon;", "<script>",
                "| --- |\n", "1. ", "> ", "<!--", "\x00", "\u2028"]  # fmt: skip
    for _ in range(2_000):
        source = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        assert_safe_html(markdown._render_unchecked(source))


def test_assert_safe_html_accepts_escaped_text_that_looks_dangerous() -> None:
    assert_safe_html("<p>&lt;script&gt; onerror=alert(1) javascript:alert(1) &lt;img&gt;</p>")


def test_render_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str, *, highlight: bool = True) -> str:
        return "<script>alert(1)</script>"

    monkeypatch.setattr(markdown, "_render_unchecked", broken)
    out = render_markdown("**hello** <b>")
    assert_safe_html(out)
    assert visible(out) == "**hello** <b>"


def test_escape_text_is_pre_wrap_and_escaped() -> None:
    out = escape_text("a <b> & 'c'\n  d")
    assert "white-space: pre-wrap" in out
    assert visible(out) == "a <b> & 'c'\n  d"
    assert tags(out) == ["div"]


# --- Markdown still renders ---------------------------------------------------------------------


def test_headings_emphasis_strikethrough() -> None:
    out = render_markdown("# Title\n\n## Sub\n\n*em* **strong** ~~gone~~ `code`")
    assert re.search(r"<h1[^>]*>Title</h1>", out)
    assert re.search(r"<h2[^>]*>Sub</h2>", out)
    for fragment in ("<em>em</em>", "<strong>strong</strong>"):
        assert fragment in out
    assert "<s>gone</s>" in out
    assert f'<code style="{MONO};">code</code>' in out


def test_lists_keep_ordered_start_numbers() -> None:
    assert "<ul " in render_markdown("- a\n- b")
    out = render_markdown("3. three\n4. four")
    assert '<ol start="3" ' in out
    assert out.count("<li>") == 2


def test_tables_with_alignment() -> None:
    out = render_markdown("| a | b | c |\n|:--|--:|:-:|\n| 1 | 2 | 3 |")
    assert "<table " in out
    assert '<th style="text-align: left;">a</th>' in out
    assert '<td style="text-align: right;">2</td>' in out
    assert '<td style="text-align: center;">3</td>' in out
    assert_safe_html(out)


def test_unaligned_table_columns_are_left_aligned_inline() -> None:
    # JupyterLab right-aligns td by default; the renderer says what the Markdown says.
    out = render_markdown("| name | note |\n|---|---|\n| alpha | first one |")
    cells = re.findall(r"<t[hd](?: [^>]*)?>", out)
    assert cells == [
        '<th style="text-align: left;">',
        '<th style="text-align: left;">',
        '<td style="text-align: left;">',
        '<td style="text-align: left;">',
    ]
    assert_safe_html(out)


def test_code_is_monospace_inline_for_static_exports() -> None:
    # nbconvert's HTML has no rule for a highlighted <pre>: the font must be on the element.
    out = render_markdown("Use `df.rolling(3)`:\n\n```python\nx = 1\n```\n\n```\nplain\n```")
    pres = re.findall(r"<pre[^>]*>", out)
    assert len(pres) == 2
    for tag in pres + re.findall(r"<code[^>]*>", out):
        if tag != "<code>":  # the <code> inside a plain <pre> inherits the pre's font
            assert "font-family:" in tag and "monospace" in tag, tag
    assert_safe_html(out)


def test_fenced_code_is_highlighted_with_inline_styles() -> None:
    out = render_markdown('```python\ndef f(x):\n    return "<b>"\n```')
    assert '<div class="highlight" style="background:' in out
    assert '<span style="color:' in out
    assert "class=" not in out.replace('class="highlight"', "")
    assert "&lt;b&gt;" in out
    assert_safe_html(out)


def test_code_without_highlighting_is_plain_pre() -> None:
    out = render_markdown("```python\nx = '<b>'\n```", highlight=False)
    assert out.startswith(f'<pre style="{MONO}; line-height: 125%; {SPACING}"><code>')
    assert "&lt;b&gt;" in out
    assert "<span" not in out


def test_unknown_language_is_escaped_plain_pre() -> None:
    out = render_markdown("```klingon\nqapla' <x>\n```")
    pre = f'<pre style="{MONO}; line-height: 125%; {SPACING}">'
    assert out == pre + "<code>qapla' &lt;x&gt;\n</code></pre>\n"


def test_inline_and_display_math_left_for_mathjax() -> None:
    out = render_markdown("Euler: $e^{i\\pi} < 0$.\n\n$$\n\\sum_{i=1}^n i\n$$")
    assert "\\(e^{i\\pi} &lt; 0\\)" in out
    assert '<span class="math inline' in out
    assert "\\[\n\\sum_{i=1}^n i\n\\]" in out or "\\[\\sum_{i=1}^n i\n\\]" in out
    assert '<div class="math display' in out
    assert_safe_html(out)


def test_display_math_inside_a_paragraph_stays_inline_markup() -> None:
    out = render_markdown("so $$x^2$$ here")
    assert "<div" not in out
    assert "\\[x^2\\]" in out


def test_currency_is_not_math() -> None:
    out = render_markdown("It costs $5 and $10 today.")
    assert "math" not in out
    assert "$5 and $10" in out
