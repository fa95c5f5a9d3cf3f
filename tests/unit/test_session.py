"""The Session: what the magic and the panel share, without a shell or a network."""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal
from pathlib import Path

import pytest
from harness.settings import PlainSettings

from baseten_magic.core.result import ChatResult
from baseten_magic.core.stream import Delta
from baseten_magic.engine.session import Session, SessionOwner, Settings


@pytest.fixture
def ledger_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.sqlite3"
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(path))
    return path


def test_context_for_each_front_end(ledger_file: Path) -> None:
    settings = PlainSettings(pricing_mode="per_call")
    session = Session(settings, session_id="s1")
    cell = session.context_for("magic", cell=7)
    assert (cell.session, cell.source, cell.cell) == ("s1", "magic", 7)
    assert cell.headers == {"x-session-affinity": "s1"}
    assert cell.pricing.mode == "per_call"  # from the settings when not given
    assert cell.ledger is session.ledger
    assert str(cell.ledger.path) == str(ledger_file)
    panel = session.context_for("panel")
    assert (panel.source, panel.cell) == ("panel", None)
    assert panel.headers == {"x-session-affinity": "s1-panel"}


def test_defaults_named_settings_win_over_params() -> None:
    settings = PlainSettings(params={"top_k": 40, "temperature": 1.0}, temperature=0.2)
    assert Session(settings).defaults() == {"top_k": 40, "temperature": 0.2}


def test_on_delta_and_shown_follow_show_reasoning() -> None:
    settings = PlainSettings(show_reasoning=False)
    session = Session(settings)
    painted: list[Delta] = []
    session.on_delta(painted.append)(Delta("answer", "thinking", True))
    assert painted == [Delta("answer", "", True)]
    result = ChatResult(model="m", content="answer", reasoning="thinking")
    assert session.shown(result).reasoning == ""
    settings.show_reasoning = True
    paint = painted.append
    assert session.on_delta(paint) is paint
    assert session.shown(result) is result


def test_remember_keeps_history_rows_and_the_exchange(ledger_file: Path) -> None:
    session = Session(PlainSettings(), session_id="s2")
    first = ChatResult(model="m", content="one", cost=Decimal("0.25"))
    session.remember(
        first,
        session.context_for("magic", cell=3),
        key="text:a",
        messages=[{"role": "user", "content": "q"}],
    )
    second = ChatResult(model="m", content="two", cost=Decimal("0.5"), status="interrupted")
    session.remember(second, session.context_for("panel"))
    assert session.history == [first, second]
    assert [(r.source, r.cell, r.session, r.status) for r in session.rows] == [
        ("magic", 3, "s2", "ok"),
        ("panel", None, "s2", "interrupted"),
    ]
    # Only the call with a key is part of the conversation.
    assert [e.answer for e in session.conversation.exchanges] == ["one"]
    assert session.cost() == (2, Decimal("0.75"))
    assert session.ledger.rows() == []  # rows reach the ledger file through ChatCall only
    assert repr(session) == "Session(id='s2', exchanges=1, calls=2)"


def test_a_magics_like_owner_is_found_by_its_session() -> None:
    class Owner:
        def __init__(self) -> None:
            self.session = Session(PlainSettings())

    assert isinstance(Owner(), SessionOwner)
    assert not isinstance(object(), SessionOwner)


def test_the_settings_are_the_magics_traits() -> None:
    from baseten_magic.notebook.magics import BasetenMagics

    wanted = {name for name, value in vars(Settings).items() if isinstance(value, property)}
    assert wanted == {f.name for f in fields(PlainSettings)}
    assert wanted <= set(BasetenMagics.class_trait_names(config=True))
