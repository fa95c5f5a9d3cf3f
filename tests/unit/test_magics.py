"""`%%baseten` / `%baseten` in a real InteractiveShell, against the local server on loopback."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils import capture as _capture
from traitlets import TraitError

import baseten_magic
from baseten_magic.core.result import ChatResult
from baseten_magic.io.ledger import Ledger, LedgerRow
from baseten_magic.notebook.magics import BasetenMagics
from baseten_magic.server import Fault, LocalServer

# IPython's helpers are untyped; the shell is used as `Any` for the same reason.
capture_output: Callable[..., Any] = _capture.capture_output


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
def shell(server: LocalServer, ledger_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("BASETEN_BASE_URL", server.url)
    monkeypatch.setenv("BASETEN_API_KEY", server.api_key)
    monkeypatch.setenv("BASETEN_MAGIC_LEDGER", str(ledger_file))
    for name in ("BASETEN_MAGIC_MODEL", "BASETEN_MAGIC_PRICING", "BASETEN_MAGIC_PRICES"):
        monkeypatch.delenv(name, raising=False)
    ipython: Any = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "baseten_magic")
    yield ipython
    ipython.run_line_magic("unload_ext", "baseten_magic")
    ipython.config.pop("BasetenMagics", None)
    for name in ("_baseten", "answer", "Answer", "df", "Point"):
        ipython.user_ns.pop(name, None)


def magics_of(shell: Any) -> BasetenMagics:
    found = shell.magics_manager.registry["BasetenMagics"]
    assert isinstance(found, BasetenMagics)
    return found


def run(shell: Any, line: str, cell: str) -> tuple[ChatResult, Any]:
    with capture_output() as captured:
        shell.run_cell_magic("baseten", line, cell)
    result = shell.user_ns["_baseten"]
    assert isinstance(result, ChatResult)
    return result, captured


def final_text(captured: Any) -> str:
    """The text/plain of every output as it finally stands (display updates applied)."""
    by_id: dict[str, str] = {}
    order: list[str] = []
    for index, output in enumerate(captured.outputs):
        transient = output.transient or {}
        key = str(transient.get("display_id") or f"#{index}")
        if key not in by_id:
            order.append(key)
        by_id[key] = str(output.data.get("text/plain", ""))
    return "\n".join(by_id[key] for key in order)


def last_request(server: LocalServer) -> dict[str, Any]:
    body = server.requests[-1].body
    assert body is not None
    return body


def ledger_rows(path: Path) -> list[LedgerRow]:
    return Ledger(path).rows()


# -- loading and settings -------------------------------------------------------------------


def test_load_twice_reuses_the_instance(shell: Any) -> None:
    first = magics_of(shell)
    baseten_magic.load_ipython_extension(shell)
    shell.run_line_magic("load_ext", "baseten_magic")
    assert magics_of(shell) is first
    assert "baseten" in shell.magics_manager.magics["cell"]
    assert "baseten" in shell.magics_manager.magics["line"]
    assert sum(isinstance(c, BasetenMagics) for c in shell.configurables) == 1


def test_config_sets_and_rejects_traits(
    shell: Any, server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    magics = magics_of(shell)
    shell.run_line_magic("config", "BasetenMagics.temperature = 0.25")
    assert magics.temperature == 0.25
    # %config reports a rejected value as one logged error line and keeps the old value.
    shell.run_line_magic("config", "BasetenMagics.temperature = 9")
    assert magics.temperature == 0.25
    assert "temperature must be a number from 0 to 4, got 9" in caplog.text
    with pytest.raises(TraitError, match="temperature must be"):
        magics.temperature = 9
    with pytest.raises(TraitError, match="unknown model alias"):
        magics.model = "gtp-oss"
    with pytest.raises(TraitError, match="unknown request parameter"):
        magics.params = {"top_kk": 3}
    magics.params = {"top_k": 40}
    magics.max_tokens = 500
    assert magics.session.defaults() == {"top_k": 40, "temperature": 0.25, "max_tokens": 500}
    run(shell, "", "/echo hi")
    body = last_request(server)
    assert body["top_k"] == 40
    assert body["temperature"] == 0.25
    magics.temperature = None
    magics.params = {}
    magics.max_tokens = None


def test_defaults_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASETEN_MAGIC_MODEL", "glm")
    monkeypatch.setenv("BASETEN_MAGIC_PRICING", "per_call")
    magics = BasetenMagics(shell=None)
    assert magics.model == "glm"
    assert magics.pricing_mode == "per_call"
    assert "session=" in repr(magics)


# -- options ----------------------------------------------------------------------------------


def test_options_reach_the_request(shell: Any, server: LocalServer) -> None:
    result, _ = run(
        shell,
        '-m glm --system "Be terse." --temperature 0.5 --top-p 0.9 --max-tokens 300 '
        "--param top_k=40 --param 'stop=[\"END\"]' --param user=alice --thinking",
        "/echo fine",
    )
    body = last_request(server)
    assert body["model"] == "zai-org/GLM-4.7"
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert body["temperature"] == 0.5
    assert body["top_p"] == 0.9
    assert body["max_tokens"] == 300
    assert body["top_k"] == 40
    assert body["stop"] == ["END"]
    assert body["user"] == "alice"
    assert body["chat_template_args"] == {"enable_thinking": True}
    assert body["stream"] is True
    assert result.content == "fine"
    assert server.requests[-1].headers.get("x-session-affinity") == magics_of(shell).session.id


def test_reasoning_effort_and_no_stream(shell: Any, server: LocalServer) -> None:
    result, captured = run(shell, "--reasoning-effort high --no-stream", "/echo done")
    body = last_request(server)
    assert body["reasoning_effort"] == "high"
    assert body["stream"] is False
    assert "stream_options" not in body
    assert result.content == "done"
    assert result.reasoning
    text = final_text(captured)
    assert "done" in text
    assert "openai/gpt-oss-120b" in text


@pytest.mark.parametrize(
    ("line", "cell", "fragment"),
    [
        ("--bogus", "hi", "%%baseten has no option --bogus; %%baseten? lists the options"),
        ("--temperature 9", "hi", "temperature must be"),
        ("--temperature warm", "hi", "temperature must be"),
        ("--param top_kk=3", "hi", "did you mean 'top_k'"),
        ("--param nonsense", "hi", "NAME=VALUE"),
        ("-m gtp-oss", "hi", "unknown model alias"),
        ("--reasoning-effort extreme", "hi", "reasoning_effort"),
        ("-o 1bad", "hi", "variable name"),
        ("--pricing monthly", "hi", "per_token or per_call"),
        ("-i", "{{nowhere}}", "'nowhere'"),
        ("", "   \n", "empty"),
        ("", "hi\n@assistant\n\n@user\nx", "@assistant message on line 2 is empty"),
        ("--schema Missing", "hi", "'Missing'"),
        ("--run-tools", "hi", "--run-tools needs --tools"),
        ("-m kimi-thinking --no-thinking", "hi", "thinking cannot be switched"),
        ("-m deepseek-v3", "hi", "retired on 2026-05-01; use deepseek (deepseek-ai/DeepSeek-V3.1)"),
        ("-m zai-org/GLM-4.6", "hi", "zai-org/GLM-4.6 was retired on 2026-05-01; use glm"),
    ],
)
def test_bad_input_is_one_usage_error_before_sending(
    shell: Any, server: LocalServer, line: str, cell: str, fragment: str
) -> None:
    before = server.request_count
    with pytest.raises(UsageError) as info:
        shell.run_cell_magic("baseten", line, cell)
    assert type(info.value) is UsageError
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert server.request_count == before


def test_missing_key_is_a_usage_error(
    shell: Any, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BASETEN_API_KEY")
    before = server.request_count
    with pytest.raises(UsageError, match="BASETEN_API_KEY is not set"):
        shell.run_cell_magic("baseten", "", "hi")
    assert server.request_count == before


def test_out_stores_result_and_footer(shell: Any, ledger_file: Path) -> None:
    result, captured = run(shell, "-o answer", "/words 12")
    assert shell.user_ns["answer"] is result
    assert result.status == "ok"
    assert result.usage is not None
    assert result.usage["completion_tokens"] > 0
    assert result.cost > 0
    footer = final_text(captured).splitlines()[-1]
    assert "openai/gpt-oss-120b" in footer
    assert f"{result.usage.prompt_tokens:,}" in footer
    assert "$" in footer
    assert "TTFT" in footer
    rows = ledger_rows(ledger_file)
    assert [r.status for r in rows] == ["ok"]
    assert rows[0].source == "magic"
    assert rows[0].session == magics_of(shell).session.id
    assert magics_of(shell).session.last_prompt == "/words 12"
    assert magics_of(shell).session.history[-1] is result


def test_display_returns_a_handle_in_a_real_shell(shell: Any) -> None:
    from IPython import display as ipython_display

    display: Callable[..., Any] = ipython_display.display
    with capture_output():
        handle = display({"text/plain": "x"}, raw=True, display_id=True)
    assert handle is not None
    _, captured = run(shell, "", "/echo one **two**")
    html = "".join(str(o.data.get("text/html", "")) for o in captured.outputs)
    assert "<strong>two</strong>" in html
    # Streaming painted through display handles: later outputs update earlier ones.
    assert any(o.update for o in captured.outputs) or len(captured.outputs) >= 2


def test_html_in_answers_never_reaches_the_page_live(shell: Any) -> None:
    _, captured = run(shell, "", '/echo <img src=x onerror="alert(1)"> <script>x()</script>')
    html = "".join(str(o.data.get("text/html", "")) for o in captured.outputs)
    assert "<img" not in html
    assert "<script" not in html
    assert "&lt;script&gt;" in html


# -- multi-turn cells and memory ----------------------------------------------------------------


def test_multi_turn_cell_syntax(shell: Any, server: LocalServer) -> None:
    run(
        shell,
        "--no-memory --system default",
        "@system\nPirate.\n@user\nhi\n@assistant\nAhoy\n@user\n/echo again",
    )
    assert last_request(server)["messages"] == [
        {"role": "system", "content": "Pirate."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Ahoy"},
        {"role": "user", "content": "/echo again"},
    ]


def test_memory_rerun_replaces_and_reset(shell: Any, server: LocalServer) -> None:
    magics = magics_of(shell)
    with capture_output():
        shell.run_cell("%%baseten\n/echo first answer", cell_id="cell-a")
        shell.run_cell("%%baseten\n/echo second answer", cell_id="cell-b")
    assert last_request(server)["messages"] == [
        {"role": "user", "content": "/echo first answer"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "/echo second answer"},
    ]
    # Re-running cell A (edited) sees nothing before it and replaces its exchange in place.
    with capture_output():
        shell.run_cell("%%baseten\n/echo first again", cell_id="cell-a")
    assert last_request(server)["messages"] == [{"role": "user", "content": "/echo first again"}]
    assert [e.answer for e in magics.session.conversation.exchanges] == [
        "first again",
        "second answer",
    ]
    with capture_output():
        shell.run_cell("%%baseten\n/echo third", cell_id="cell-c")
    assert len(last_request(server)["messages"]) == 5
    # --no-memory neither reads nor writes.
    run(shell, "--no-memory", "/echo alone")
    assert len(last_request(server)["messages"]) == 1
    assert len(magics.session.conversation) == 3
    with capture_output() as captured:
        shell.run_line_magic("baseten", "reset")
    assert "3 exchanges forgotten" in captured.stdout
    run(shell, "", "/echo fresh")
    assert len(last_request(server)["messages"]) == 1


def test_rerun_by_text_without_cell_id(shell: Any, server: LocalServer) -> None:
    run(shell, "", "/echo A")
    run(shell, "", "/echo B")
    run(shell, "", "/echo A")  # same cell text again: replaces, sees nothing before it
    assert last_request(server)["messages"] == [{"role": "user", "content": "/echo A"}]
    assert len(magics_of(shell).session.conversation) == 2


# -- interpolation ----------------------------------------------------------------------------


class FakeFrame:
    shape = (250, 2)
    columns = ("city", "temp")
    dtypes: ClassVar[dict[str, str]] = {"city": "object", "temp": "float64"}

    def head(self, n: int) -> FakeFrame:
        return self

    def to_string(self) -> str:
        return "city temp\nParis 21.5"


def test_interpolation_in_a_cell(shell: Any, server: LocalServer) -> None:
    shell.user_ns["df"] = FakeFrame()
    cell = '/echo {{ df }} and {"json": {"a": 1}} and `{{df}}` and \\{{df}}'
    run(shell, "-i --no-memory", cell)
    sent = last_request(server)["messages"][-1]["content"]
    assert "FakeFrame with 250 rows × 2 columns" in sent
    assert "Paris 21.5" in sent
    assert '{"json": {"a": 1}}' in sent
    assert "`{{df}}`" in sent
    assert sent.endswith("and {{df}}")
    # Without -i nothing is touched.
    run(shell, "--no-memory", "/echo {{ df }}")
    assert last_request(server)["messages"][-1]["content"] == "/echo {{ df }}"


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [
        (Fault("status", status=401), "HTTP 401"),
        (Fault("status", status=404), "HTTP 404"),
        (Fault("status", status=400, message="bad things"), "HTTP 400"),
    ],
)
def test_http_errors_are_one_line_with_an_error_row(
    shell: Any, server: LocalServer, ledger_file: Path, fault: Fault, fragment: str
) -> None:
    server.inject(fault)
    with capture_output() as captured, pytest.raises(UsageError) as info:
        shell.run_cell_magic("baseten", "-o answer", "hello")
    assert type(info.value) is UsageError
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert shell.user_ns["answer"].status == "error"
    assert "error" in final_text(captured)
    assert [r.status for r in ledger_rows(ledger_file)] == ["error"]


def test_429_after_retries(shell: Any, server: LocalServer, ledger_file: Path) -> None:
    server.inject(Fault("status", status=429, retry_after=0.01), times=3)
    before = server.request_count
    with capture_output(), pytest.raises(UsageError, match="HTTP 429"):
        shell.run_cell_magic("baseten", "", "hello")
    assert server.request_count - before == 3
    assert [r.status for r in ledger_rows(ledger_file)] == ["error"]
    result, _ = run(shell, "", "/echo recovered")
    assert result.content == "recovered"


@pytest.mark.parametrize("kind", ["cut", "error_event"])
def test_stream_failures_keep_the_partial_answer(
    shell: Any, server: LocalServer, ledger_file: Path, kind: Literal["cut", "error_event"]
) -> None:
    server.inject(Fault(kind, after_tokens=24))  # 16 reasoning tokens, then 8 of answer
    with capture_output() as captured, pytest.raises(UsageError) as info:
        shell.run_cell_magic("baseten", "-o answer --reasoning-effort low", "/words 40")
    partial = shell.user_ns["answer"]
    assert partial.status == "error"
    assert partial.content  # what had arrived is kept
    assert partial.content[:10] in final_text(captured)
    assert "error" in final_text(captured)
    assert "\n" not in str(info.value)
    assert [r.status for r in ledger_rows(ledger_file)] == ["error"]
    # The partial answer is remembered, marked as cut short.
    exchange = magics_of(shell).session.conversation.exchanges[-1]
    assert exchange.status == "error"
    result, _ = run(shell, "", "/echo next")
    assert result.status == "ok"


def test_interrupt_from_painter(
    shell: Any,
    server: LocalServer,
    ledger_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from baseten_magic.render.painter import Painter

    original = Painter.add
    seen: list[int] = []

    def add(self: Painter, delta: Any) -> None:
        original(self, delta)
        if delta.content:
            seen.append(1)
            if len(seen) == 5:
                raise KeyboardInterrupt

    monkeypatch.setattr(Painter, "add", add)
    magics = magics_of(shell)
    old_client = magics.session.client
    with capture_output() as captured, pytest.raises(KeyboardInterrupt):
        shell.run_cell_magic("baseten", "-o answer", "/words 60")
    partial = shell.user_ns["answer"]
    assert partial.status == "interrupted"
    assert partial.content
    assert "interrupted" in final_text(captured)
    assert [r.status for r in ledger_rows(ledger_file)] == ["interrupted"]
    assert magics.session.client is not old_client  # the pool was discarded
    monkeypatch.setattr(Painter, "add", original)
    result, _ = run(shell, "", "/echo still works")
    assert result.content == "still works"
    assert [r.status for r in ledger_rows(ledger_file)] == ["interrupted", "ok"]


def test_real_sigint_during_a_stalled_stream(
    shell: Any, server: LocalServer, ledger_file: Path
) -> None:
    server.inject(Fault("stall", after_tokens=3, stall_s=5.0))
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with capture_output(), pytest.raises(KeyboardInterrupt):
            shell.run_cell_magic("baseten", "-o answer --reasoning-effort low", "/words 30")
    finally:
        timer.cancel()
    assert shell.user_ns["answer"].status == "interrupted"
    assert [r.status for r in ledger_rows(ledger_file)] == ["interrupted"]
    result, _ = run(shell, "", "/echo next")
    assert result.status == "ok"


# -- structured output --------------------------------------------------------------------------


def test_json_mode_parses(shell: Any, server: LocalServer) -> None:
    result, _ = run(shell, "--json -o answer", "give me an object")
    assert last_request(server)["response_format"] == {"type": "json_object"}
    assert isinstance(result.parsed, dict)
    with capture_output(), pytest.raises(UsageError, match="did not parse"):
        shell.run_cell_magic("baseten", "--json -o answer", "/bad-json")
    assert shell.user_ns["answer"].parsed is None


# -- line subcommands ---------------------------------------------------------------------------


def test_cost_table_totals(shell: Any, server: LocalServer) -> None:
    first, _ = run(shell, "", "/echo one two")
    second, _ = run(shell, "--pricing per_call", "/echo three")
    with capture_output() as captured:
        shell.run_line_magic("baseten", "cost")
    data = captured.outputs[-1].data
    plain = data["text/plain"]
    assert "2 calls" in plain
    assert "$0.01" in plain
    total = first.cost + second.cost
    from baseten_magic.core.pricing import format_usd

    assert format_usd(total) in plain.splitlines()[-1]
    assert "<table" in data["text/html"]


def test_models_config_help_and_unknown(shell: Any, server: LocalServer) -> None:
    with capture_output() as captured:
        shell.run_line_magic("baseten", "models")
    assert "openai/gpt-oss-120b" in captured.outputs[-1].data["text/plain"]
    with capture_output() as captured:
        shell.run_line_magic("baseten", "models --refresh")
    assert "gpt-oss" in captured.outputs[-1].data["text/plain"]
    with capture_output() as captured:
        shell.run_line_magic("baseten", "config")
    assert "API key          set" in captured.stdout
    assert server.api_key not in captured.stdout
    # The help is a display (HTML and plain text), no longer printed text.
    with capture_output() as captured:
        shell.run_line_magic("baseten", "help")
    overview = captured.outputs[-1].data["text/plain"]
    for text in ("--param NAME=VALUE", "@assistant", "{{name}}", "replaces its exchange"):
        assert text in overview
    with capture_output() as captured:
        shell.run_line_magic("baseten", "help params")
    assert "top_k" in captured.outputs[-1].data["text/plain"]
    with pytest.raises(UsageError, match="did you mean 'cost'"):
        shell.run_line_magic("baseten", "cots")
    with pytest.raises(UsageError, match="takes no arguments"):
        shell.run_line_magic("baseten", "reset now")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "cost 2",
            "%baseten cost takes only --by model|day|cell, --plot and --all, got '2'; "
            "run %baseten cost or %baseten cost --by model",
        ),
        (
            "models --x",
            "%baseten models takes only --refresh, got '--x'; "
            "run %baseten models or %baseten models --refresh",
        ),
        (
            "help params more",
            "%baseten help takes only 'options' or 'params', got 'params more'; "
            "run %baseten help or %baseten help params",
        ),
        (
            "local --tps",
            "%baseten local takes only --tps N, got '--tps'; "
            "run %baseten local or %baseten local --tps 40",
        ),
        (
            "local --tps abc",
            "--tps must be a positive number of tokens per second, got 'abc'; pass e.g. --tps 40",
        ),
        ("panel -h", "%baseten panel takes no arguments, got '-h'; run %baseten panel"),
        ("config 'x", "could not split the options (No closing quotation); check the quotes"),
    ],
)
def test_subcommand_misuse_is_one_usage_error(shell: Any, line: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("baseten", line)
    assert type(info.value) is UsageError
    assert str(info.value) == message


def test_local_subcommand_points_at_a_new_server(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    magics = magics_of(shell)
    with capture_output() as captured:
        shell.run_line_magic("baseten", "local --tps 1000")
    local = magics.local.server
    assert local is not None
    # Fixture teardown unloads the extension (which stops the server) and monkeypatch restores
    # the two variables the subcommand set.
    assert local.url in captured.stdout
    assert local.api_key not in captured.stdout
    assert os.environ["BASETEN_BASE_URL"] == local.url
    result, _ = run(shell, "", "/echo local")
    assert result.content == "local"
    assert local.request_count == 1
    with pytest.raises(UsageError, match="--tps"):
        shell.run_line_magic("baseten", "local --tps -3")


def test_unloading_stops_the_local_server_and_restores_the_variables(
    shell: Any, server: LocalServer
) -> None:
    with capture_output():
        shell.run_line_magic("baseten", "local")
        shell.run_line_magic("baseten", "local --tps 500")  # a second server: same originals
    assert os.environ["BASETEN_BASE_URL"] != server.url
    shell.run_line_magic("unload_ext", "baseten_magic")
    assert os.environ["BASETEN_BASE_URL"] == server.url
    assert os.environ["BASETEN_API_KEY"] == server.api_key
    shell.run_line_magic("load_ext", "baseten_magic")  # the fixture unloads it again


def test_terminal_shell_is_detected() -> None:
    from IPython.terminal.interactiveshell import TerminalInteractiveShell

    from baseten_magic.notebook.execute import is_terminal

    assert is_terminal(TerminalInteractiveShell.__new__(TerminalInteractiveShell))
    assert not is_terminal(InteractiveShell.instance())


def test_terminal_flow_prints_plain_text(
    shell: Any, ledger_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shared test shell stands in for terminal IPython: the magic picks TerminalPrinter.
    monkeypatch.setattr("baseten_magic.notebook.execute.is_terminal", lambda shell: True)
    with capture_output() as captured:
        shell.run_cell_magic("baseten", "--reasoning-effort low", "/echo plain *text*")
    assert captured.outputs == []  # nothing displayed, everything printed
    out = captured.stdout
    assert "plain *text*" in out
    assert "Reasoning" in out
    assert "openai/gpt-oss-120b" in out.splitlines()[-1]
    assert "\x1b[" not in out  # no colour codes when not writing to a TTY
    assert shell.user_ns["_baseten"].status == "ok"


def test_terminal_flow_error(
    shell: Any, server: LocalServer, ledger_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("baseten_magic.notebook.execute.is_terminal", lambda shell: True)
    server.inject(Fault("cut", after_tokens=24))
    with capture_output() as captured, pytest.raises(UsageError):
        shell.run_cell_magic("baseten", "--reasoning-effort low", "/words 40")
    assert captured.outputs == []
    assert "error" in captured.stdout
    assert shell.user_ns["_baseten"].content in captured.stdout
    assert [r.status for r in ledger_rows(ledger_file)] == ["error"]


# -- tools and structured output through the magic ------------------------------------------


def test_tools_run_in_a_loop_from_a_cell(
    shell: Any, server: LocalServer, ledger_file: Path
) -> None:
    calls: list[str] = []

    def get_weather(city: str, unit: str = "celsius") -> dict[str, Any]:
        """Current weather for a city.

        Args:
            city: the city name.
            unit: celsius or fahrenheit.
        """
        calls.append(city)
        return {"city": city, "temperature": 21, "unit": unit}

    shell.user_ns["get_weather"] = get_weather
    try:
        before = server.request_count
        result, captured = run(
            shell, "-m kimi-k2 --no-memory --tools get_weather --run-tools", "Weather in Paris?"
        )
    finally:
        shell.user_ns.pop("get_weather", None)
    assert server.request_count - before == 2  # the call, then the answer to its result
    assert calls == ["Paris"]
    first, second = (r.body for r in server.requests[-2:])
    assert first is not None and second is not None
    assert first["tools"][0]["function"]["name"] == "get_weather"
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["tool_call_id"].startswith("functions.get_weather:")  # Kimi ids, verbatim
    assert result.finish_reason == "stop"
    assert "21" in result.content
    text = final_text(captured)
    assert "get_weather" in text  # the collapsible tool-call block
    rows = ledger_rows(ledger_file)
    assert [r.status for r in rows] == ["ok", "ok"]  # one row per request
    assert result.cost == sum(r.cost_usd for r in rows)


def test_schema_cell_parses_into_a_dataclass(shell: Any) -> None:
    import dataclasses

    @dataclasses.dataclass
    class Point:
        x: int
        y: int
        label: str

    shell.user_ns["Point"] = Point
    result, captured = run(shell, "-m gpt-oss --no-memory --schema Point -o answer", "a point")
    assert isinstance(result.parsed, Point)
    assert isinstance(result.parsed.x, int)
    assert "label" in final_text(captured)


# -- said once --------------------------------------------------------------------------------


def test_an_http_error_is_said_once_and_still_fails_the_cell(
    shell: Any, server: LocalServer, ledger_file: Path
) -> None:
    with capture_output() as captured, pytest.raises(UsageError) as info:
        shell.run_cell_magic("baseten", "-m acme/no-such-model", "hello")
    message = str(info.value)
    assert message.startswith("HTTP 404: Model 'acme/no-such-model' does not exist")
    # One list of models, without the retired ones, and no contradicting second sentence.
    assert message.count("openai/gpt-oss-120b") == 1
    assert "DeepSeek-V3-0324" not in message
    assert "unknown or retired" not in message
    shown = final_text(captured)
    assert "does not exist" not in shown  # the message is the error line's alone
    assert "⚠ error: the call failed; the reason is below" in shown
    assert shell.user_ns["_baseten"].error == message  # the result keeps the whole message
    assert [r.status for r in ledger_rows(ledger_file)] == ["error"]


def test_a_typod_option_or_subcommand_gets_a_hint(shell: Any, server: LocalServer) -> None:
    before = server.request_count
    with pytest.raises(UsageError, match=r"did you mean --temperature\?"):
        shell.run_cell_magic("baseten", "--temprature 0.5", "hi")
    assert server.request_count == before
    with pytest.raises(UsageError, match="did you mean 'help'"):
        shell.run_line_magic("baseten", "hlep")
