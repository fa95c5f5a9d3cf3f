"""Cell text → messages: the multi-turn syntax documented in baseten_magic.notebook.cells."""

from __future__ import annotations

import pytest

from baseten_magic.core.errors import ParameterError
from baseten_magic.notebook.cells import parse_cell


def test_plain_text_is_one_user_message() -> None:
    cell = parse_cell("\nWhat is 2+2?\n  indented line\n\n")
    assert cell.system is None
    assert cell.messages == ({"role": "user", "content": "What is 2+2?\n  indented line"},)


def test_markers_split_roles_case_insensitive_with_spaces() -> None:
    cell = parse_cell("  @SYSTEM  \nBe brief.\n@user\nhi\n\t@Assistant\nhello\n@user\nagain")
    assert cell.system == "Be brief."
    assert [m["role"] for m in cell.messages] == ["user", "assistant", "user"]
    assert [m["content"] for m in cell.messages] == ["hi", "hello", "again"]


def test_text_before_first_marker_is_a_user_message() -> None:
    cell = parse_cell("first question\n@assistant\nan answer\n@user\nsecond")
    assert cell.messages == (
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "second"},
    )


def test_marker_must_be_the_whole_line() -> None:
    cell = parse_cell("email me @user please\n@users\n@user:")
    assert len(cell.messages) == 1
    assert cell.messages[0]["content"] == "email me @user please\n@users\n@user:"


def test_escaped_marker_is_literal() -> None:
    cell = parse_cell("\\@user\nstays in the message\n  \\\\@system")
    assert cell.messages == (
        {"role": "user", "content": "@user\nstays in the message\n  \\@system"},
    )


@pytest.mark.parametrize(
    "text",
    ["", "   \n\t\n", "@user\n\n", "hello\n@assistant\n   \n@user\nx", "@system\nonly system"],
)
def test_empty_messages_are_errors(text: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_cell(text)
    assert "\n" not in str(info.value)


def test_empty_marker_error_names_the_line() -> None:
    with pytest.raises(ParameterError, match="@assistant message on line 2"):
        parse_cell("hello\n@assistant\n@user\nx")


def test_default_system_added_first_and_cell_system_wins() -> None:
    plain = parse_cell("hi")
    assert plain.request_messages("Be terse.") == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "hi"},
    ]
    assert plain.request_messages("") == [{"role": "user", "content": "hi"}]
    own = parse_cell("@system\nPirate voice.\n@user\nhi")
    assert own.request_messages("Be terse.")[0] == {"role": "system", "content": "Pirate voice."}
    assert len(own.request_messages("Be terse.")) == 2


def test_later_system_block_stays_in_place_and_drops_default() -> None:
    cell = parse_cell("hi\n@system\nnow switch to French\n@user\nbonjour")
    assert cell.system_prompt("default") == ""
    assert [m["role"] for m in cell.request_messages("default")] == ["user", "system", "user"]
