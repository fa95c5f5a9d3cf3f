"""`%baseten help`: a short overview and two long lists, each an HTML + plain-text bundle."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest

from baseten_magic.core.params import PARAMETERS
from baseten_magic.notebook.help import HELP_TOPICS, help_bundle, parameters_help
from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.notebook.options import option_rows

SUBCOMMANDS = [("%baseten cost", "the costs"), ("%baseten help [options|params]", "this help")]


class _Text(HTMLParser):
    """The text a page shows for some HTML, and the tags it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def shown(markup: str) -> _Text:
    parser = _Text()
    parser.feed(markup)
    return parser


def bundle(topic: str | None) -> dict[str, str]:
    return help_bundle(topic, options=option_rows(BasetenMagics.baseten), subcommands=SUBCOMMANDS)


def test_the_overview_is_short_and_has_no_design_notes() -> None:
    overview = bundle(None)
    assert set(overview) == {"text/html", "text/plain"}
    plain = overview["text/plain"]
    assert len(plain.splitlines()) <= 50  # it was 157 lines
    assert max(len(line) for line in plain.splitlines()) <= 100
    for leak in ("Rule:", "::", "%baseten [-m MODEL]"):
        assert leak not in plain
        assert leak not in overview["text/html"]
    for text in ("%%baseten", "--model", "--param NAME=VALUE", "%baseten cost", "@assistant"):
        assert text in plain
    assert "%baseten help options" in plain and "%baseten help params" in plain


def test_the_overview_html_says_what_the_plain_text_says() -> None:
    overview = bundle(None)
    page = shown(overview["text/html"])
    text = " ".join("".join(page.parts).split())
    assert {"table", "pre"} <= page.tags
    assert not page.tags & {"script", "img", "iframe"}
    for key, _ in SUBCOMMANDS:
        assert key in text
    # The plain text's words in the same order, whatever the layout.
    assert "".join(text.split()) == "".join(overview["text/plain"].split())


def test_help_options_lists_every_option_and_params_every_parameter() -> None:
    assert set(HELP_TOPICS) == {"options", "params"}
    options = bundle("options")["text/plain"]
    for row in option_rows(BasetenMagics.baseten):
        assert row[0] in options
    assert "--pricing per_token|per_call" in options
    params = bundle("params")
    for name in PARAMETERS:
        assert re.search(rf"^  {re.escape(name)} ", params["text/plain"], re.MULTILINE)
        assert f">{html.escape(name)}<" in params["text/html"]
    assert parameters_help() == params["text/plain"]


def test_help_html_escapes_its_text() -> None:
    markup = help_bundle("options", options=[("--x <b>", "a & b")], subcommands=[])["text/html"]
    assert "--x &lt;b&gt;" in markup and "a &amp; b" in markup


def test_cell_magic_help_names_the_cell_magic() -> None:
    doc = BasetenMagics.baseten.__doc__ or ""
    assert doc.startswith("usage: %%baseten [options]")
    assert "::" not in doc
    assert "--temperature X" in doc


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("--temprature 0.5", "did you mean --temperature?"),
        ("--temprature=0.5", "did you mean --temperature?"),
        ("--top_p 0.5", "did you mean --top-p?"),
        ("--sytem hi", "did you mean --system?"),
        ("-M glm", "did you mean -m?"),
    ],
)
def test_a_typod_option_gets_the_close_one(line: str, hint: str) -> None:
    from IPython.core.error import UsageError

    from baseten_magic.notebook.options import parse_options

    with pytest.raises(UsageError) as info:
        parse_options(BasetenMagics.baseten, line)
    message = str(info.value)
    assert hint in message
    assert message.startswith("%%baseten has no option ")
    assert message.endswith("%%baseten? lists the options")


def test_prefixes_and_far_off_names_get_no_wrong_hint() -> None:
    from IPython.core.error import UsageError

    from baseten_magic.notebook.options import parse_options

    assert parse_options(BasetenMagics.baseten, "--temp 0.5").temperature == "0.5"
    with pytest.raises(UsageError) as info:
        parse_options(BasetenMagics.baseten, "--zzzz")
    assert "did you mean" not in str(info.value)
    with pytest.raises(UsageError, match="expected one argument"):
        parse_options(BasetenMagics.baseten, "--temperature")
