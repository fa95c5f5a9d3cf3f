"""`PlainSettings`: session settings without traitlets, for tests of the engine alone.

Rule: exactly the attributes of `baseten_magic.engine.session.Settings`, with the magics'
defaults, so a `Session` can be tested without a shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PlainSettings:
    """Settings without traitlets: the session reads nothing else."""

    model: str = "gpt-oss"
    system: str = ""
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    thinking: bool | None = None
    params: dict[str, Any] = field(default_factory=dict)
    pricing_mode: str = "per_token"
    memory: bool = True
    stream: bool = True
    show_reasoning: bool = True
    paint_interval: float = 0.09
    budget_usd: float | None = None
    route: str = ""
    timeout: float | None = None
