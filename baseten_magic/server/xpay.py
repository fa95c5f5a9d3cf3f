"""`LocalMCPServer`: a stand-in for the reseller's MCP listing, on loopback.

Rule: the same deterministic answers as the HTTP server (`ChatApp.answer`), served as the MCP
tool `baseten_chat_completions` over streamable HTTP with the listing's input schema (strings
where the listing has strings). It checks the `?key=` query, checks every argument against the
schema it serves and decodes JSON-encoded strings, and answers the chat.completion JSON as text
content; bad inputs are an `isError` result, never a crash. The served schema is configurable
(`schema_types=`), so tests can check that a client encodes to the schema it is given. With
`progress_every=` seconds it sends MCP progress notifications while an answer is being made
(to a client that asked for them with a progress token), as a slow listing might.
Like `LocalServer`, it runs on its own thread and event loop; every method is thread-safe.

This is a model of the listing, not the reseller: nothing here was checked against
https://baseten.mcp.xpay.sh/mcp. Uses the `mcp` SDK (starlette and uvicorn come with it).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from datetime import date
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

from baseten_magic.core.catalog import Catalog, default_catalog
from baseten_magic.core.jsonable import json_type
from baseten_magic.core.xpay import (
    INVALID_PARAMS,
    REQUIRED_INPUTS,
    TOOL_NAME,
    decode_argument,
    fits,
    listing_schema,
)
from baseten_magic.server.app import ChatApp, ServerConfig
from baseten_magic.server.faults import Fault

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
MCP_PATH = "/mcp"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_xpay_key() -> str:
    """A random demo key, recognisable as local."""
    return "xpay-local-" + secrets.token_hex(16)


class _ToolError(Exception):
    """Bad tool input: answered as an `isError` result."""


class LocalMCPServer:
    """The reseller's MCP tool `baseten_chat_completions`, served locally for demos and tests."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        key: str | None = None,
        schema_types: Mapping[str, str] | None = None,
        tokens_per_second: float | None = None,
        catalog: Catalog | None = None,
        today: date | None = None,
        json_response: bool = False,
        progress_every: float | None = None,
    ) -> None:
        self.host = host
        self.progress_every = progress_every
        # False: answers come as an SSE stream (the SDK's default); True: as one JSON body.
        self.json_response = json_response
        self._requested_port = port
        self._port: int | None = None
        self._key = key if key is not None else new_xpay_key()
        self.schema = listing_schema(schema_types)
        self._config = ServerConfig(
            api_key=self._key,
            catalog=catalog if catalog is not None else default_catalog(),
            tokens_per_second=tokens_per_second,
            today=today,
        )
        self._app = ChatApp(self._config)
        self._lock = threading.Lock()
        self._rpc_errors: deque[tuple[int, str]] = deque()
        self._arguments: list[dict[str, Any]] = []
        self._cancelled = 0
        self._listings = 0
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        # Never shows the key.
        state = "running" if self.running else "stopped"
        where = self.url if self._port is not None else f"{self.host}:{self._requested_port}"
        return f"LocalMCPServer({where}, {state})"

    # --- the MCP side -----------------------------------------------------------------------

    def _lowlevel(self) -> Any:
        import mcp_types as types
        from mcp.server.lowlevel import Server
        from mcp.shared.exceptions import MCPError

        schema = self.schema

        async def list_tools(ctx: Any, params: Any) -> Any:
            with self._lock:
                self._listings += 1
            tool = types.Tool(
                name=TOOL_NAME,
                description="Baseten Chat Completions (local stand-in of the $0.01 listing).",
                input_schema=schema,
            )
            return types.ListToolsResult(tools=[tool])

        async def call_tool(ctx: Any, params: Any) -> Any:
            with self._lock:
                self._arguments.append(dict(params.arguments or {}))
                queued = self._rpc_errors.popleft() if self._rpc_errors else None
            if queued is not None:
                raise MCPError(code=queued[0], message=queued[1])
            if params.name != TOOL_NAME:
                raise MCPError(
                    code=INVALID_PARAMS,
                    message=f"Unknown tool {params.name!r}; this server offers {TOOL_NAME}",
                )
            try:
                body = self._decode(params.arguments or {})
                status, answer = await self._answer_reporting(ctx, body)
            except _ToolError as exc:
                return _result(types, str(exc), error=True)
            except asyncio.CancelledError:
                with self._lock:
                    self._cancelled += 1
                raise
            return _result(types, json.dumps(answer, ensure_ascii=False), error=status != 200)

        return Server("baseten-xpay-local", on_list_tools=list_tools, on_call_tool=call_tool)

    async def _answer_reporting(self, ctx: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The app's answer; every `progress_every` seconds meanwhile, a progress report."""
        every = self.progress_every
        if not every:
            return await self._app.answer(body)
        task = asyncio.ensure_future(self._app.answer(body))
        try:
            step = 0
            while True:
                done, _ = await asyncio.wait({task}, timeout=every)
                if done:
                    return task.result()
                step += 1
                # A no-op for a client that sent no progress token.
                await ctx.session.report_progress(step, None, f"generating (report {step})")
        finally:
            task.cancel()

    def _decode(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments checked against the served schema, JSON-encoded strings decoded."""
        properties: Mapping[str, Any] = self.schema["properties"]
        for name in REQUIRED_INPUTS:
            if name not in arguments:
                raise _ToolError(f"Input {name!r} is required, got arguments without it; add it")
        body: dict[str, Any] = {}
        for name, value in arguments.items():
            prop = properties.get(name)
            if prop is None:
                raise _ToolError(f"Unknown input {name!r}; this tool takes {', '.join(properties)}")
            wanted = prop.get("type")
            if not fits(value, {wanted}):
                got = json_type(value)
                raise _ToolError(
                    f"Input {name!r} must be of type {wanted} per this tool's schema, got {got}; "
                    + ("send it as JSON text" if wanted == "string" else f"send a JSON {wanted}")
                )
            body[name] = decode_argument(value, prop)
        return body

    def _guarded(self, app: ASGIApp) -> ASGIApp:
        """`app` behind the `?key=` check: a wrong or missing key is HTTP 401 with a JSON-RPC
        error body, as a spec-correct server answers."""
        key = self._key.encode()

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("key") or [""])[0].encode()
            if given and hmac.compare_digest(given, key):
                await app(scope, receive, send)
                return
            what = "Missing" if not given else "Invalid"
            body = json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {
                        "code": -32001,
                        "message": f"{what} key: expected ?key=<your xpay key> in the URL; "
                        "set XPAY_KEY to the stand-in's key (LocalMCPServer.key)",
                    },
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})

        return guarded

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> LocalMCPServer:
        """Start serving on a daemon thread; returns self (port 0 picks a free port)."""
        if self.running:
            return self
        import uvicorn

        starlette = self._lowlevel().streamable_http_app(
            streamable_http_path=MCP_PATH, json_response=self.json_response, host=self.host
        )
        config = uvicorn.Config(
            self._guarded(starlette),
            host=self.host,
            port=self._requested_port,
            # The access log would print each request line, and the key is in its query.
            access_log=False,
            log_level="warning",
            lifespan="on",
        )
        server = uvicorn.Server(config)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(server.serve())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)

        thread = threading.Thread(target=run, name="baseten-local-mcp-server", daemon=True)
        self._uvicorn = server
        self._thread = thread
        thread.start()
        waited = 0.0
        while not server.started and thread.is_alive() and waited < _START_TIMEOUT_S:
            thread.join(0.02)
            waited += 0.02
        if not server.started:
            self._thread = None
            self._uvicorn = None
            raise OSError(
                f"local MCP server could not listen on {self.host}:{self._requested_port} "
                f"({failure[0] if failure else 'did not start in time'}); pick another port "
                "or use port=0"
            )
        self._port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving; harmless when already stopped."""
        server, thread = self._uvicorn, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(_STOP_TIMEOUT_S)
        self._uvicorn = None
        self._thread = None

    def __enter__(self) -> LocalMCPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what clients need ------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after `start()`)."""
        if self._port is None:
            raise RuntimeError("the local MCP server has no port yet; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """The endpoint clients use (XPAY_MCP_URL), without the key, e.g. http://127.0.0.1:8765/mcp."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{MCP_PATH}"

    @property
    def key(self) -> str:
        """The key every request must carry as `?key=` (XPAY_KEY)."""
        return self._key

    # --- control and inspection ---------------------------------------------------------------

    def inject_rpc_error(self, code: int, message: str, times: int = 1) -> None:
        """Answer the next `times` tool calls with this JSON-RPC error."""
        with self._lock:
            self._rpc_errors.extend([(code, message)] * times)

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Queue `fault` for the next `times` tool calls (a `status` fault is an `isError`
        result holding that error body; a `stall` delays the answer)."""
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}; pass times=1 or more")
        self._app.inject(fault, times)

    def set_speed(self, tokens_per_second: float | None) -> None:
        """Take as long as a stream at this many tokens per second would (None: at once)."""
        self._config.tokens_per_second = tokens_per_second

    @property
    def arguments(self) -> list[dict[str, Any]]:
        """The raw `arguments` of every tool call received, oldest first."""
        with self._lock:
            return [dict(a) for a in self._arguments]

    @property
    def listings(self) -> int:
        """`tools/list` requests answered (a client lists once per session)."""
        with self._lock:
            return self._listings

    @property
    def cancelled(self) -> int:
        """Tool calls cancelled while they ran (the client went away or sent a cancel)."""
        with self._lock:
            return self._cancelled


def _result(types: Any, text: str, *, error: bool) -> Any:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)


def use_local_mcp_server(**kwargs: Any) -> LocalMCPServer:
    """Start a LocalMCPServer and point this process's xpay route at it."""
    import os

    server = LocalMCPServer(**kwargs).start()
    os.environ.update(
        {"XPAY_MCP_URL": server.url, "XPAY_KEY": server.key, "BASETEN_MAGIC_ROUTE": "xpay"}
    )
    return server
