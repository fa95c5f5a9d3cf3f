"""Command line: `python -m baseten_magic.server --port 8000` (or `baseten-local-server`).

Rule: parse options, start a `LocalServer`, print where it listens, wait for Ctrl-C (SIGINT) or
SIGTERM, stop cleanly. Output contract: the first stdout line is either the human ready line
``Local Baseten-compatible server on http://127.0.0.1:8000/v1 (API key: ...)`` or, with
``--print-url-only``, just the base URL (``http://127.0.0.1:8000/v1``), flushed at once so a
parent process can read it and connect. Requests are logged to stderr unless ``--quiet``.

With ``--mcp`` it serves the reseller's MCP tool instead (`server.xpay.LocalMCPServer`): the
ready line is ``Local xpay MCP stand-in on http://127.0.0.1:8000/mcp (XPAY_KEY: ...)``, or the
endpoint alone (without the key) with ``--print-url-only``; ``--api-key`` sets the key.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from baseten_magic.server.local import LocalServer

if TYPE_CHECKING:
    from baseten_magic.server.xpay import LocalMCPServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m baseten_magic.server",
        description="Run a local server that speaks Baseten's Chat Completions wire format.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument("--tps", type=float, default=None, help="tokens per second (default: max)")
    parser.add_argument("--api-key", default=None, help="accepted key (default: a random one)")
    parser.add_argument("--allow-n", action="store_true", help="accept n > 1 and best_of > 1")
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="probability that a chat request meets a random fault (429, 5xx, cut, error event)",
    )
    parser.add_argument("--fault-seed", type=int, default=None, help="seed for --fault-rate")
    parser.add_argument(
        "--rpm", type=float, default=None, help="requests per minute allowed (429 above it)"
    )
    parser.add_argument(
        "--tpm", type=float, default=None, help="tokens per minute allowed (429 above it)"
    )
    parser.add_argument(
        "--max-concurrent", type=int, default=None, help="requests in flight allowed (429 above)"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="fixed seconds added to every chat request"
    )
    parser.add_argument(
        "--reasoning-field",
        choices=("reasoning_content", "reasoning"),
        default="reasoning_content",
        help="delta field that carries reasoning",
    )
    parser.add_argument(
        "--no-trailing-usage", action="store_true", help="omit the trailing usage-only chunk"
    )
    parser.add_argument(
        "--print-url-only",
        action="store_true",
        help="print only the base URL as the first stdout line (for scripts)",
    )
    parser.add_argument(
        "--profile",
        choices=("baseten", "openai"),
        default="baseten",
        help="stream as Baseten does (default) or as OpenAI does, for third-party SDKs",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    parser.add_argument(
        "--mcp",
        action="store_true",
        help="serve the reseller's MCP tool baseten_chat_completions at /mcp (the xpay route; "
        "needs the mcp package) instead of the HTTP API",
    )
    return parser


def _start_mcp(args: argparse.Namespace) -> LocalMCPServer:
    from baseten_magic.server.xpay import LocalMCPServer

    return LocalMCPServer(
        args.host, args.port, key=args.api_key, tokens_per_second=args.tps
    ).start()


def _stop_on_sigterm(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until interrupted; returns the exit status."""
    args = _parser().parse_args(argv)
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    server: LocalServer | LocalMCPServer
    try:
        if args.mcp:
            server = _start_mcp(args)
        else:
            server = LocalServer(
                args.host,
                args.port,
                api_key=args.api_key,
                tokens_per_second=args.tps,
                allow_n=args.allow_n,
                reasoning_field=args.reasoning_field,
                trailing_usage=not args.no_trailing_usage,
                fault_rate=args.fault_rate,
                fault_seed=args.fault_seed,
                profile=args.profile,
                rpm=args.rpm,
                tpm=args.tpm,
                max_concurrent=args.max_concurrent,
                latency_s=args.latency,
            ).start()
    except ImportError:
        print(
            "error: --mcp needs the mcp package: pip install 'baseten_magic[xpay]'",
            file=sys.stderr,
        )
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_url_only:
        print(server.url, flush=True)
    else:
        # A key the user chose is theirs already; only a generated demo key is shown.
        if isinstance(server, LocalServer):
            key = "as given by --api-key" if args.api_key is not None else server.api_key
            print(f"Local Baseten-compatible server on {server.url} (API key: {key})", flush=True)
        else:
            key = "as given by --api-key" if args.api_key is not None else server.key
            print(f"Local xpay MCP stand-in on {server.url} (XPAY_KEY: {key})", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    _stop_on_sigterm(stop)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    if not args.print_url_only:
        print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
