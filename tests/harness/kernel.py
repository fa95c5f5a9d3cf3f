"""A small driver for a real Jupyter kernel, for tests that need what a front end sees.

Rule: every kernel this module starts is shut down on every path (context managers only), and
every IOPub message an execution produces is kept, counted and sized, so tests can assert on
front-end traffic as well as on the final outputs.

The kernel is a subprocess (ipykernel's `python3` kernel), so it reaches a `LocalServer`
started in the test process over loopback; pass its settings in `env`. Names starting with
`BASETEN_` are never inherited from the test process: only what `env` says reaches the kernel.

Usage::

    from harness.kernel import KernelSession

    with KernelSession({"BASETEN_BASE_URL": server.url}) as kernel:
        result = kernel.execute("print(1)")
        assert result.status == "ok"
        assert result.stdout == "1\\n"
        assert result.count("stream") == 1

        # Interrupt a running cell:
        msg_id = kernel.start_execute("print('go', flush=True); import time; time.sleep(30)")
        kernel.wait_for(msg_id, lambda m: m.msg_type == "stream")
        kernel.interrupt()
        assert kernel.wait(msg_id).error_name == "KeyboardInterrupt"

    nb = run_notebook(path, env={"BASETEN_API_KEY": server.api_key}, timeout=60)
"""

from __future__ import annotations

import json
import os
import queue
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import nbformat
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

__all__ = [
    "ExecResult",
    "IOPubMessage",
    "KernelSession",
    "OutputCollector",
    "kernel_environ",
    "run_notebook",
    "write_notebook",
]

# Front-end output messages, in the order a notebook applies them.
OUTPUT_TYPES = frozenset(
    {"stream", "display_data", "update_display_data", "execute_result", "error", "clear_output"}
)


def kernel_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a kernel: this process's, minus any `BASETEN_*`, plus `extra`."""
    # A real key in the developer's shell must never reach a test kernel.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASETEN_")}
    # Keeps jupyter_core from warning about its path migration (warnings are errors here).
    env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class IOPubMessage:
    """One IOPub message of an execution; `nbytes` is the size of its JSON-encoded content."""

    msg_type: str
    content: Mapping[str, Any]
    nbytes: int

    @classmethod
    def from_msg(cls, msg: Mapping[str, Any]) -> IOPubMessage:
        """Wrap a raw jupyter_client message."""
        content = msg["content"]
        return cls(msg["header"]["msg_type"], content, len(json.dumps(content)))


class OutputCollector:
    """Applies output messages the way a notebook front end does and keeps the result."""

    def __init__(self) -> None:
        self.outputs: list[dict[str, Any]] = []
        self._clear_pending = False

    def apply(self, msg: IOPubMessage) -> None:
        """Apply one IOPub message; messages that are not outputs are ignored."""
        kind, content = msg.msg_type, msg.content
        if kind == "clear_output":
            # wait=True defers the clear until the next output arrives (no flicker).
            if content.get("wait"):
                self._clear_pending = True
            else:
                self.outputs.clear()
            return
        if kind == "update_display_data":
            self._update_display(content)
            return
        if kind not in OUTPUT_TYPES:
            return
        if self._clear_pending:
            self.outputs.clear()
            self._clear_pending = False
        if kind == "stream":
            last = self.outputs[-1] if self.outputs else None
            # Consecutive writes to one stream are one output in a saved notebook.
            if last and last["output_type"] == "stream" and last["name"] == content["name"]:
                last["text"] += content["text"]
            else:
                self.outputs.append(
                    {"output_type": "stream", "name": content["name"], "text": content["text"]}
                )
        elif kind == "error":
            self.outputs.append(
                {
                    "output_type": "error",
                    "ename": content["ename"],
                    "evalue": content["evalue"],
                    "traceback": list(content["traceback"]),
                }
            )
        else:
            out: dict[str, Any] = {
                "output_type": kind,
                "data": dict(content["data"]),
                "metadata": dict(content.get("metadata", {})),
            }
            if kind == "execute_result":
                out["execution_count"] = content.get("execution_count")
            display_id = (content.get("transient") or {}).get("display_id")
            if display_id is not None:
                # Not saved by nbformat; kept so later updates can find their target.
                out["transient"] = {"display_id": display_id}
            self.outputs.append(out)

    def notebook_outputs(self) -> list[dict[str, Any]]:
        """The outputs exactly as a saved notebook holds them (no transient display ids)."""
        return [{k: v for k, v in out.items() if k != "transient"} for out in self.outputs]

    def _update_display(self, content: Mapping[str, Any]) -> None:
        display_id = (content.get("transient") or {}).get("display_id")
        for out in self.outputs:
            if out.get("transient", {}).get("display_id") == display_id:
                out["data"] = dict(content["data"])
                out["metadata"] = dict(content.get("metadata", {}))


@dataclass(frozen=True)
class ExecResult:
    """Everything one execution produced: IOPub traffic, final outputs and the reply."""

    msg_id: str
    messages: tuple[IOPubMessage, ...]
    outputs: tuple[dict[str, Any], ...]
    reply: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """The execute reply's status: `ok`, `error` or `aborted`."""
        return str(self.reply.get("status", ""))

    @property
    def execution_count(self) -> int | None:
        """The execution count from the reply."""
        count = self.reply.get("execution_count")
        return count if isinstance(count, int) else None

    @property
    def counts(self) -> Counter[str]:
        """How many IOPub messages of each type the execution produced."""
        return Counter(m.msg_type for m in self.messages)

    def count(self, msg_type: str) -> int:
        """How many IOPub messages of `msg_type` the execution produced."""
        return sum(1 for m in self.messages if m.msg_type == msg_type)

    def nbytes(self, msg_type: str | None = None) -> int:
        """Total JSON-encoded content bytes, of one message type or of all of them."""
        return sum(m.nbytes for m in self.messages if msg_type in (None, m.msg_type))

    def of_type(self, msg_type: str) -> list[IOPubMessage]:
        """The messages of one type, in arrival order."""
        return [m for m in self.messages if m.msg_type == msg_type]

    def _stream(self, name: str) -> str:
        texts = (m.content["text"] for m in self.of_type("stream") if m.content["name"] == name)
        return "".join(map(str, texts))

    @property
    def stdout(self) -> str:
        """Everything written to stdout, including text later cleared."""
        return self._stream("stdout")

    @property
    def stderr(self) -> str:
        """Everything written to stderr, including text later cleared."""
        return self._stream("stderr")

    @property
    def error_name(self) -> str | None:
        """The exception class name when the execution failed, else None."""
        name = self.reply.get("ename")
        return str(name) if name is not None else None

    def data(self, mime: str = "text/plain") -> list[str]:
        """The `mime` payload of every final rich output (display data and results), in order."""
        return [str(o["data"][mime]) for o in self.outputs if mime in o.get("data", {})]


class KernelSession:
    """A running ipykernel with extra environment variables; use it as a context manager."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        kernel_name: str = "python3",
        startup_timeout: float = 60.0,
    ) -> None:
        self.env = kernel_environ(env)
        self.cwd = os.fspath(cwd) if cwd is not None else None
        self.kernel_name = kernel_name
        self.startup_timeout = startup_timeout
        self._km: KernelManager | None = None
        self._kc: BlockingKernelClient | None = None
        # IOPub messages read while waiting for another execution, keyed by parent msg_id.
        self._pending: dict[str, list[dict[str, Any]]] = {}

    def __enter__(self) -> KernelSession:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    @property
    def manager(self) -> KernelManager:
        """The jupyter_client KernelManager (raises if the kernel is not running)."""
        if self._km is None:
            raise RuntimeError("expected a started KernelSession, got none; use it in `with`")
        return self._km

    @property
    def client(self) -> BlockingKernelClient:
        """The blocking kernel client (raises if the kernel is not running)."""
        if self._kc is None:
            raise RuntimeError("expected a started KernelSession, got none; use it in `with`")
        return self._kc

    def start(self) -> None:
        """Start the kernel and wait until it answers."""
        km = KernelManager(kernel_name=self.kernel_name)
        # A short grace period: test kernels hold nothing worth a slow shutdown.
        km.shutdown_wait_time = 3.0
        self._km = km
        kwargs: dict[str, Any] = {"env": self.env}
        if self.cwd is not None:
            kwargs["cwd"] = self.cwd
        try:
            km.start_kernel(**kwargs)
            kc = km.client()
            self._kc = kc
            kc.start_channels()
            kc.wait_for_ready(timeout=self.startup_timeout)
        except BaseException:
            self.shutdown()
            raise

    def shutdown(self) -> None:
        """Stop the channels and the kernel; safe to call twice."""
        kc, km = self._kc, self._km
        self._kc = self._km = None
        if kc is not None:
            kc.stop_channels()
        if km is not None and km.has_kernel:
            try:
                km.shutdown_kernel(now=False)
            except Exception:
                km.shutdown_kernel(now=True)
        if km is not None:
            km.cleanup_resources()

    def interrupt(self) -> None:
        """Interrupt the running cell, as the front end's stop button does (SIGINT)."""
        self.manager.interrupt_kernel()

    def restart(self) -> None:
        """Restart the kernel (fresh namespace, same environment)."""
        self.manager.restart_kernel(now=False)
        self._pending.clear()
        self.client.wait_for_ready(timeout=self.startup_timeout)

    def start_execute(self, code: str) -> str:
        """Send `code` for execution without waiting; returns the request's msg_id."""
        return str(self.client.execute(code, store_history=True, allow_stdin=False))

    def _next_message(self, msg_id: str, deadline: float) -> dict[str, Any]:
        """The next IOPub message whose parent is `msg_id`, buffering others."""
        pending = self._pending.get(msg_id)
        if pending:
            return pending.pop(0)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"expected IOPub messages for execution {msg_id} in time, got none; "
                    "raise the timeout or check the cell"
                )
            try:
                msg: dict[str, Any] = self.client.get_iopub_msg(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            parent = msg.get("parent_header", {}).get("msg_id")
            if parent == msg_id:
                return msg
            if parent:
                self._pending.setdefault(parent, []).append(msg)

    def wait_for(
        self,
        msg_id: str,
        predicate: Callable[[IOPubMessage], bool],
        timeout: float = 30.0,
    ) -> IOPubMessage:
        """Block until an IOPub message of `msg_id` satisfies `predicate`; it stays recorded."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        try:
            while True:
                raw = self._next_message(msg_id, deadline)
                seen.append(raw)
                msg = IOPubMessage.from_msg(raw)
                if predicate(msg):
                    return msg
        finally:
            # Put them back so `wait()` still sees every message of the execution.
            self._pending[msg_id] = seen + self._pending.get(msg_id, [])

    def wait(self, msg_id: str, timeout: float = 60.0) -> ExecResult:
        """Collect every IOPub message of `msg_id` until the kernel is idle, then its reply."""
        deadline = time.monotonic() + timeout
        messages: list[IOPubMessage] = []
        collector = OutputCollector()
        while True:
            msg = IOPubMessage.from_msg(self._next_message(msg_id, deadline))
            messages.append(msg)
            collector.apply(msg)
            if msg.msg_type == "status" and msg.content.get("execution_state") == "idle":
                break
        self._pending.pop(msg_id, None)
        reply = self._reply(msg_id, deadline)
        return ExecResult(msg_id, tuple(messages), tuple(collector.notebook_outputs()), reply)

    def _reply(self, msg_id: str, deadline: float) -> dict[str, Any]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"expected the execute reply for {msg_id} in time, got none; raise the timeout"
                )
            try:
                msg: dict[str, Any] = self.client.get_shell_msg(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                content: dict[str, Any] = msg["content"]
                return content

    def execute(self, code: str, timeout: float = 60.0) -> ExecResult:
        """Run `code` and return everything it produced once the kernel is idle again."""
        return self.wait(self.start_execute(code), timeout=timeout)


def write_notebook(path: str | os.PathLike[str], cells: Sequence[str]) -> Path:
    """Write a Python 3 notebook whose code cells hold `cells`; returns its path."""
    # nbformat ships no type hints, hence the ignores on its calls.
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]  # type: ignore[no-untyped-call]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)  # type: ignore[no-untyped-call]
    return out


def run_notebook(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    *,
    allow_errors: bool = False,
    kernel_name: str = "python3",
) -> nbformat.NotebookNode:
    """Execute a notebook top to bottom in a fresh kernel (cwd: its folder) and return it."""
    nb_path = Path(path)
    nb = nbformat.read(nb_path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        nb,
        timeout=int(timeout),
        kernel_name=kernel_name,
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(nb_path.parent)}},
        shutdown_kernel="graceful",
    )
    # nbclient forwards these keywords to KernelManager.start_kernel and shuts the kernel
    # down on every path, including errors.
    result: nbformat.NotebookNode = client.execute(env=kernel_environ(env))
    return result
