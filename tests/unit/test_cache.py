"""io.cache: keys, round trips, chunked lookups, file mode, and sharing between processes."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from baseten_magic.core.result import ChatResult, Usage
from baseten_magic.io.cache import CHUNK, ResponseCache, cache_path, key_for

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}


def test_the_key_ignores_transport_fields_only() -> None:
    base = key_for(BODY)
    assert key_for({**BODY, "stream": True, "stream_options": {"include_usage": True}}) == base
    assert key_for(dict(reversed(list(BODY.items())))) == base
    assert key_for({**BODY, "temperature": 0.3}) != base
    assert key_for({**BODY, "messages": [{"role": "user", "content": "hi!"}]}) != base
    assert key_for(BODY, scope="http://a/v1") != key_for(BODY, scope="http://b/v1")


def test_round_trip_keeps_the_answer_and_costs_nothing(tmp_path: Path) -> None:
    result = ChatResult(
        content="answer",
        reasoning="because",
        tool_calls=[{"id": "c1", "name": "f", "arguments": "{}"}],
        finish_reason="stop",
        model="m",
        usage=Usage(10, 5, 2, 1),
        cost=Decimal("0.0012"),
    )
    with ResponseCache(tmp_path / "c.sqlite3") as cache:
        cache.put("k", result)
        hit = cache.get("k")
        assert cache.get("missing") is None
    assert hit is not None
    assert hit.saved_usd == Decimal("0.0012")
    got = hit.result
    assert (got.content, got.reasoning, got.finish_reason, got.model) == (
        "answer",
        "because",
        "stop",
        "m",
    )
    assert got.tool_calls == result.tool_calls and got.usage == result.usage
    assert got.cost == 0


def test_lookups_are_one_query_per_chunk(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite3")
    keys = [f"k{i}" for i in range(3 * CHUNK)]
    for key in keys[::7]:
        cache.put(key, ChatResult(content=key))
    statements: list[str] = []
    cache._connection().set_trace_callback(statements.append)
    found = cache.get_many(keys)
    cache.close()
    assert set(found) == set(keys[::7])
    assert found["k7"].result.content == "k7"
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 3


def test_file_is_owner_only_and_the_path_follows_the_environment(
    tmp_path: Path, monkeypatch: object
) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    target = tmp_path / "sub" / "cache.sqlite3"
    monkeypatch.setenv("BASETEN_MAGIC_CACHE", str(target))
    assert cache_path() == target
    ResponseCache().close()
    assert target.stat().st_mode & 0o777 == 0o600


def test_several_processes_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    code = (
        "import sys\n"
        "from baseten_magic.core.result import ChatResult\n"
        "from baseten_magic.io.cache import ResponseCache\n"
        "c = ResponseCache(sys.argv[1])\n"
        "for i in range(50): c.put(f'{sys.argv[2]}-{i}', ChatResult(content='x'))\n"
    )
    workers = [subprocess.Popen([sys.executable, "-c", code, str(path), name]) for name in "abc"]
    assert [w.wait(60) for w in workers] == [0, 0, 0]
    assert len(ResponseCache(path)) == 150
