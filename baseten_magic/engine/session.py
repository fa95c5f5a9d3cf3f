"""One notebook session: what the magic and the panel share, owned in one place.

Rule: a front end never reaches into another front end. The magics own one `Session`; the panel
is handed it. The session holds the settings (any object with the `Settings` attributes; in a
notebook, the `BasetenMagics` traits, so `%config` and the panel's controls are one set), the
client, the ledger, the session id, the conversation, and what `%baseten cost` shows
(`history`, `rows`). Every call a front end makes starts at `context_for` and ends at
`remember`, so a session-wide rule (a spend cap checked before a call, a response cache) has
one place to live. Clients come from `io.routes` for the settings' route and timeout (read at
each call, so `%config` takes effect on the next one); nothing here imports httpx or mcp until
a client is asked for.

The spend cap: the session's `budget` is shared by its cells, its panel and `chat()` /
`achat()` run in its shell. Its cap is read when a call starts, from the `budget_usd` setting,
else `BASETEN_MAGIC_BUDGET`; `context_for(..., request=...)` refuses a call whose worst case
does not fit before anything is painted or sent, and every `ChatCall` holds its worst case on
the budget while it runs (two panel columns, or a tool loop's rounds, each hold their own).

The response cache: `cached_answer` / `store_answer` use the one `io.cache.ResponseCache` file
(`BASETEN_MAGIC_CACHE`) and key function `map()` uses, scoped by the endpoint the same way, so a
cell and a batch row with the same request share an answer. A hit was never attempted: it
writes no ledger row and touches no budget; the session counts it in `cache_hits` (what
`%baseten cost` reports beside its calls).
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from baseten_magic.core.budget import (
    BUDGET_ENV,
    WARN_AT,
    Budget,
    budget_from_env,
    worst_case_cost,
)
from baseten_magic.core.catalog import Catalog, default_catalog
from baseten_magic.core.pricing import Pricing, format_usd, pricing_mode
from baseten_magic.core.result import ChatResult, Source
from baseten_magic.core.settings import Route, base_url, ledger_path, xpay_url
from baseten_magic.core.stream import Delta
from baseten_magic.core.transcript import Turn
from baseten_magic.engine.call import CallContext, PreparedRequest
from baseten_magic.engine.conversation import Conversation
from baseten_magic.io.ledger import Ledger, LedgerRow
from baseten_magic.io.routes import async_client_for, client_for, route_of

if TYPE_CHECKING:
    from baseten_magic.io.cache import CachedAnswer, ResponseCache
    from baseten_magic.io.client import AsyncClient, Client
    from baseten_magic.io.xpay import AsyncXPayClient, XPayClient

#: Told (progress, total, message) when the reseller's server reports progress on a call.
Progress = Callable[[float, float | None, str | None], None]

__all__ = [
    "NAMED_PARAMS",
    "CacheHit",
    "Session",
    "SessionOwner",
    "Settings",
    "cached_notes",
    "registered_session",
]

#: Request parameters with a setting (and a cell option) of their own; `params` holds the rest.
NAMED_PARAMS = ("temperature", "top_p", "max_tokens", "reasoning_effort")


class Settings(Protocol):
    """The session's settings, as the front ends read them (the magics' traits have them all)."""

    @property
    def model(self) -> str: ...
    @property
    def system(self) -> str: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def top_p(self) -> float | None: ...
    @property
    def max_tokens(self) -> int | None: ...
    @property
    def reasoning_effort(self) -> str | None: ...
    @property
    def thinking(self) -> bool | None: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def pricing_mode(self) -> str: ...
    @property
    def memory(self) -> bool: ...
    @property
    def stream(self) -> bool: ...
    @property
    def show_reasoning(self) -> bool: ...
    @property
    def paint_interval(self) -> float: ...
    @property
    def budget_usd(self) -> float | None: ...
    @property
    def route(self) -> str: ...
    @property
    def timeout(self) -> float | None: ...


def cached_notes(saved: Decimal) -> list[str]:
    """The footer's notes of an answer from the cache: that it was, and what it saved."""
    return ["cached", f"saved {format_usd(saved)}"]


@dataclasses.dataclass(frozen=True)
class CacheHit:
    """A call answered from the response cache: which cell, which model, what it saved."""

    cell: int | None
    model: str
    saved_usd: Decimal
    source: Source = "magic"


class Session:
    """What one notebook session shares: settings, client, ledger, conversation, its calls."""

    def __init__(self, settings: Settings, *, session_id: str | None = None) -> None:
        self.settings = settings
        self.id: str = session_id or uuid.uuid4().hex
        self.conversation = Conversation()
        self.history: list[ChatResult] = []  # every call's result, cells and panel alike
        self.rows: list[LedgerRow] = []  # the same calls as ledger rows: `%baseten cost`
        self.last_prompt: str = ""  # the last `%%baseten` cell's prompt (the panel's re-run)
        # ... and its request as the cell sent it (model, options, conversation).
        self.last_request: PreparedRequest | None = None
        self._catalog: Catalog | None = None  # set by `refresh_models`
        self._client: Client | XPayClient | None = None
        self._client_key: tuple[Route, float | None] | None = None  # what `_client` was built for
        self._ledger: Ledger | None = None
        self._budget = Budget(
            raise_hint=(
                "raise it with %config BasetenMagics.budget_usd = {value} "
                f"(or the env variable {BUDGET_ENV})"
            )
        )
        self._progress: Progress | None = None  # who hears the reseller's progress, if anyone
        self.cache_hits: list[CacheHit] = []  # calls the response cache answered (no row)
        self._cache: ResponseCache | None = None  # opened on the first lookup

    def __repr__(self) -> str:
        return (
            f"Session(id={self.id[:8]!r}, exchanges={len(self.conversation)}, "
            f"calls={len(self.history)})"
        )

    # -- what the settings say ---------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        """The models: the bundled catalog, or the one `refresh_models` fetched."""
        return self._catalog or default_catalog()

    def refresh_models(self) -> Catalog:
        """Fetch the account's model list and keep the catalog it gives for this session."""
        self._catalog = self.catalog.refreshed(self.client.list_models())
        return self._catalog

    def defaults(self) -> dict[str, Any]:
        """The request parameters the settings give (named settings win over `params`)."""
        out = dict(self.settings.params)
        for name in NAMED_PARAMS:
            value = getattr(self.settings, name)
            if value is not None:
                out[name] = value
        return out

    def pricing(self) -> Pricing:
        """How the settings price a call."""
        return Pricing(mode=pricing_mode(self.settings.pricing_mode) or "per_token")

    @property
    def budget(self) -> Budget:
        """The session's spend and its cap (the `budget_usd` setting, else the environment)."""
        setting = self.settings.budget_usd
        self._budget.cap = budget_from_env() if setting is None else Decimal(str(setting))
        return self._budget

    def budget_note(self) -> str | None:
        """The footer's budget note once 80% of the cap is spent, else None."""
        budget = self.budget
        used, cap = budget.used(), budget.cap
        if used is None or cap is None or used < WARN_AT:
            return None
        return f"budget {used:.0%} used ({format_usd(budget.spent)} of {format_usd(cap)})"

    def footer_notes(self, earlier_turns: int = 0) -> list[str]:
        """An answer's footer notes: the earlier turns it sent along, the budget from 80%."""
        notes = []
        if earlier_turns:
            notes.append(f"+{earlier_turns} earlier turn{'s' if earlier_turns != 1 else ''}")
        budget = self.budget_note()
        if budget is not None:
            notes.append(budget)
        return notes

    def route(self, override: str | None = None) -> Route:
        """The route a call takes: `override`, else the `route` setting, else
        `BASETEN_MAGIC_ROUTE` (read now); an unknown one is a ConfigurationError."""
        return route_of(override or self.settings.route or None)

    def timeout(self) -> float | None:
        """The `timeout` setting in seconds; None (unset or 0): `BASETEN_MAGIC_TIMEOUT` decides."""
        value = self.settings.timeout
        return float(value) if value else None

    # -- the shared resources ----------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """The cost ledger at `BASETEN_MAGIC_LEDGER` (reopened when that variable changes)."""
        path = ledger_path()
        if self._ledger is None or self._ledger.path != path:
            self._ledger = Ledger(path)
        return self._ledger

    @property
    def client(self) -> Client | XPayClient:
        """The blocking client of the settings' route (a new one after an interrupt)."""
        return self.client_on(self.route())

    def client_on(self, route: Route) -> Client | XPayClient:
        """The blocking client the session's calls on `route` share. It is rebuilt when the
        route or the timeout setting changed since it was made, so `%config` applies at once."""
        key = (route, self.timeout())
        if self._client is not None and self._client_key != key:
            self.close()
        if self._client is None:
            # httpx (or mcp) loads with the first call.
            self._client = client_for(route, timeout=key[1], on_progress=self._relay_progress)
            self._client_key = key
        return self._client

    def async_client(self, route: Route | None = None) -> AsyncClient | AsyncXPayClient:
        """A client for one async call (`async with session.async_client() as client`).

        One per call, not one per session: an async pool belongs to the event loop it was made
        on, and an interrupted call discards its whole pool, which must not cut a call running
        beside it (the panel's compare column).
        """
        return async_client_for(route or self.route(), timeout=self.timeout())

    @contextlib.contextmanager
    def progress_to(self, listener: Progress) -> Iterator[None]:
        """Send the reseller's progress reports to `listener` while the block runs (they arrive
        on the client's worker thread)."""
        self._progress = listener
        try:
            yield
        finally:
            self._progress = None

    def _relay_progress(self, done: float, total: float | None, message: str | None) -> None:
        listener = self._progress
        if listener is not None:
            listener(done, total, message)

    def discard_client(self) -> None:
        """Drop the blocking client's connections (after an interrupt or a new base URL)."""
        if self._client is not None:
            self._client.interrupted()
            self.close()

    def close(self) -> None:
        """Release the client (and the response cache's connection)."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        if self._client is not None:
            self._client.close()
            self._client = None
            self._client_key = None

    # -- one call, from start to end ---------------------------------------------------------

    def context_for(
        self,
        source: Source,
        *,
        cell: int | None = None,
        pricing: Pricing | None = None,
        request: PreparedRequest | None = None,
        route: Route | None = None,
    ) -> CallContext:
        """Where every front end's call starts: its context (who, how priced, where logged,
        which route: `route`, else the settings'). Raises ConfigurationError (a bad route, a
        ledger that cannot be opened) before anything is sent.

        With the `request` about to be sent, a call whose worst-case cost does not fit the
        budget raises BudgetExceededError here, before anything is painted or sent.
        """
        # A stable id per conversation raises the prompt-cache hit rate (BASETEN.md); the panel
        # gets its own, as its calls do not share the cells' conversation.
        affinity = self.id if source == "magic" else f"{self.id}-{source}"
        context = CallContext(
            session=self.id,
            source=source,
            cell=cell,
            pricing=pricing or self.pricing(),
            ledger=self.ledger,
            headers={"x-session-affinity": affinity},
            budget=self.budget,
            route=route or self.route(),
        )
        if request is not None:
            self.budget.check(worst_case_cost(request.body, request.model, context.billing))
        return context

    def on_delta(self, paint: Callable[[Delta], None]) -> Callable[[Delta], None]:
        """`paint` behind the `show_reasoning` setting (read once, when the call starts)."""
        if self.settings.show_reasoning:
            return paint

        def without_reasoning(delta: Delta) -> None:
            if delta.reasoning:
                delta = Delta(delta.content, "", delta.tool_calls_changed)
            paint(delta)

        return without_reasoning

    def shown(self, result: ChatResult) -> ChatResult:
        """`result` as the final paint shows it (no reasoning when the setting hides it)."""
        return result if self.settings.show_reasoning else dataclasses.replace(result, reasoning="")

    def remember(
        self,
        result: ChatResult,
        context: CallContext,
        *,
        key: str | None = None,
        messages: Sequence[Mapping[str, str]] = (),
        rounds: Sequence[ChatResult] = (),
        saved: Decimal | None = None,
    ) -> None:
        """Keep a finished call: its result and row, and with a `key` its exchange in memory.
        A tool loop passes its `rounds`: one row each, as the ledger has (`result` is what the
        cell shows, costed over them). A cache hit passes what it `saved`: it is counted in
        `cache_hits` instead of `rows` (it has no ledger row)."""
        self.history.append(result)
        if saved is not None:
            self.remember_hit(CacheHit(context.cell, result.model, saved, context.source))
        else:
            self.rows.extend(
                LedgerRow.from_result(
                    each,
                    session=context.session,
                    cell=context.cell,
                    pricing_mode=context.billing.mode,
                    source=context.source,
                    route=context.route,
                )
                for each in (rounds or (result,))
            )
        if key is not None:
            self.conversation.record(
                key, messages, result.content, result.status, cell=context.cell
            )

    # -- the response cache (shared with map()) ----------------------------------------------

    @property
    def cache_enabled(self) -> bool:
        """The `cache` setting (off unless set; settings without one never cache)."""
        return bool(getattr(self.settings, "cache", False))

    @property
    def response_cache(self) -> ResponseCache:
        """The response cache at `BASETEN_MAGIC_CACHE` (reopened when that variable changes);
        sqlite3 loads with the first lookup, not with the extension."""
        from baseten_magic.io.cache import ResponseCache, cache_path

        path = cache_path()
        if self._cache is None or self._cache.path != path:
            if self._cache is not None:
                self._cache.close()
            self._cache = ResponseCache(path)
        return self._cache

    @staticmethod
    def cache_key(request: PreparedRequest, route: Route) -> str:
        """The request's cache key, scoped as `map()` scopes it: by the endpoint it goes to."""
        from baseten_magic.io.cache import key_for

        scope = base_url() if route == "baseten" else f"xpay:{xpay_url()}"
        return key_for(request.body, scope=scope)

    @staticmethod
    def cacheable(request: PreparedRequest) -> bool:
        """False for requests whose answer the cache cannot hold whole (several choices,
        log probabilities): those are always sent."""
        body = request.body
        return not body.get("logprobs") and int(body.get("n") or 1) <= 1

    def cached_answer(self, request: PreparedRequest, route: Route) -> CachedAnswer | None:
        """The stored answer to `request`, or None; raises ConfigurationError (one line) when
        the cache file cannot be used."""
        if not self.cacheable(request):
            return None
        return self.response_cache.get(self.cache_key(request, route))

    def store_answer(self, request: PreparedRequest, route: Route, result: ChatResult) -> bool:
        """Keep a finished answer for the next identical request; only `ok` answers are kept
        (an error, an interrupted or cut answer never is). True when it was stored."""
        if result.status != "ok" or result.cached or not self.cacheable(request):
            return False
        self.response_cache.put(self.cache_key(request, route), result)
        return True

    def remember_hit(self, hit: CacheHit) -> None:
        """Count a cache hit for `%baseten cost` (it has no ledger row: nothing was sent)."""
        self.cache_hits.append(hit)

    def cache_saved(self) -> tuple[int, Decimal]:
        """How many calls the cache answered in this session, and what they would have cost."""
        return len(self.cache_hits), sum((h.saved_usd for h in self.cache_hits), Decimal(0))

    def turns(self) -> list[Turn]:
        """What the next new cell sends before its own messages (system prompt included)."""
        return self.conversation.turns(self.settings.system)

    def cost(self) -> tuple[int, Decimal]:
        """This session's call count and total cost (cells and panel calls alike)."""
        return len(self.rows), sum((row.cost_usd for row in self.rows), Decimal(0))


def registered_session(shell: Any) -> Session | None:
    """The session of the magics registered on `shell` (the loaded extension's), if any."""
    manager = getattr(shell, "magics_manager", None)
    for magics in getattr(manager, "registry", {}).values():
        if isinstance(magics, SessionOwner) and isinstance(magics.session, Session):
            return magics.session
    return None


@runtime_checkable
class SessionOwner(Protocol):
    """An object holding a session (the loaded magics): how the panel finds one in a shell."""

    session: Session
