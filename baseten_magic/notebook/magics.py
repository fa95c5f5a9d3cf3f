"""`%%baseten` and `%baseten`: the magics class, its settings, and loading the extension.

Rule: a thin adapter. The `BasetenMagics` traits are the session's settings (so `%config
BasetenMagics.model = "glm"`, `ipython_config.py` and the widget panel share them); everything
else a session shares lives on its one `engine.session.Session`, never in module globals or on
this class. A cell is parsed (`options`), planned without I/O (`plan`), then run (`execute`); a
line is a subcommand (`subcommands`). Any problem the user can fix is one `UsageError` line,
raised before a request is sent.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from IPython.core import magic as _magic
from IPython.core.magic import Magics, magics_class
from traitlets import Bool, Dict, Float, Int, TraitError, Unicode, default, validate

from baseten_magic.core import settings as environment
from baseten_magic.core.errors import BasetenError, ParameterError
from baseten_magic.core.params import validate_params
from baseten_magic.core.pricing import PRICING_ENV, pricing_mode
from baseten_magic.engine.session import NAMED_PARAMS, Session
from baseten_magic.notebook.options import cell_options, option_rows, parse_options, usage_error
from baseten_magic.notebook.plan import plan_cell
from baseten_magic.notebook.subcommands import LocalSwitch, Subcommands
from baseten_magic.render.result import register_result_display

if TYPE_CHECKING:
    from IPython.core.interactiveshell import ExecutionInfo, InteractiveShell

__all__ = ["BasetenMagics", "load_ipython_extension", "unload_ipython_extension"]

MODEL_ENV = "BASETEN_MAGIC_MODEL"
DEFAULT_MODEL_ALIAS = "gpt-oss"
_RESERVED = ("model", "messages", "stream")

# IPython's decorator is untyped; this alias gives it the type it has.
line_cell_magic: Callable[[Callable[..., Any]], Callable[..., Any]] = _magic.line_cell_magic


@magics_class
class BasetenMagics(Magics):
    """`%%baseten` / `%baseten`: Baseten's Chat Completions in a notebook."""

    model = Unicode(help="Model slug or alias (gpt-oss, glm, kimi, deepseek, ...).").tag(
        config=True
    )
    system = Unicode("", help="System prompt sent first with every cell.").tag(config=True)
    temperature = Float(None, allow_none=True, help="Sampling temperature (0–4).").tag(config=True)
    top_p = Float(None, allow_none=True, help="Nucleus sampling (0–1].").tag(config=True)
    max_tokens = Int(None, allow_none=True, help="Answer length limit, reasoning included.").tag(
        config=True
    )
    reasoning_effort = Unicode(None, allow_none=True, help="low, medium or high.").tag(config=True)
    thinking = Bool(None, allow_none=True, help="Switch reasoning on/off where a model can.").tag(
        config=True
    )
    params = Dict(help="Any other request parameters, e.g. {'top_k': 40}.").tag(config=True)
    pricing_mode = Unicode(help="per_token (list prices) or per_call (flat fee).").tag(config=True)
    memory = Bool(True, help="Cells see earlier cells' exchanges (the conversation).").tag(
        config=True
    )
    stream = Bool(True, help="Stream answers as they arrive.").tag(config=True)
    show_reasoning = Bool(True, help="Show the model's reasoning above the answer.").tag(
        config=True
    )
    budget_usd = Float(
        None,
        allow_none=True,
        help="Spend cap in dollars for this session (None: BASETEN_MAGIC_BUDGET, else no cap).",
    ).tag(config=True)
    # 90 ms leaves room for scheduling within the 100 ms a token may wait to be shown.
    paint_interval = Float(0.09, help="Seconds between repaints while streaming.").tag(config=True)
    # Where calls go and how long they may wait; both read when a call starts.
    route = Unicode(
        help="baseten (Baseten's API, BASETEN_API_KEY) or xpay (the reseller's $0.01 MCP tool, "
        "XPAY_KEY); default BASETEN_MAGIC_ROUTE, else baseten."
    ).tag(config=True)
    timeout = Float(
        None,
        allow_none=True,
        help="Longest wait in seconds for the next piece of an answer; None or 0: "
        "BASETEN_MAGIC_TIMEOUT, else 120.",
    ).tag(config=True)

    # The response cache (shared with map()); a cell's --cache / --no-cache overrides it.
    cache = Bool(
        False,
        help="Answer a cell from the response cache (BASETEN_MAGIC_CACHE) when the same "
        "request was answered before: nothing sent, $0.",
    ).tag(config=True)

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        # Plain state first: config loading (in super().__init__) validates traits against the
        # session's catalog and may already call __repr__.
        self.session = Session(self)
        self.local = LocalSwitch()
        self._last_run: tuple[str, str] | None = None  # (cell id, raw cell) from pre_run_cell
        super().__init__(shell=shell, **kwargs)

    def __repr__(self) -> str:
        return (
            f"BasetenMagics(model={self.model!r}, session={self.session.id[:8]!r}, "
            f"exchanges={len(self.session.conversation)}, calls={len(self.session.history)})"
        )

    # -- trait defaults and validation -------------------------------------------------------

    @default("model")
    def _default_model(self) -> str:
        return os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL_ALIAS

    @default("pricing_mode")
    def _default_pricing_mode(self) -> str:
        return pricing_mode(os.environ.get(PRICING_ENV, "")) or "per_token"

    @default("route")
    def _default_route(self) -> str:
        # An unknown value is left to the call, which names BASETEN_MAGIC_ROUTE in one line.
        raw = os.environ.get(environment.ROUTE_ENV, "").strip().lower()
        return raw if raw in environment.ROUTES else ""

    @validate("route")
    def _check_route(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"]).strip().lower()
        if value and value not in environment.ROUTES:
            raise TraitError(
                f"route must be baseten or xpay, got {environment.redact(value)!r}; pass e.g. "
                '%config BasetenMagics.route = "xpay"'
            )
        return value

    @validate("timeout")
    def _check_timeout(self, proposal: Mapping[str, Any]) -> float | None:
        value = proposal["value"]
        if value is None:
            return None
        seconds = float(value)
        if not 0 <= seconds < float("inf"):  # also NaN
            raise TraitError(
                f"timeout must be a positive number of seconds (0 or None: BASETEN_MAGIC_TIMEOUT), "
                f"got {value!r}; pass e.g. %config BasetenMagics.timeout = 300"
            )
        return seconds

    @validate("model")
    def _check_model(self, proposal: Mapping[str, Any]) -> str:
        value = str(proposal["value"]).strip()
        try:
            self.session.catalog.resolve(value)
        except ParameterError as exc:
            raise TraitError(str(exc)) from None
        return value

    @validate(*NAMED_PARAMS)
    def _check_named_param(self, proposal: Mapping[str, Any]) -> Any:
        name, value = proposal["trait"].name, proposal["value"]
        if value is None:
            return None
        try:
            return validate_params({name: value})[name]
        except ParameterError as exc:
            raise TraitError(str(exc)) from None

    @validate("params")
    def _check_params(self, proposal: Mapping[str, Any]) -> dict[str, Any]:
        value = dict(proposal["value"])
        for name in _RESERVED:
            if name in value:
                raise TraitError(
                    f"BasetenMagics.params cannot hold {name!r}, got it; set it through its "
                    "own setting (model, the cell body, stream)"
                )
        try:
            return validate_params(value)
        except ParameterError as exc:
            raise TraitError(str(exc)) from None

    @validate("pricing_mode")
    def _check_pricing_mode(self, proposal: Mapping[str, Any]) -> str:
        value = pricing_mode(proposal["value"])
        if value is None:
            raise TraitError(
                f"pricing_mode must be per_token or per_call, got {proposal['value']!r}; "
                'pass e.g. %config BasetenMagics.pricing_mode = "per_call"'
            )
        return value

    @validate("budget_usd")
    def _check_budget(self, proposal: Mapping[str, Any]) -> float | None:
        value = proposal["value"]
        if value is not None and not float(value) >= 0:  # also NaN
            raise TraitError(
                f"budget_usd must be a number of dollars of 0 or more, got {value!r}; pass e.g. "
                "%config BasetenMagics.budget_usd = 5 (or None for no cap)"
            )
        return value if value is None else float(value)

    @validate("paint_interval")
    def _check_paint_interval(self, proposal: Mapping[str, Any]) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 10:
            raise TraitError(
                f"paint_interval must be from 0 to 10 seconds, got {value}; pass e.g. 0.1"
            )
        return value

    def close(self) -> None:
        """Release the client; stop a `%baseten local` server and restore the variables it set."""
        self.session.close()
        self.local.close()

    def _pre_run_cell(self, info: ExecutionInfo) -> None:
        # The front end's cell id identifies a cell across edits (see conversation.py).
        cell_id = getattr(info, "cell_id", None)
        self._last_run = (str(cell_id), str(info.raw_cell)) if cell_id else None

    def _cell_id(self, cell: str) -> str | None:
        # Only trust the id when it belongs to the cell being run (the magic may be called
        # directly, without pre_run_cell).
        if self._last_run is not None and cell.strip() in self._last_run[1]:
            return self._last_run[0]
        shell = self.shell
        get_parent = getattr(shell, "get_parent", None)
        if callable(get_parent):
            try:
                metadata = get_parent().get("metadata") or {}
            except Exception:
                return None
            cell_id = metadata.get("cellId")
            return str(cell_id) if cell_id else None
        return None

    # -- the magic ---------------------------------------------------------------------------

    @cell_options
    @line_cell_magic
    def baseten(self, line: str, cell: str | None = None) -> None:
        """Ask a Baseten model: the cell body is the prompt, the answer streams below.

        As a line magic: %baseten cost | models [--refresh] | reset | help [options|params] |
        panel | local [--tps N] | config.
        """
        if cell is None:
            Subcommands(self.session, self.local, self._options_help).run(line)
        else:
            self._cell(line, cell)

    @staticmethod
    def _options_help() -> list[tuple[str, str]]:
        return option_rows(BasetenMagics.baseten)

    def _cell(self, line: str, cell: str) -> None:
        from baseten_magic.notebook.execute import run_cell

        options = parse_options(BasetenMagics.baseten, line)
        shell: Any = self.shell
        namespace = shell.user_ns if shell is not None else None
        if options.over is not None:
            self._over_cell(options, cell, shell, namespace)
            return
        from baseten_magic.notebook.over import refuse_batch_options

        refuse_batch_options(options)
        try:
            plan = plan_cell(
                options,
                line,
                cell,
                session=self.session,
                namespace=namespace if namespace is not None else {},
                cell_id=self._cell_id(cell),
            )
            # Fail here, not inside the call, so a missing key or bad URL sends nothing.
            if plan.route == "xpay":
                environment.xpay_key()
                environment.xpay_url()
            else:
                environment.api_key()
                environment.base_url()
        except BasetenError as exc:  # ParameterError, ConfigurationError: nothing was sent
            raise usage_error(exc) from None
        self.session.last_prompt = cell
        self.session.last_request = plan.request  # the panel's "Re-run last cell" sends it
        count = _shown_count(shell)
        run_cell(
            plan,
            session=self.session,
            shell=shell,
            namespace=namespace,
            cell=count if isinstance(count, int) else None,
        )

    def _over_cell(
        self, options: Any, cell: str, shell: Any, namespace: dict[str, Any] | None
    ) -> None:
        """`%%baseten --over NAME`: the cell as a prompt over each row (`notebook/over.py`)."""
        from baseten_magic.notebook.over import plan_over, run_over

        count = _shown_count(shell)
        try:
            plan = plan_over(
                options,
                cell,
                session=self.session,
                namespace=namespace if namespace is not None else {},
                cell_number=count if isinstance(count, int) else None,
            )
        except BasetenError as exc:  # ParameterError, ConfigurationError: nothing was sent
            raise usage_error(exc) from None
        run_over(plan, shell=shell, namespace=namespace)


def _shown_count(shell: Any) -> int | None:
    """The running cell's number as the front end shows it (`In [n]`), or None.

    `shell.execution_count` is already n+1 while a cell runs (IPython 9 counts up before it
    runs the cell; IPython 8 did after). The display hook's `prompt_count` is the number IPython
    itself puts on `Out[n]`, right under either rule.
    """
    count = getattr(getattr(shell, "displayhook", None), "prompt_count", None)
    if not isinstance(count, int):
        count = getattr(shell, "execution_count", None)
    return count if isinstance(count, int) else None


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register the magics on this shell; loading twice keeps the existing instance."""
    shell: Any = ipython
    if isinstance(shell.magics_manager.registry.get(BasetenMagics.__name__), BasetenMagics):
        return
    try:
        magics = BasetenMagics(shell=ipython)  # Magics adds itself to shell.configurables
    except TraitError as exc:
        # A bad value in the shell's config must not make the magics unusable: say which, and
        # start from the defaults.
        shell.configurables[:] = [c for c in shell.configurables if type(c) is not BasetenMagics]
        warnings.warn(
            f"baseten_magic: ignoring the BasetenMagics configuration ({exc}); fix it with "
            "%config BasetenMagics.<name> = <value>",
            stacklevel=2,
        )
        magics = BasetenMagics(shell=ipython, parent=None)
    shell.register_magics(magics)
    shell.events.register("pre_run_cell", magics._pre_run_cell)
    register_result_display(shell)  # `ans` (after `-o ans`) shows as its cell did


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Unregister the magics and release this shell's client and local server."""
    shell: Any = ipython
    manager = shell.magics_manager
    magics = manager.registry.pop(BasetenMagics.__name__, None)
    if not isinstance(magics, BasetenMagics):
        return
    for kind in ("line", "cell"):
        manager.magics[kind].pop("baseten", None)
    if magics in shell.configurables:
        shell.configurables.remove(magics)
    with contextlib.suppress(ValueError):
        shell.events.unregister("pre_run_cell", magics._pre_run_cell)
    magics.close()
