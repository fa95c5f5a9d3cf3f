"""`LocalServer`: the Baseten-compatible server running on its own thread and event loop.

Rule: the server owns one asyncio loop on one daemon thread; every method here is safe to call
from any other thread (a notebook cell, a test, a benchmark). Nothing here knows the wire format.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from datetime import date
from types import TracebackType
from typing import Any

from baseten_magic.core.catalog import Catalog, default_catalog
from baseten_magic.server.app import (
    PROFILES,
    ChatApp,
    RecordedRequest,
    ServerConfig,
    new_api_key,
)
from baseten_magic.server.faults import Fault
from baseten_magic.server.http import HTTPServer
from baseten_magic.server.limits import AccountLimits, LimitStats

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
REASONING_FIELDS = ("reasoning_content", "reasoning")


class LocalServer:
    """A local server speaking Baseten's Chat Completions wire format, for demos and tests."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        tokens_per_second: float | None = None,
        allow_n: bool = False,
        reasoning_field: str = "reasoning_content",
        trailing_usage: bool = True,
        catalog: Catalog | None = None,
        today: date | None = None,
        fault_rate: float = 0.0,
        fault_seed: int | None = None,
        profile: str = "baseten",
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrent: int | None = None,
        latency_s: float = 0.0,
    ) -> None:
        if reasoning_field not in REASONING_FIELDS:
            raise ValueError(
                f"reasoning_field must be one of {', '.join(REASONING_FIELDS)}, "
                f"got {reasoning_field!r}; pick one of those"
            )
        if profile not in PROFILES:
            raise ValueError(
                f"profile must be one of {', '.join(PROFILES)}, got {profile!r}; pass "
                "profile='openai' to stream as OpenAI does"
            )
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate}; pass e.g. 0.1")
        _check_speed(tokens_per_second)
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._config = ServerConfig(
            api_key=api_key if api_key is not None else new_api_key(),
            catalog=catalog if catalog is not None else default_catalog(),
            tokens_per_second=tokens_per_second,
            allow_n=allow_n,
            reasoning_field=reasoning_field,
            trailing_usage=trailing_usage,
            today=today,
            fault_rate=fault_rate,
            fault_seed=fault_seed,
            profile=profile,
            limits=AccountLimits(
                rpm=rpm, tpm=tpm, max_concurrent=max_concurrent, latency_s=latency_s
            ),
        )
        self._app = ChatApp(self._config)
        self._http = HTTPServer(self._app.handle, self._app.bad_request_body)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        # Never shows the key.
        state = "running" if self.running else "stopped"
        where = self.url if self._port is not None else f"{self.host}:{self._requested_port}"
        return f"LocalServer({where}, {state})"

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between `start()` and `stop()`."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> LocalServer:
        """Start serving on a daemon thread; returns self (port 0 picks a free port)."""
        if self.running:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._port = loop.run_until_complete(
                    self._http.start(self.host, self._requested_port)
                )
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._http.close())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name="baseten-local-server", daemon=True)
        self._loop = loop
        self._thread = thread
        thread.start()
        if not ready.wait(_START_TIMEOUT_S):
            raise RuntimeError(
                f"local server did not start within {_START_TIMEOUT_S} s on {self.host}; "
                "check that the address is free"
            )
        if failure:
            self._thread = None
            self._loop = None
            raise OSError(
                f"local server could not listen on {self.host}:{self._requested_port} "
                f"({failure[0]}); pick another port or use port=0"
            ) from failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; harmless when already stopped."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_STOP_TIMEOUT_S)
        self._loop = None
        self._thread = None

    def __enter__(self) -> LocalServer:
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
            raise RuntimeError("the local server has no port yet; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. "http://127.0.0.1:8000/v1"."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def api_key(self) -> str:
        """The key every request must send."""
        return self._config.api_key

    @property
    def profile(self) -> str:
        """How it streams: `baseten` (Baseten's quirks) or `openai` (as OpenAI does)."""
        return self._config.profile

    # --- control and inspection ---------------------------------------------------------------

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Queue `fault` for the next `times` chat completion requests, in order."""
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}; pass times=1 or more")
        self._app.inject(fault, times)

    def set_speed(self, tokens_per_second: float | None) -> None:
        """Pace streams at this many tokens per second (None: as fast as possible)."""
        _check_speed(tokens_per_second)
        self._config.tokens_per_second = tokens_per_second

    @property
    def tokens_per_second(self) -> float | None:
        """The current pacing (None: as fast as possible)."""
        return self._config.tokens_per_second

    @property
    def requests(self) -> list[RecordedRequest]:
        """The last requests received (at most 10,000, and 64 MB of bodies; a body is kept only
        when the request was authenticated), oldest first, the Authorization value redacted."""
        # A copy: the server thread appends to its own list while the caller reads this one.
        return list(self._app.requests)

    @property
    def request_count(self) -> int:
        """Chat completion requests received."""
        return self._app.request_count

    def stats(self) -> LimitStats:
        """The account-limit counters: chat requests, 429s sent, requests in flight (also
        `GET /v1/stats`)."""
        return self._config.limits.stats()

    def reset_stats(self) -> None:
        """Zero the request and 429 counters (e.g. between two runs of a benchmark)."""
        self._config.limits.reset()

    @property
    def open_connections(self) -> int:
        """Client TCP connections open right now."""
        return self._http.open_connections


def _check_speed(tokens_per_second: float | None) -> None:
    if tokens_per_second is not None and not tokens_per_second > 0:
        raise ValueError(
            f"tokens_per_second must be a positive number or None, got {tokens_per_second}; "
            "pass e.g. 40, or None for as fast as possible"
        )


def use_local_server(**kwargs: Any) -> LocalServer:
    """Start a LocalServer and point this process at it (BASETEN_BASE_URL, BASETEN_API_KEY)."""
    server = LocalServer(**kwargs).start()
    environment: Mapping[str, str] = {
        "BASETEN_BASE_URL": server.url,
        "BASETEN_API_KEY": server.api_key,
    }
    os.environ.update(environment)
    return server
