"""Settings: environment read at call time, helpful errors, redaction."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from baseten_magic.core import settings
from baseten_magic.core.errors import ConfigurationError

KEY = "sk-test-0123456789abcdef"


def test_api_key_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASETEN_API_KEY", KEY)
    assert settings.api_key() == KEY
    monkeypatch.setenv("BASETEN_API_KEY", "  other-key \n")
    assert settings.api_key() == "other-key"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_api_key_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("BASETEN_API_KEY", raising=False)
    else:
        monkeypatch.setenv("BASETEN_API_KEY", value)
    with pytest.raises(ConfigurationError) as info:
        settings.api_key()
    message = str(info.value)
    assert message.startswith("BASETEN_API_KEY is not set")
    assert "https://app.baseten.co/settings/api_keys" in message
    assert "%baseten key" in message  # a hidden prompt: %env would echo the key
    assert "%env BASETEN_API_KEY=" not in message
    assert "python -m baseten_magic.server" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "https://inference.baseten.co/v1"),
        ("", "https://inference.baseten.co/v1"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"),
        ("https://example.test/v1//", "https://example.test/v1"),
        ("HTTPS://Example.test/v1", "HTTPS://Example.test/v1"),
    ],
)
def test_base_url(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: str) -> None:
    if value is None:
        monkeypatch.delenv("BASETEN_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("BASETEN_BASE_URL", value)
    assert settings.base_url() == expected


@pytest.mark.parametrize("value", ["inference.baseten.co/v1", "ftp://x", "127.0.0.1:8000"])
def test_bad_base_url(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("BASETEN_BASE_URL", value)
    with pytest.raises(ConfigurationError, match=r"http:// or https://"):
        settings.base_url()


def test_bad_base_url_error_hides_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASETEN_API_KEY", KEY)
    monkeypatch.setenv("BASETEN_BASE_URL", f"{KEY}@host")
    with pytest.raises(ConfigurationError) as info:
        settings.base_url()
    assert KEY not in str(info.value)


def test_ledger_path_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(tmp_path / "x.sqlite3"))
    assert settings.ledger_path() == tmp_path / "x.sqlite3"
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", "~/ledger.db")
    assert settings.ledger_path() == Path.home() / "ledger.db"


@pytest.mark.skipif(sys.platform != "linux", reason="XDG layout is the Linux convention")
def test_ledger_path_defaults_to_xdg_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BASETEN_MAGIC_LEDGER", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert settings.ledger_path() == tmp_path / "baseten_magic" / "ledger.sqlite3"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert (
        settings.ledger_path() == tmp_path / ".local" / "share" / "baseten_magic" / "ledger.sqlite3"
    )
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")  # invalid per the spec: ignored
    assert (
        settings.ledger_path() == tmp_path / ".local" / "share" / "baseten_magic" / "ledger.sqlite3"
    )


def test_ledger_path_on_macos_and_windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BASETEN_MAGIC_LEDGER", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "darwin")
    assert settings.ledger_path() == (
        tmp_path / "Library" / "Application Support" / "baseten_magic" / "ledger.sqlite3"
    )
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert settings.ledger_path() == tmp_path / "Local" / "baseten_magic" / "ledger.sqlite3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"failed with key {KEY}!", "failed with key ***!"),
        (f"{KEY}{KEY}", "******"),
        ("Authorization: Bearer abc.def-123", "Authorization: Bearer ***"),
        ("authorization: bearer abc123, next", "authorization: bearer ***, next"),
        ('{"Authorization": "Api-Key xyz789"}', '{"Authorization": "Api-Key ***"}'),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redact(monkeypatch: pytest.MonkeyPatch, text: str, expected: str) -> None:
    monkeypatch.setenv("BASETEN_API_KEY", KEY)
    assert settings.redact(text) == expected


def test_redact_without_key_or_with_tiny_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASETEN_API_KEY", raising=False)
    assert settings.redact("plain text") == "plain text"
    monkeypatch.setenv("BASETEN_API_KEY", "a")
    assert settings.redact("a banana") == "a banana"


def test_redact_uses_the_current_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASETEN_API_KEY", "first-key-1234")
    assert settings.redact("first-key-1234") == "***"
    monkeypatch.setenv("BASETEN_API_KEY", "second-key-5678")
    assert settings.redact("second-key-5678 first-key-1234") == "*** first-key-1234"


@pytest.mark.parametrize("bad", ["sk-abc\u200bdef0123", "sk-abc\u201cdef0123", "sk-abc\rdef0123"])
def test_api_key_that_cannot_go_in_a_header_is_refused_and_not_shown(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("BASETEN_API_KEY", bad)
    with pytest.raises(ConfigurationError, match="position 7 of 14") as info:
        settings.api_key()
    assert bad not in str(info.value) and "\n" not in str(info.value)
    assert settings.check_api_key("local-key with space") == "local-key with space"
