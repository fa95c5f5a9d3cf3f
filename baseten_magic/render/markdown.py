"""Safe Markdown: the only path by which model text becomes HTML.

Rule: model text is untrusted. Output shown in a live session is trusted by JupyterLab and is
not sanitized, so nothing the model writes may reach the page as live markup: raw HTML is
escaped as text, links are allow-listed (http, https, mailto, relative, `#fragment`), images
become plain links (nothing loads), code is highlighted with inline styles, math is escaped and
left for MathJax. The look that must survive a static export (nbconvert HTML has none of
JupyterLab's rules for it) is inline too: code in a monospace font, table cells aligned as the
Markdown's delimiter row says (left by default). So is the spacing of top-level blocks (margin
below only, padding above headings): margins that collapse inside one output add up across
outputs, and a streamed answer is several outputs (the painter freezes finished blocks), so
only margins that never collapse make it look like the same answer sent whole. Every rendering
is checked by `assert_safe_html` before it is returned; a rendering that fails the check is
replaced by escaped plain text (fail closed).
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_all_lexers, get_lexer_by_name
from pygments.util import ClassNotFound

__all__ = [
    "BLOCK_SPACING",
    "CODE_STYLE",
    "MONOSPACE",
    "UnsafeHTMLError",
    "assert_safe_html",
    "escape_text",
    "is_safe_url",
    "render_markdown",
]

#: Pygments style for fenced code: light, readable on JupyterLab's light theme.
CODE_STYLE = "default"

_SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME_RE = re.compile(r"^([a-z][a-z0-9+.\-]*):")
# Browsers drop ASCII tab/newline anywhere in a URL and trim C0 controls and spaces at its ends,
# so "java\tscript:" is a javascript: URL; remove all of them before looking for a scheme.
_URL_JUNK_RE = re.compile(r"[\x00-\x20\x7f]+")
_LINK_ATTRS = ' target="_blank" rel="noopener noreferrer nofollow"'
# Classes that make MathJax (v3 and the v2 names nbconvert uses) typeset only our math spans.
_MATH_PROCESS = "mathjax_process tex2jax_process"
_PRE_WRAP = "white-space: pre-wrap; word-break: break-word; margin: 0;"
# JupyterLab's code font where its variables exist (Lab, nbconvert's lab template); a monospace
# stack elsewhere. Without it a static export shows code in the page's proportional font.
MONOSPACE = (
    "font-family: var(--jp-code-font-family, Menlo, Consolas, 'DejaVu Sans Mono', monospace)"
)
_PLAIN_PRE_STYLE = f"{MONOSPACE}; line-height: 125%;"
_CELL_ALIGN = frozenset({"left", "center", "right"})
# Top-level blocks: space below only (see the module docstring); headings keep their air above
# as padding, which never collapses either.
BLOCK_SPACING = "margin-top: 0; margin-bottom: 1em;"
_HEADING_SPACING = "margin-top: 0; margin-bottom: 0.5em; padding-top: 0.5em;"
_SPACED_BLOCKS = frozenset(
    {
        "paragraph_open", "bullet_list_open", "ordered_list_open", "blockquote_open",
        "table_open", "hr",
    }
)  # fmt: skip


class UnsafeHTMLError(ValueError):
    """Rendered HTML contains markup that could run script or load content."""


def is_safe_url(url: str) -> bool:
    """True for http, https and mailto URLs, relative URLs and `#fragment` links."""
    cleaned = url
    # Undo percent- and entity-encoding until stable, so encoded schemes cannot hide.
    for _ in range(4):
        decoded = _URL_JUNK_RE.sub("", html.unescape(unquote(cleaned))).lower()
        if decoded == cleaned:
            break
        cleaned = decoded
    else:
        return False
    if not cleaned:
        return False
    match = _SCHEME_RE.match(cleaned)
    if match is not None:
        return match.group(1) in _SAFE_SCHEMES
    # No valid scheme: a colon before the first "/", "?" or "#" is something a browser might
    # still read as a scheme; refuse it rather than guess.
    head = re.split(r"[/?#\\]", cleaned, maxsplit=1)[0]
    return ":" not in head


def escape_text(text: str) -> str:
    """HTML showing `text` verbatim: escaped, in a pre-wrap block."""
    return f'<div style="{_PRE_WRAP}">{html.escape(text, quote=True)}</div>'


def render_markdown(text: str, *, highlight: bool = True) -> str:
    """Render untrusted Markdown to safe HTML (see the module docstring for what is allowed).

    `highlight=False` shows fenced code as escaped plain `<pre>`: several times smaller, for
    previews that are repainted often.
    """
    rendered = _render_unchecked(text, highlight=highlight)
    try:
        assert_safe_html(rendered)
    except UnsafeHTMLError:
        return escape_text(text)
    return rendered


def _render_unchecked(text: str, *, highlight: bool = True) -> str:
    """Render without the final check (tests use it to show the check is not masking bugs)."""
    return str(_parser().render(text, {"bm_links": [], "bm_highlight": highlight}))


# --- the parser -------------------------------------------------------------------------------


@functools.cache
def _parser() -> MarkdownIt:
    """Build the configured parser once per process (construction is costlier than a render)."""
    md = MarkdownIt(
        "commonmark",
        {"html": False, "linkify": False, "typographer": False, "breaks": False},
    )
    md.enable(["table", "strikethrough"])
    md.use(
        dollarmath_plugin,
        allow_labels=False,
        # Currency ("$5 and $10") must stay text: no digits or spaces next to inline delimiters.
        allow_space=False,
        allow_digits=False,
        allow_blank_lines=False,
        double_inline=True,
    )
    md.validateLink = is_safe_url  # type: ignore[method-assign]
    for name, rule in _RULES.items():
        md.add_render_rule(name, rule)
    md.core.ruler.push("bm_block_spacing", _space_blocks)
    return md


def _space_blocks(state: Any) -> None:
    """Give every top-level block the inline spacing described in the module docstring."""
    for token in state.tokens:
        if token.level != 0:
            continue
        if token.type in _SPACED_BLOCKS:
            token.attrSet("style", BLOCK_SPACING)
        elif token.type == "heading_open":
            token.attrSet("style", _HEADING_SPACING)


def _link_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    href = str(token.attrGet("href") or "")
    safe = is_safe_url(href)
    # Remember the decision so the matching link_close emits a tag only if this one did.
    env["bm_links"].append(safe)
    if not safe:
        return ""
    title = token.attrGet("title")
    title_attr = f' title="{escapeHtml(str(title))}"' if title else ""
    return f'<a href="{escapeHtml(href)}"{_LINK_ATTRS}{title_attr}>'


def _link_close(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    stack: list[bool] = env["bm_links"]
    return "</a>" if stack and stack.pop() else ""


def _image(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    label = f"🖼 {escapeHtml(alt)}"
    src = str(token.attrGet("src") or "")
    if not is_safe_url(src):
        return label
    return f'<a href="{escapeHtml(src)}"{_LINK_ATTRS}>{label}</a>'


def _fence(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    info = html.unescape(token.info).strip()
    language = info.split(maxsplit=1)[0] if info and env.get("bm_highlight", True) else ""
    return highlight_code(token.content, language, top_level=token.level == 0)


def highlight_code(code: str, language: str, *, top_level: bool = False) -> str:
    """Highlight `code` with inline styles; unknown or empty language gives escaped `<pre>`.

    `top_level` adds the block spacing a top-level block gets (see the module docstring).
    """
    lexer = _lexer(language.lower()) if language else None
    if lexer is not None:
        return str(highlight(code, lexer, _formatter(top_level)))
    spacing = f" {BLOCK_SPACING}" if top_level else ""
    return f'<pre style="{_PLAIN_PRE_STYLE}{spacing}"><code>{escapeHtml(code)}</code></pre>\n'


@functools.cache
def _known_languages() -> frozenset[str]:
    # Built-in lexers only: an unknown name would otherwise scan installed plugins (slow, and
    # code the project did not choose).
    return frozenset(
        alias for _, aliases, _, _ in get_all_lexers(plugins=False) for alias in aliases
    )


@functools.lru_cache(maxsize=128)
def _lexer(language: str) -> Lexer | None:
    if language not in _known_languages():
        return None
    try:
        return get_lexer_by_name(language)
    except ClassNotFound:
        return None


@functools.cache
def _formatter(top_level: bool = False) -> HtmlFormatter[str]:
    # The wrapping div takes the block spacing; Pygments' own <pre> has no margin of its own
    # in Lab, and `margin: 0` keeps it so elsewhere.
    return HtmlFormatter(
        noclasses=True,
        style=CODE_STYLE,
        prestyles=f"{MONOSPACE}; margin: 0",
        cssstyles=BLOCK_SPACING.rstrip(";") if top_level else "",
    )


def _code_inline(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return f'<code style="{MONOSPACE};">{escapeHtml(tokens[idx].content)}</code>'


def _cell_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    # markdown-it marks an aligned column with style="text-align:X"; an unaligned one gets
    # nothing and JupyterLab's default (right) would apply, which suits numbers only.
    token = tokens[idx]
    declared = str(token.attrGet("style") or "").partition("text-align:")[2].strip(" ;")
    align = declared if declared in _CELL_ALIGN else "left"
    return f'<{token.tag} style="text-align: {align};">'


def _as_text(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    # Raw HTML is disabled in the parser; escape anyway should a token ever appear.
    return escapeHtml(tokens[idx].content)


def _math_inline(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    content = escapeHtml(tokens[idx].content)
    return f'<span class="math inline {_MATH_PROCESS}">\\({content}\\)</span>'


def _math_display(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    content = escapeHtml(tokens[idx].content)
    style = f' style="{BLOCK_SPACING}"' if tokens[idx].level == 0 else ""
    return f'<div class="math display {_MATH_PROCESS}"{style}>\\[{content}\\]</div>\n'


def _math_display_inline(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    # Inside a paragraph a <div> would end the <p>; a span still typesets as display math.
    content = escapeHtml(tokens[idx].content)
    return f'<span class="math display {_MATH_PROCESS}">\\[{content}\\]</span>'


_RULES = {
    "link_open": _link_open,
    "link_close": _link_close,
    "image": _image,
    "fence": _fence,
    "code_block": _fence,
    "code_inline": _code_inline,
    "th_open": _cell_open,
    "td_open": _cell_open,
    "html_block": _as_text,
    "html_inline": _as_text,
    "math_inline": _math_inline,
    "math_inline_double": _math_display_inline,
    "math_block": _math_display,
    "math_block_label": _math_display,
}


# --- the final check --------------------------------------------------------------------------

_ALLOWED_TAGS = frozenset(
    {
        "a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "s", "del",
        "code", "pre", "ul", "ol", "li", "blockquote", "table", "thead", "tbody", "tfoot", "tr",
        "th", "td", "span", "div", "details", "summary", "small",
    }
)  # fmt: skip
_ALLOWED_ATTRS = frozenset({"href", "title", "target", "rel", "class", "style", "start", "open"})
_BAD_CSS_RE = re.compile(r"url\s*\(|expression|javascript|@import|\\|behavior|binding", re.I)
# The only tag shape accepted: lowercase names, attributes double-quoted with no raw quote or
# angle bracket inside. Stricter than HTML (nothing a browser could read two ways gets through)
# and exactly what the renderer, Pygments and the bundles produce.
_TAG_RE = re.compile(r'<(/?)([a-z][a-z0-9]*)((?:\s+[a-z][a-z-]*(?:="[^"<>]*")?)*)\s*/?>')
_ATTR_RE = re.compile(r'\s+([a-z][a-z-]*)(?:="([^"<>]*)")?')


def assert_safe_html(markup: str) -> None:
    """Raise `UnsafeHTMLError` if `markup` holds tags, attributes or URLs that could run script."""
    position = markup.find("<")
    while position != -1:
        match = _TAG_RE.match(markup, position)
        if match is None:
            snippet = markup[position : position + 12]
            raise UnsafeHTMLError(f"expected only plain formatting tags, found {snippet!r}")
        closing, tag, attributes = match.groups()
        if tag not in _ALLOWED_TAGS:
            raise UnsafeHTMLError(f"expected only formatting tags, found <{closing}{tag}>")
        if attributes:
            _check_attributes(tag, attributes)
        position = markup.find("<", match.end())


def _check_attributes(tag: str, attributes: str) -> None:
    values: dict[str, str] = {}
    for match in _ATTR_RE.finditer(attributes):
        name = match.group(1)
        value = html.unescape(match.group(2) or "")
        if name.startswith("on") or name not in _ALLOWED_ATTRS:
            raise UnsafeHTMLError(f"expected only plain attributes, found {name}= on <{tag}>")
        if name == "href" and not is_safe_url(value):
            raise UnsafeHTMLError(f"expected an http(s), mailto or relative link on <{tag}>")
        if name == "style" and _BAD_CSS_RE.search(value):
            raise UnsafeHTMLError(f"expected plain inline CSS, found active CSS on <{tag}>")
        values[name] = value
    if "target" in values and "noopener" not in values.get("rel", ""):
        raise UnsafeHTMLError(f"expected rel=noopener with target= on <{tag}>")
