"""Faults the local server can inject, so clients can be shown (and tested) failing well.

Rule: a `Fault` is a plain value describing one misbehaviour; the server applies queued faults to
the next chat completion requests in order, one fault per request.

Kinds:
- ``status``: answer with HTTP ``status`` (optional ``Retry-After``) and an error body in
  ``error_shape`` (``string`` → ``{"error": "msg"}``, ``object`` → ``{"error": {message, type,
  param, code}}``, ``flat`` → ``{"object": "error", "message", ...}``).
- ``cut``: stream ``after_tokens`` tokens, then close the socket with no terminating chunk.
- ``error_event``: after ``after_tokens`` tokens send ``data: {"error": {...}}``, then
  ``data: [DONE]``.
- ``stall``: after ``after_tokens`` tokens go silent for ``stall_s`` seconds, then carry on.
- ``reasoning_required``: answer HTTP 400 if an assistant tool-call message in the request lacks
  its ``reasoning_content`` (what Kimi K2 Thinking *may* require in a tool loop; opt-in, since
  no source says every deployment does), else answer normally.

Without streaming, ``stall`` delays the answer, ``cut`` closes the connection before any
response, and ``error_event`` becomes an HTTP 500 in ``error_shape``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["status", "cut", "error_event", "stall", "reasoning_required"]
ErrorShape = Literal["string", "object", "flat"]
FAULT_KINDS: tuple[str, ...] = ("status", "cut", "error_event", "stall", "reasoning_required")
ERROR_SHAPES: tuple[str, ...] = ("string", "object", "flat")


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for one chat completion request."""

    kind: FaultKind
    status: int = 500
    retry_after: float | str | None = None
    after_tokens: int = 0
    stall_s: float = 0.0
    error_shape: ErrorShape = "object"
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"Fault kind must be one of {', '.join(FAULT_KINDS)}, got {self.kind!r}; "
                'pass e.g. Fault("status", status=429)'
            )
        if self.error_shape not in ERROR_SHAPES:
            raise ValueError(
                f"Fault error_shape must be one of {', '.join(ERROR_SHAPES)}, "
                f"got {self.error_shape!r}; pick one of those"
            )
        if not 100 <= self.status <= 599:
            raise ValueError(
                f"Fault status must be an HTTP status from 100 to 599, got {self.status}; "
                "pass e.g. status=503"
            )
        if self.after_tokens < 0 or self.stall_s < 0:
            raise ValueError(
                f"Fault after_tokens and stall_s must be 0 or more, got {self.after_tokens} and "
                f"{self.stall_s}; pass non-negative values"
            )

    def describe(self) -> str:
        """The message the error body carries."""
        if self.message is not None:
            return self.message
        if self.kind == "status" and self.status == 429:
            wait = f"; retry after {self.retry_after} s" if self.retry_after is not None else ""
            return f"Rate limit exceeded: too many requests for this model{wait}"
        if self.kind == "error_event":
            return "The model server failed while generating; retry the request"
        return f"The model server answered HTTP {self.status}; retry the request"


def random_fault(rng: random.Random) -> Fault:
    """A plausible fault for `--fault-rate` demos: rate limits, 5xx, cut streams, error events."""
    pick = rng.randrange(4)
    if pick == 0:
        return Fault("status", status=429, retry_after=1)
    if pick == 1:
        return Fault("status", status=rng.choice((500, 502, 503)))
    if pick == 2:
        return Fault("cut", after_tokens=rng.randint(1, 40))
    return Fault("error_event", after_tokens=rng.randint(1, 40))
