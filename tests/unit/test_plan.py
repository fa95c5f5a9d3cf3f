"""Planning a cell is pure: options, settings and the namespace in, a `CellPlan` out, no I/O."""

from __future__ import annotations

from typing import Any

import pytest
from harness.settings import PlainSettings

from baseten_magic.core.errors import ParameterError
from baseten_magic.engine.session import Session
from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.notebook.options import parse_options
from baseten_magic.notebook.plan import CellPlan, plan_cell


def plan(line: str, cell: str, session: Session, **namespace: Any) -> CellPlan:
    options = parse_options(BasetenMagics.baseten, line)
    return plan_cell(options, line, cell, session=session, namespace=namespace)


def test_settings_then_params_then_named_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASETEN_API_KEY", raising=False)  # planning never reads the key
    settings = PlainSettings(params={"top_k": 10, "temperature": 1.0}, temperature=0.3)
    made = plan(
        "--param top_k=20 --temperature 0.5 -m glm --pricing per-call", "hi", Session(settings)
    )
    body = made.request.body
    assert body["model"] == "zai-org/GLM-4.7"
    assert (body["top_k"], body["temperature"]) == (20, 0.5)
    assert made.pricing.mode == "per_call"
    assert (made.memory, made.out, made.tools, made.schema) == (True, None, (), None)


def test_memory_reads_the_conversation_and_no_memory_does_not() -> None:
    session = Session(PlainSettings(system="Be brief."))
    session.conversation.record("text:earlier", [{"role": "user", "content": "q"}], "a")
    remembered = plan("", "now", session).request.body["messages"]
    assert remembered == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "now"},
    ]
    alone = plan("--no-memory", "now", session)
    assert alone.request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "now"},
    ]
    assert not alone.memory
    assert len(session.conversation) == 1  # planning changed nothing


def test_a_bad_option_value_is_a_parameter_error() -> None:
    with pytest.raises(ParameterError, match="-o expects a Python variable name"):
        plan("-o 1bad", "hi", Session(PlainSettings()))
    with pytest.raises(ParameterError, match="--schema names 'Missing'"):
        plan("--schema Missing", "hi", Session(PlainSettings()), Mising=int)
