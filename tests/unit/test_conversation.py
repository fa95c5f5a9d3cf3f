"""Conversation memory: append, replace in place on re-run, partial answers, reset."""

from __future__ import annotations

from baseten_magic.engine.conversation import Conversation, cell_key


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_new_cells_append_and_see_all_earlier_exchanges() -> None:
    conv = Conversation()
    assert conv.messages_for("a", _user("q1"), system="S") == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q1"},
    ]
    conv.record("a", _user("q1"), "a1")
    conv.record("b", _user("q2"), "a2")
    assert conv.messages_for("c", _user("q3")) == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "q3"},
    ]


def test_rerun_replaces_in_place_and_sees_only_earlier_exchanges() -> None:
    conv = Conversation()
    for key in "abc":
        conv.record(key, _user(f"q{key}"), f"a{key}")
    # Re-running b sends only a's exchange, then b's new messages.
    assert conv.messages_for("b", _user("qb2")) == [
        {"role": "user", "content": "qa"},
        {"role": "assistant", "content": "aa"},
        {"role": "user", "content": "qb2"},
    ]
    conv.record("b", _user("qb2"), "ab2")
    assert [e.key for e in conv.exchanges] == ["a", "b", "c"]
    assert conv.exchanges[1].answer == "ab2"
    assert len(conv) == 3


def test_partial_answers_are_marked_and_empty_failures_change_nothing() -> None:
    conv = Conversation()
    conv.record("a", _user("q"), "good")
    assert not conv.record("a", _user("q again"), "  ", status="error")
    assert conv.exchanges[0].answer == "good"
    assert conv.record("a", _user("q again"), "half an ans", status="interrupted")
    last = conv.history_for("z")[-1]
    assert last["role"] == "assistant"
    assert last["content"].startswith("half an ans")
    assert "cut short: interrupted" in last["content"]


def test_reset_forgets_everything() -> None:
    conv = Conversation()
    conv.record("a", _user("q"), "a")
    conv.reset()
    assert len(conv) == 0
    assert conv.history_for("a") == []


def test_cell_key_prefers_cell_id() -> None:
    assert cell_key("abc-123", "-m glm", "hi") == "id:abc-123"
    assert cell_key(None, " -m glm ", "hi") == "text:-m glm\nhi"
    assert cell_key(None, "", "hi") != cell_key(None, "", "hi!")
    # Same text under a different magic line is a different cell.
    assert cell_key(None, "-m glm", "hi") != cell_key(None, "-m kimi", "hi")
