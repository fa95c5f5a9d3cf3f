"""Routes and handlers of the local Baseten-compatible server.

Rule: this module turns parsed HTTP requests into Baseten-shaped responses: auth, validation
(the library's own `validate_params` plus Baseten's limits), the model catalog, faults, pacing
and the streaming wire format. Answers come from `generate`, bytes go out through `http`.

Profiles: `baseten` (the default) streams with Baseten's quirks; `openai` streams as OpenAI does
(one id per tool call, on its first fragment only; one fragment per event; usage only in the
trailing chunk unless `stream_options.continuous_usage_stats` is true), so third-party SDKs that
merge tool calls by id or add usage up assemble answers correctly.

Routes: `GET /v1/models`, `POST /v1/chat/completions`, `GET /health` (no auth, for
readiness probes) and `GET /v1/stats` (no auth: the account-limit counters, see `limits`).
Errors: 401 in the string shape, unknown model or route 404 in the object shape, invalid
parameters or body 400 in the flat shape, as Baseten's backends answer.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import random
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from baseten_magic.core.catalog import Catalog, ModelInfo
from baseten_magic.core.errors import ParameterError
from baseten_magic.core.params import validate_params
from baseten_magic.server import wire
from baseten_magic.server.faults import Fault, random_fault
from baseten_magic.server.generate import (
    ChoicePlan,
    GenerationRequest,
    count_prompt_tokens,
    message_token_counts,
    plan,
)
from baseten_magic.server.http import BadRequest, Exchange, Request
from baseten_magic.server.limits import AccountLimits

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
STATS_PATH = "/v1/stats"
SESSION_HEADER = "x-session-affinity"
MAX_SESSIONS = 1024
# Fragments at these positions share one event with the next fragment (a Baseten quirk).
_PAIRED_FRAGMENT_EVERY = 3
# Yield to the event loop this often when streaming flat out, so one stream cannot starve others.
_YIELD_EVERY = 64

_JSON = {"Content-Type": "application/json"}


#: How many requests the server remembers (for tests and the demo's inspection), and how many
#: bytes of their bodies at most: with `%baseten local` the log lives in the kernel's memory.
MAX_RECORDED_REQUESTS = 10_000
MAX_RECORDED_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; the Authorization value is replaced by "<redacted>"."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: dict[str, Any] | None
    time: float


@dataclass
class ServerConfig:
    """Settings of a running server; `tokens_per_second` may change while it runs."""

    api_key: str
    catalog: Catalog
    tokens_per_second: float | None = None
    allow_n: bool = False
    reasoning_field: str = "reasoning_content"
    trailing_usage: bool = True
    today: date | None = None
    fault_rate: float = 0.0
    keep_alive_every: int = 50
    fault_seed: int | None = None
    profile: str = "baseten"
    limits: AccountLimits = field(default_factory=AccountLimits)


PROFILES: tuple[str, ...] = ("baseten", "openai")


def new_api_key() -> str:
    """A random demo key, recognisable as local."""
    return "local-" + secrets.token_hex(16)


class _Reply(Exception):
    """An error response decided while handling a request."""

    def __init__(self, status: int, body: dict[str, Any], headers: Mapping[str, str] = {}):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers)


def _flat(status: int, message: str, param: str | None = None) -> _Reply:
    return _Reply(status, wire.error_body("flat", status, message, param=param))


@dataclass
class _Prepared:
    """A validated chat request, ready to answer."""

    model: str
    stream: bool
    include_usage: bool
    continuous_usage: bool
    choices: list[ChoicePlan]
    prompt_tokens: int
    cached_tokens: int
    fault: Fault | None
    completion_id: str = field(default="")


class ChatApp:
    """The request handler: holds the recorded requests, queued faults and cache sessions."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        # The most recent requests only: a long-running demo server must not grow without bound.
        self.requests: deque[RecordedRequest] = deque(maxlen=MAX_RECORDED_REQUESTS)
        self._recorded_sizes: deque[int] = deque()  # body bytes of each entry of `requests`
        self._recorded_bytes = 0
        self.request_count = 0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, list[str]] = OrderedDict()
        self._fault_rng = random.Random(config.fault_seed)
        self._ids = itertools.count(1)

    # --- faults, from any thread ----------------------------------------------------------

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Queue `fault` for the next `times` chat requests."""
        with self._lock:
            self._faults.extend([fault] * times)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
        rate = self.config.fault_rate
        if rate > 0 and self._fault_rng.random() < rate:
            return random_fault(self._fault_rng)
        return None

    # --- entry points -----------------------------------------------------------------------

    def bad_request_body(self, exc: BadRequest) -> bytes:
        """The body for a request the HTTP layer could not parse."""
        return wire.dumps(wire.error_body("flat", exc.status, exc.message))

    async def handle(self, request: Request, exchange: Exchange) -> None:
        """Answer one request."""
        path = request.path.rstrip("/") or "/"
        # Authenticate before anything of the body is parsed or kept: an unauthenticated client
        # must not be able to fill the server's memory (the 401 itself comes below).
        body = self._record(request, keep_body=self._authorized(request))
        try:
            if path == "/health":
                await exchange.respond(200, wire.dumps({"status": "ok"}), _JSON)
            elif path == STATS_PATH:
                stats = self.config.limits.stats().as_json()
                await exchange.respond(200, wire.dumps(stats), _JSON)
            elif path == MODELS_PATH:
                self._require(request, "GET")
                self._authenticate(request)
                await self._models(exchange)
            elif path == CHAT_PATH:
                self.request_count += 1
                self.config.limits.requests += 1  # every chat request, faults included
                self._require(request, "POST")
                self._authenticate(request)
                await self._chat(request, body, exchange)
            else:
                message = (
                    f"Unknown route {request.method} {request.path}; this server answers "
                    f"GET {MODELS_PATH} and POST {CHAT_PATH}"
                )
                raise _Reply(404, wire.error_body("object", 404, message, code="not_found"))
        except _Reply as reply:
            await exchange.respond(reply.status, wire.dumps(reply.body), {**_JSON, **reply.headers})

    # --- helpers ------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        try:
            self._authenticate(request)
        except _Reply:
            return False
        return True

    def _record(self, request: Request, *, keep_body: bool) -> dict[str, Any] | None:
        headers = {
            name: "<redacted>" if name in ("authorization", "api-key", "x-api-key") else value
            for name, value in request.headers.items()
        }
        body: dict[str, Any] | None = None
        if keep_body and request.body:
            try:
                parsed = json.loads(request.body)
            except ValueError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else None
        size = len(request.body) if body is not None else 0
        with self._lock:
            if len(self.requests) == self.requests.maxlen:
                self.requests.popleft()
                self._recorded_bytes -= self._recorded_sizes.popleft()
            while self.requests and self._recorded_bytes + size > MAX_RECORDED_BYTES:
                self.requests.popleft()  # the oldest go first, whatever the count
                self._recorded_bytes -= self._recorded_sizes.popleft()
            self.requests.append(
                RecordedRequest(request.method, request.path, headers, body, time.time())
            )
            self._recorded_sizes.append(size)
            self._recorded_bytes += size
        return body

    @staticmethod
    def _require(request: Request, method: str) -> None:
        if request.method != method:
            raise _flat(
                405, f"{request.path} expects {method}, got {request.method}; send a {method}"
            )

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() not in ("bearer", "api-key") or not token.strip():
            raise _Reply(
                401,
                wire.error_body(
                    "string",
                    401,
                    "Missing API key: expected an 'Authorization: Bearer <key>' (or 'Api-Key "
                    "<key>') header; set BASETEN_API_KEY to the local server's key",
                ),
            )
        if not hmac.compare_digest(token.strip().encode(), self.config.api_key.encode()):
            raise _Reply(
                401,
                wire.error_body(
                    "string",
                    401,
                    "Invalid API key: the key sent does not match this server's; use the key "
                    "it printed at start (LocalServer.api_key)",
                ),
            )

    async def _models(self, exchange: Exchange) -> None:
        data = [wire.model_item(info) for info in self.config.catalog.offered(self.config.today)]
        await exchange.respond(200, wire.dumps({"object": "list", "data": data}), _JSON)

    # --- chat ---------------------------------------------------------------------------

    async def _chat(
        self, request: Request, body: dict[str, Any] | None, exchange: Exchange
    ) -> None:
        if body is None:
            raise _flat(400, self._body_problem(request.body))
        fault = self._next_fault()
        if fault is not None and fault.kind == "status":
            raise _Reply(
                fault.status,
                wire.error_body(fault.error_shape, fault.status, fault.describe()),
                {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)},
            )
        prepared = self._prepare(body, request.headers.get(SESSION_HEADER), fault)
        limits = self.config.limits
        tokens = prepared.prompt_tokens + sum(c.completion_tokens for c in prepared.choices)
        refused = limits.admit(tokens)
        if refused is not None:
            message = (
                "Rate limit exceeded: this account allows "
                f"{limits.rpm or 'unlimited'} requests/min, {limits.tpm or 'unlimited'} "
                f"tokens/min and {limits.max_concurrent or 'unlimited'} requests at once; "
                "retry after the time in Retry-After"
            )
            raise _Reply(429, wire.error_body("object", 429, message), refused)
        try:
            if limits.latency_s:
                await asyncio.sleep(limits.latency_s)
            if prepared.stream:
                await self._stream(prepared, exchange)
            else:
                await self._complete(prepared, exchange)
        finally:
            limits.release()

    @staticmethod
    def _body_problem(raw: bytes) -> str:
        if not raw:
            return "Expected a JSON object body, got an empty body; send the chat request as JSON"
        try:
            value = json.loads(raw)
        except ValueError as exc:
            return (
                f"Expected a JSON object body, got invalid JSON ({exc}); send the chat request "
                "as JSON with Content-Type: application/json"
            )
        return (
            f"Expected a JSON object body, got a JSON {type(value).__name__}; send the chat "
            'request as an object like {"model": ..., "messages": [...]}'
        )

    def _prepare(self, body: dict[str, Any], session: str | None, fault: Fault | None) -> _Prepared:
        for required in ("model", "messages"):
            if required not in body:
                raise _flat(
                    400,
                    f"Field {required!r} is required, got a body without it; add it",
                    required,
                )
        checked = dict(body)
        # Accepted as Baseten accepts it; kept out of validation, whose warning is for clients.
        checked.pop("disaggregated_params", None)
        try:
            params = validate_params(checked)
        except ParameterError as exc:
            # The library's messages end in advice for the magic (`--param ...`); a server
            # names the parameter and speaks of the request body instead.
            message = f"{exc.detail}; fix it in the request body" if exc.detail else str(exc)
            raise _flat(400, message, exc.param) from None
        except (ValueError, TypeError) as exc:
            raise _flat(400, str(exc)) from None
        info = self._model(str(params["model"]))
        for name in ("n", "best_of"):
            value = params.get(name, 1)
            if value != 1 and not self.config.allow_n:
                raise _flat(
                    400,
                    f"{name} must be 1 on Baseten, got {value}; send one request per answer "
                    "(or start the local server with allow_n=True / --allow-n)",
                    name,
                )
        messages: list[dict[str, Any]] = params["messages"]
        if fault is not None and fault.kind == "reasoning_required":
            self._check_reasoning_sent_back(info, messages)
            fault = None  # applied: the answer itself is normal
        generation = self._generation_request(info, params)
        choices = plan(generation)
        tools = params.get("tools") or ()
        stream_options = params.get("stream_options") or {}
        return _Prepared(
            model=info.slug,
            stream=bool(params.get("stream", False)),
            include_usage=bool(stream_options.get("include_usage", False)),
            continuous_usage=stream_options.get("continuous_usage_stats") is True,
            choices=choices,
            prompt_tokens=count_prompt_tokens(messages, tools),
            cached_tokens=self._cached_tokens(session, messages),
            fault=fault,
            completion_id=f"chatcmpl-{secrets.token_hex(12)}",
        )

    def _model(self, name: str) -> ModelInfo:
        catalog, today = self.config.catalog, self.config.today
        info = catalog.get(name)
        if info is not None and not info.is_retired(today):
            return info
        # Only a failing request pays for listing the models.
        known = ", ".join(m.slug for m in catalog.offered(today))
        if info is None:
            message = f"Model {name!r} does not exist; expected one of: {known}"
        else:
            message = (
                f"Model {info.slug!r} was retired on {info.deprecated_on}; "
                f"switch to one of: {known}"
            )
        raise _Reply(404, wire.error_body("object", 404, message, code="model_not_found"))

    @staticmethod
    def _check_reasoning_sent_back(info: ModelInfo, messages: Sequence[Mapping[str, Any]]) -> None:
        # Only as the opt-in `reasoning_required` fault: Kimi K2 Thinking may require it, but no
        # source says every deployment does, and a default stricter than the facts misleads.
        for position, message in enumerate(messages):
            if message.get("role") != "assistant" or not message.get("tool_calls"):
                continue
            if not (message.get("reasoning_content") or message.get("reasoning")):
                raise _flat(
                    400,
                    f"messages[{position}] is an assistant tool-call message without "
                    f"reasoning_content; {info.slug} needs the reasoning it produced sent back "
                    "in a tool loop: copy reasoning_content from the earlier response",
                    "messages",
                )

    def _generation_request(self, info: ModelInfo, params: Mapping[str, Any]) -> GenerationRequest:
        template_args = params.get("chat_template_args") or {}
        thinking = template_args.get("enable_thinking", template_args.get("thinking"))
        stop = params.get("stop")
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        temperature = params.get("temperature")
        return GenerationRequest(
            model=info.slug,
            messages=params["messages"],
            reasoning_mode=info.reasoning,
            kimi_ids=info.slug.lower().startswith("moonshotai/"),
            seed=params.get("seed"),
            temperature=None if temperature is None else float(temperature),
            max_tokens=params.get("max_tokens"),
            stop=stops,
            reasoning_effort=params.get("reasoning_effort")
            if info.supports_reasoning_effort
            else None,
            enable_thinking=thinking if isinstance(thinking, bool) else None,
            response_format=params.get("response_format"),
            tools=tuple(params.get("tools") or ()),
            tool_choice=params.get("tool_choice"),
            parallel_tool_calls=params.get("parallel_tool_calls", True) is not False,
            logprobs=params.get("logprobs") is True,
            top_logprobs=int(params.get("top_logprobs") or 0),
            n=int(params.get("n", 1)),
        )

    def _cached_tokens(self, session: str | None, messages: Sequence[Mapping[str, Any]]) -> int:
        """Simulated prompt caching: a session's shared message prefix counts as cached."""
        if not session:
            return 0
        keys = [json.dumps(m, sort_keys=True, default=str) for m in messages]
        previous = self._sessions.get(session)
        self._sessions[session] = keys
        self._sessions.move_to_end(session)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        if previous is None:
            return 0
        shared = 0
        for old, new in zip(previous, keys, strict=False):
            if old != new:
                break
            shared += 1
        return sum(message_token_counts(messages[:shared]))

    def _usage(self, prepared: _Prepared, completion: int, reasoning: int) -> dict[str, Any]:
        return wire.usage(prepared.prompt_tokens, completion, reasoning, prepared.cached_tokens)

    # --- non-streaming ----------------------------------------------------------------------

    async def _complete(self, prepared: _Prepared, exchange: Exchange) -> None:
        fault = prepared.fault
        if fault is not None:
            if fault.kind == "stall":
                await asyncio.sleep(fault.stall_s)
            elif fault.kind == "cut":
                exchange.abort()
                return
            elif fault.kind == "error_event":
                raise _Reply(500, wire.error_body(fault.error_shape, 500, fault.describe()))
        body = await self._completion_body(prepared)
        headers = {**_JSON, "X-Request-Id": prepared.completion_id}
        await exchange.respond(200, wire.dumps(body), headers)

    async def _completion_body(self, prepared: _Prepared) -> dict[str, Any]:
        choices = prepared.choices
        completion_tokens = sum(c.completion_tokens for c in choices)
        reasoning_tokens = sum(len(c.reasoning) for c in choices)
        await self._pace_block(completion_tokens)
        return wire.completion(
            completion_id=prepared.completion_id,
            created=int(time.time()),
            model=prepared.model,
            choices=choices,
            usage_value=self._usage(prepared, completion_tokens, reasoning_tokens),
            reasoning_field=self.config.reasoning_field,
        )

    async def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One non-streaming answer to a request body, for front ends other than HTTP (the MCP
        stand-in): `(200, chat.completion)`, or `(status, error body)` as the HTTP route would
        answer. Queued status and stall faults apply; the answer is never streamed."""
        self.request_count += 1
        self.requests.append(RecordedRequest("CALL", "tools/call", {}, dict(body), time.time()))
        try:
            fault = self._next_fault()
            if fault is not None and fault.kind == "status":
                error = wire.error_body(fault.error_shape, fault.status, fault.describe())
                return fault.status, error
            prepared = self._prepare({**body, "stream": False}, None, fault)
            if fault is not None and fault.kind == "stall":
                await asyncio.sleep(fault.stall_s)
            elif fault is not None:
                return 500, wire.error_body(fault.error_shape, 500, fault.describe())
            return 200, await self._completion_body(prepared)
        except _Reply as reply:
            return reply.status, reply.body

    async def _pace_block(self, tokens: int) -> None:
        # A non-streaming answer takes as long as its stream would have.
        speed = self.config.tokens_per_second
        if speed and speed > 0 and tokens:
            await asyncio.sleep(tokens / speed)

    # --- streaming --------------------------------------------------------------------------

    def _events(self, choice: ChoicePlan) -> Iterator[tuple[dict[str, Any], Any, int]]:
        """(delta, logprobs, tokens) for one choice, the finish chunk excluded."""
        baseten = self.config.profile == "baseten"
        yield {"role": "assistant", "content": ""}, None, 0
        field_name = self.config.reasoning_field
        for token in choice.reasoning:
            yield {field_name: token}, None, 1
        logprobs = choice.logprobs
        for position, token in enumerate(choice.content):
            entry = None
            if logprobs is not None:
                entry = {"content": [wire.logprob_entry(logprobs[position])]}
            yield {"content": token}, entry, 1
        for index, call in enumerate(choice.tool_calls):
            first = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            yield {"tool_calls": [first]}, None, 1
            fragments = call.fragments
            position = 0
            while position < len(fragments):
                if not baseten:  # OpenAI: one fragment per event, the id on the first only
                    group = fragments[position : position + 1]
                    yield (
                        {"tool_calls": [{"index": index, "function": {"arguments": group[0]}}]},
                        None,
                        1,
                    )
                    position += 1
                    continue
                size = 2 if position % _PAIRED_FRAGMENT_EVERY == 1 else 1
                group = fragments[position : position + size]
                # Every fragment carries a fresh id; clients must keep the first one.
                delta = [
                    {
                        "index": index,
                        "id": f"call_{secrets.token_hex(12)}",
                        "function": {"arguments": fragment},
                    }
                    for fragment in group
                ]
                yield {"tool_calls": delta}, None, len(group)
                position += len(group)

    async def _stream(self, prepared: _Prepared, exchange: Exchange) -> None:
        config = self.config
        head = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Request-Id": prepared.completion_id,
        }
        await exchange.start_stream(200, head)
        encoder = wire.ChunkEncoder(
            completion_id=prepared.completion_id,
            created=int(time.time()),
            model=prepared.model,
            include_usage=prepared.include_usage,
            prompt_tokens=prepared.prompt_tokens,
            cached_tokens=prepared.cached_tokens,
        )
        include_usage = prepared.include_usage
        openai = config.profile == "openai"
        # Baseten repeats cumulative usage on every chunk; OpenAI sends `usage: null` there and
        # the totals once at the end, unless continuous usage stats were asked for.
        usage_per_chunk = not openai or prepared.continuous_usage
        completion = 0
        reasoning = 0
        reasoning_field = config.reasoning_field
        fault = prepared.fault
        pacer = _Pacer(config)
        sent_events = 0

        async def send(payload: bytes) -> None:
            nonlocal sent_events
            sent_events += 1
            if config.keep_alive_every and sent_events % config.keep_alive_every == 0:
                await exchange.send_chunk(b": keep-alive\n\n")
            await exchange.send_chunk(b"data: " + payload + b"\n\n")
            if sent_events % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

        async def apply_fault() -> bool:
            """Apply the pending fault; True when the stream must end now."""
            nonlocal fault
            assert fault is not None
            current, fault = fault, None
            if current.kind == "stall":
                await asyncio.sleep(current.stall_s)
                pacer.reset()
                return False
            if current.kind == "cut":
                exchange.abort()
                return True
            error = wire.error_body("object", 500, current.describe())
            await send(wire.dumps(error))
            await send(b"[DONE]")
            await exchange.end_stream()
            return True

        await exchange.send_chunk(b": keep-alive\n\n")
        iterators = [(c.index, self._events(c)) for c in prepared.choices]
        finished: list[ChoicePlan] = []
        pending = list(iterators)
        while pending:
            still: list[tuple[int, Iterator[tuple[dict[str, Any], Any, int]]]] = []
            for index, events in pending:
                item = next(events, None)
                if item is None:
                    finished.append(prepared.choices[index])
                    continue
                still.append((index, events))
                delta, logprobs, tokens = item
                due = tokens and fault is not None and completion >= fault.after_tokens
                if due and await apply_fault():
                    return
                completion += tokens
                if reasoning_field in delta:
                    reasoning += tokens
                counts = (completion, reasoning) if usage_per_chunk else None
                await send(encoder.chunk(index, delta, logprobs, None, counts))
                if tokens:
                    await pacer.tick(tokens)
            pending = still
        if fault is not None and await apply_fault():
            return
        for choice in finished:
            await send(encoder.chunk(choice.index, {}, None, choice.finish_reason, None))
        if include_usage and (config.trailing_usage or openai):
            await send(encoder.trailing(completion, reasoning))
        await send(b"[DONE]")
        await exchange.end_stream()


class _Pacer:
    """Sleeps so tokens leave at `tokens_per_second`, batched (a sleep per token is too coarse)."""

    _MIN_SLEEP_S = 0.004

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._speed: float | None = None
        self._start = 0.0
        self._sent = 0

    def reset(self) -> None:
        """Start counting afresh (after a stall or a speed change)."""
        self._speed = None

    async def tick(self, tokens: int) -> None:
        """Account for `tokens` just sent; sleep when ahead of schedule."""
        speed = self._config.tokens_per_second
        if not speed or speed <= 0:
            self._speed = None
            return
        now = time.monotonic()
        if self._speed != speed:
            self._speed, self._start, self._sent = speed, now, 0
        self._sent += tokens
        ahead = self._start + self._sent / speed - now
        if ahead >= self._MIN_SLEEP_S:
            await asyncio.sleep(ahead)
