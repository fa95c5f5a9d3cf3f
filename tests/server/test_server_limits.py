"""The local server's account limits: 429 with Retry-After above them, and the counters."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

from baseten_magic.server import LocalServer
from baseten_magic.server.limits import AccountLimits


def _chat(server: LocalServer) -> tuple[int, dict[str, str]]:
    body = json.dumps(
        {"model": "openai/gpt-oss-120b", "messages": [{"role": "user", "content": "hi"}]}
    )
    request = urllib.request.Request(
        f"{server.url}/chat/completions",
        data=body.encode(),
        headers={"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_rpm_answers_429_with_retry_after_above_the_limit() -> None:
    with LocalServer(rpm=120) as server:  # 2/s, a burst of 2
        statuses = [_chat(server) for _ in range(4)]
        assert [s for s, _ in statuses] == [200, 200, 429, 429]
        headers = {k.lower(): v for k, v in statuses[2][1].items()}
        assert headers["retry-after"] == "1"
        assert 0 < float(headers["retry-after-ms"]) <= 500
        with urllib.request.urlopen(f"{server.url}/stats", timeout=10) as response:
            stats = json.loads(response.read())
        assert stats["requests"] == 4 and stats["rate_limited"] == 2
        assert server.stats().rate_limited == 2


def test_max_concurrent_and_latency_are_enforced_and_counted() -> None:
    with LocalServer(max_concurrent=2, latency_s=0.3) as server:
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda: results.append(_chat(server)[0])) for _ in range(4)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200, 200, 429, 429]
        assert time.perf_counter() - started >= 0.3
        deadline = time.monotonic() + 2  # the slot is freed just after the answer is written
        while server.stats().in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = server.stats()
        assert stats.max_in_flight == 2 and stats.in_flight == 0


def test_tpm_counts_prompt_and_answer_tokens() -> None:
    clock = [0.0]
    limits = AccountLimits(tpm=600, clock=lambda: clock[0])  # 10 tokens/s, bucket of 10
    assert limits.admit(8) is None
    refused = limits.admit(8)
    assert refused is not None and refused["Retry-After"] == "1"
    clock[0] += 1.0
    assert limits.admit(8) is None
    assert limits.stats().tokens == 16
