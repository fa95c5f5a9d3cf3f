"""The local server's command line, run as a real subprocess: it prints its URL first, serves,
and stops cleanly on SIGINT (Ctrl-C)."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx


def test_cli_prints_url_serves_and_stops_on_sigint() -> None:
    command = [
        sys.executable,
        "-m",
        "baseten_magic.server",
        "--port",
        "0",
        "--api-key",
        "cli-test-key",
        "--print-url-only",
        "--quiet",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
        assert not url.endswith(":0/v1")
        response = httpx.post(
            url + "/chat/completions",
            json={
                "model": "openai/gpt-oss-120b",
                "messages": [{"role": "user", "content": "/echo hi"}],
            },
            headers={"Authorization": "Bearer cli-test-key"},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "hi"
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "Traceback" not in err


def test_cli_ready_line_names_the_url_and_the_demo_key() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "baseten_magic.server", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("Local Baseten-compatible server on http://127.0.0.1:")
        key = line.rsplit("(API key: ", 1)[1].rstrip(")\n")
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        response = httpx.get(url + "/models", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        process.terminate()  # SIGTERM stops it as cleanly as Ctrl-C
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "Stopped." in out
    assert "Traceback" not in err


def _run_cli(*flags: str) -> str:
    """Start the CLI, send one chat request, stop it; return what it wrote to stderr."""
    command = [sys.executable, "-m", "baseten_magic.server", "--port", "0", "--api-key", "k1234"]
    process = subprocess.Popen(
        [*command, "--print-url-only", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        response = httpx.post(
            url + "/chat/completions?token=secret-in-query",
            json={"model": "openai/gpt-oss-120b", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer k1234"},
            timeout=10,
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return err


def test_cli_logs_one_line_per_request_unless_quiet() -> None:
    lines = [line for line in _run_cli().splitlines() if "/v1/chat/completions" in line]
    assert len(lines) == 1
    assert "POST /v1/chat/completions 200" in lines[0]
    assert "secret-in-query" not in lines[0] and "k1234" not in lines[0]
    assert "/v1/chat/completions" not in _run_cli("--quiet")
