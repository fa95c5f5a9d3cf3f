"""The environment, read at call time: route, keys, URLs, ledger path, timeout; redaction.

Rule: nothing here is cached, so a key set with `%baseten key` takes effect on the next call, and no
function returns or raises text that contains a key (run `redact` on anything that might). The
reseller's key travels in a URL query (`?key=...`), so `redact` also blanks `key=` query values.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Literal

from baseten_magic.core.errors import ConfigurationError

API_KEY_ENV = "BASETEN_API_KEY"
BASE_URL_ENV = "BASETEN_BASE_URL"
LEDGER_ENV = "BASETEN_MAGIC_LEDGER"
TIMEOUT_ENV = "BASETEN_MAGIC_TIMEOUT"
DEFAULT_TIMEOUT_S = 120.0
#: Every place the timeout can be raised, for the messages that say to raise it.
TIMEOUT_HINT = f"{TIMEOUT_ENV}=<seconds>, timeout=..., or %config BasetenMagics.timeout = <seconds>"
DEFAULT_BASE_URL = "https://inference.baseten.co/v1"
ROUTE_ENV = "BASETEN_MAGIC_ROUTE"
XPAY_KEY_ENV = "XPAY_KEY"
XPAY_URL_ENV = "XPAY_MCP_URL"
DEFAULT_XPAY_URL = "https://baseten.mcp.xpay.sh/mcp"
Route = Literal["baseten", "xpay"]
ROUTES: tuple[Route, ...] = ("baseten", "xpay")
APP_NAME = "baseten_magic"
LEDGER_FILE = "ledger.sqlite3"

# Authorization header values, as they may appear in logged requests or echoed errors; the token
# is RFC 6750's b64token character set, so surrounding punctuation survives.
_AUTH_PATTERN = re.compile(r"\b(Bearer|Api-Key)(\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# A `key` query parameter (`?key=...`, `&key=...`, percent-encoded or not) as the reseller's URLs
# carry it; the value runs to the next delimiter a URL or the text around it can have.
_KEY_QUERY_PATTERN = re.compile(r"([?&;](?:xpay_)?key=)[^&#\s'\"<>)\]]+", re.IGNORECASE)
# A key shorter than this is not replaced inside arbitrary text: it would mangle ordinary words.
_MIN_KEY_LENGTH = 4
# What an HTTP header value can carry; anything else makes httpx fail with an error that holds
# the whole header, key included.
_HEADER_UNSAFE = re.compile(r"[^\x20-\x7e]")


def api_key() -> str:
    """The API key from `BASETEN_API_KEY`; raises ConfigurationError saying how to set it."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise ConfigurationError(
            f"{API_KEY_ENV} is not set; create a key at https://app.baseten.co/settings/api_keys "
            f"and set it with %baseten key (a hidden prompt), os.environ or the shell, not %env, "
            "which echoes it into the notebook (for the offline local server see "
            "`python -m baseten_magic.server`)"
        )
    return check_api_key(key)


def check_api_key(key: str) -> str:
    """`key` if it can be sent in an HTTP header; else ConfigurationError (key not shown)."""
    bad = _HEADER_UNSAFE.search(key)
    if bad is not None:
        position = bad.start()
        raise ConfigurationError(
            f"the API key holds a character that cannot be sent in an HTTP header (position "
            f"{position + 1} of {len(key)}, e.g. a curly quote, line break or invisible space); "
            f"copy the key again into {API_KEY_ENV}"
        )
    return key


def base_url() -> str:
    """The API base URL from `BASETEN_BASE_URL` (default Baseten's), without a trailing slash."""
    url = os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL
    if not url.lower().startswith(("http://", "https://")):
        raise ConfigurationError(
            f"{BASE_URL_ENV} must start with http:// or https://, got {redact(url)!r}; "
            f"set it to e.g. {DEFAULT_BASE_URL} or http://127.0.0.1:8000/v1"
        )
    return url.rstrip("/")


def route(value: str | None = None) -> Route:
    """The route calls take: `value` if given, else `BASETEN_MAGIC_ROUTE` (default `baseten`)."""
    raw = (os.environ.get(ROUTE_ENV, "") if value is None else value).strip().lower()
    if not raw:
        return "baseten"
    for known in ROUTES:
        if raw == known:
            return known
    source = ROUTE_ENV if value is None else "route"
    raise ConfigurationError(
        f"{source} must be baseten or xpay, got {redact(raw)!r}; use baseten (Baseten's API with "
        f"BASETEN_API_KEY) or xpay (the reseller's MCP tool with {XPAY_KEY_ENV})"
    )


def xpay_key() -> str:
    """The reseller's key from `XPAY_KEY`; raises ConfigurationError saying how to set it."""
    key = os.environ.get(XPAY_KEY_ENV, "").strip()
    if not key:
        raise ConfigurationError(
            f"{XPAY_KEY_ENV} is not set; the xpay route needs the reseller's key: set it with "
            "%baseten key --route xpay (a hidden prompt), os.environ or the shell (for the "
            "offline stand-in see `python -m baseten_magic.server --mcp`)"
        )
    if _HEADER_UNSAFE.search(key) or any(c in key for c in "&#?/ "):
        raise ConfigurationError(
            f"{XPAY_KEY_ENV} holds a character a URL query cannot carry as is (a line break, "
            f"space, curly quote or one of & # ? /); copy the key again into {XPAY_KEY_ENV}"
        )
    return key


def xpay_url() -> str:
    """The reseller's MCP endpoint from `XPAY_MCP_URL` (default the listing's), without a key."""
    url = os.environ.get(XPAY_URL_ENV, "").strip() or DEFAULT_XPAY_URL
    if not url.lower().startswith(("http://", "https://")):
        raise ConfigurationError(
            f"{XPAY_URL_ENV} must start with http:// or https://, got {redact(url)!r}; "
            f"set it to e.g. {DEFAULT_XPAY_URL} or http://127.0.0.1:8765/mcp"
        )
    return url


def timeout_s() -> float:
    """Seconds to wait for the next piece of an answer: `BASETEN_MAGIC_TIMEOUT`, default 120."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigurationError(
            f"{TIMEOUT_ENV} must be a positive number of seconds, got {redact(raw)!r}; "
            f"set it to e.g. 300"
        )
    return value


def data_dir() -> Path:
    """The per-user data directory of baseten_magic, following each platform's convention."""
    if sys.platform == "win32":
        root = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(root) / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    # The XDG spec says relative paths are invalid and must be ignored.
    root = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return root / APP_NAME


def ledger_path() -> Path:
    """Where the cost ledger lives: `BASETEN_MAGIC_LEDGER`, else the user data directory."""
    configured = os.environ.get(LEDGER_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return data_dir() / LEDGER_FILE


def redact(text: str, key: str | None = None) -> str:
    """`text` with the current keys (`BASETEN_API_KEY`, `XPAY_KEY`), `key` (the key a client
    was given, if any), any `Bearer`/`Api-Key` token and any `key=` URL query value as `***`."""
    for secret in (
        os.environ.get(API_KEY_ENV, "").strip(),
        os.environ.get(XPAY_KEY_ENV, "").strip(),
        (key or "").strip(),
    ):
        if len(secret) >= _MIN_KEY_LENGTH:
            text = text.replace(secret, "***")
    text = _KEY_QUERY_PATTERN.sub(lambda m: f"{m.group(1)}***", text)
    return _AUTH_PATTERN.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def error_line(error: BaseException) -> str:
    """What a user is shown of an error: its first line, secrets removed."""
    text = str(error).strip() or type(error).__name__
    return redact(text.splitlines()[0])
