"""One exception tree for everything the library raises on purpose.

    BasetenError
    ├── ParameterError          bad request parameter or option (raised before anything is sent)
    ├── ConfigurationError      missing key, bad base URL, bad ledger path, unknown route
    ├── BudgetExceededError     the call could take the spend over the budget; nothing was sent
    ├── APIConnectionError      could not connect / connection dropped before a response
    │   ├── APITimeoutError
    │   └── CallCancelled           an interrupt stopped the call before (or while) it was sent
    ├── APIStatusError          the server answered with an HTTP error status
    │   ├── BadRequestError         400
    │   ├── AuthenticationError     401 / 403
    │   ├── ModelNotFoundError      404
    │   ├── RateLimitError          429
    │   └── ServerError             5xx
    │   (on the xpay route the same classes carry the reseller's errors: an `isError` tool
    │   result or a JSON-RPC error, mapped by the HTTP status it names; `rpc_code` keeps the
    │   JSON-RPC error code)
    ├── StreamError             the response started, then failed; carries the partial result
    │   ├── StreamInterrupted       the server cut the stream (no finish reason, no [DONE])
    │   └── MidStreamError          the server sent an error event mid-stream
    ├── OutputParseError        --json / --schema reply did not parse or validate; keeps raw text
    └── BatchError              map(on_error="raise") met a failed row; `.partial` is the frame
    KeyboardInterrupt
    └── BatchInterrupted        map() interrupted; `.partial` holds the rows done so far

    BasetenWarning (a UserWarning)  valid, but probably not what was meant

Rule: every message says what was expected, what arrived and what to do next, on one line,
and never contains a secret. Errors raised after a response began carry `.partial`
(a ChatResult holding what had arrived).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baseten_magic.core.result import ChatResult


class BasetenError(Exception):
    """Base class of every error raised by baseten_magic."""

    partial: ChatResult | None = None


class ParameterError(BasetenError, ValueError):
    """A request parameter or option is invalid; nothing was sent.

    `param` names the parameter; `detail` is the message without advice on how to pass the
    value from the magic (a server answering HTTP speaks of the body, not of `--param`)."""

    def __init__(
        self, message: str, *, param: str | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.param = param
        self.detail = detail


class ConfigurationError(BasetenError):
    """The environment is not set up (for example no API key)."""


class BudgetExceededError(BasetenError):
    """A call could take the spend over the budget (`budget_usd`); it was not sent."""


class APIConnectionError(BasetenError):
    """The server could not be reached, or the connection dropped before a response."""


class APITimeoutError(APIConnectionError):
    """The server did not answer in time."""


class CallCancelled(APIConnectionError):
    """The call's cancel event was set (an interrupt): nothing more was or will be sent."""


class APIStatusError(BasetenError):
    """The server answered with an HTTP error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        request_id: str | None = None,
        rpc_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.rpc_code = rpc_code  # the JSON-RPC error code, on the MCP route only
        # Seconds the server asked to wait (Retry-After / retry-after-ms), when it said.
        self.retry_after: float | None = None


class BadRequestError(APIStatusError):
    """HTTP 400: the server rejected the request's parameters."""


class AuthenticationError(APIStatusError):
    """HTTP 401/403: the API key is missing, wrong or lacks access."""


class ModelNotFoundError(APIStatusError):
    """HTTP 404: unknown or retired model."""


class RateLimitError(APIStatusError):
    """HTTP 429: too many requests or tokens per minute."""


class ServerError(APIStatusError):
    """HTTP 5xx: the server failed."""


class StreamError(BasetenError):
    """The response began and then failed; `.partial` holds what had arrived."""

    def __init__(self, message: str, *, partial: ChatResult | None = None) -> None:
        super().__init__(message)
        self.partial = partial


class StreamInterrupted(StreamError):
    """The stream ended without a finish reason or [DONE]: the connection was cut."""


class MidStreamError(StreamError):
    """The server sent an error event after the stream had started."""

    def __init__(
        self, message: str, *, partial: ChatResult | None = None, body: Any = None
    ) -> None:
        super().__init__(message, partial=partial)
        self.body = body


class OutputParseError(BasetenError, ValueError):
    """A structured reply failed to parse or to match its schema; `.raw` keeps the text."""

    def __init__(self, message: str, *, raw: str, partial: ChatResult | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.partial = partial


class BasetenWarning(UserWarning):
    """A request is valid but probably not what was meant (for example internal parameters)."""


class BatchError(BasetenError):
    """`map(..., on_error="raise")` met a failed row; `.partial` holds the frame so far."""

    def __init__(self, message: str, *, partial: Any = None) -> None:
        super().__init__(message)
        self.partial = partial


class BatchInterrupted(KeyboardInterrupt):
    """`map()` was interrupted (Ctrl-C, Kernel → Interrupt); `.partial` holds the rows done."""

    def __init__(self, message: str, *, partial: Any = None) -> None:
        super().__init__(message)
        self.partial = partial
