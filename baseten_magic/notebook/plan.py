"""Planning a `%%baseten` cell: parsed options, settings and the notebook → one `CellPlan`.

Rule: no I/O and no state changes. Everything a cell will do (messages, parameters, tools,
schema, pricing, where its answer goes) is decided and checked here, so any problem is a
`ParameterError` before anything is sent. The precedence is fixed: settings, then `--param`s,
then the named options; the cell's own `@system` over `--system` over the `system` setting.
"""

from __future__ import annotations

import difflib
import keyword
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from baseten_magic.core.errors import ParameterError
from baseten_magic.core.params import parse_assignment
from baseten_magic.core.pricing import Pricing, PricingMode, pricing_mode
from baseten_magic.core.settings import ROUTES, Route
from baseten_magic.engine.call import PreparedRequest, prepare_request
from baseten_magic.engine.conversation import cell_key
from baseten_magic.engine.session import NAMED_PARAMS, Session
from baseten_magic.notebook.cells import ParsedCell, parse_cell
from baseten_magic.notebook.interpolate import interpolate

__all__ = ["CellPlan", "plan_cell"]


@dataclass(frozen=True)
class CellPlan:
    """Everything one `%%baseten` cell will do, decided before anything is sent."""

    request: PreparedRequest
    cell: ParsedCell
    key: str
    memory: bool
    pricing: Pricing
    out: str | None
    tools: tuple[Callable[..., Any], ...]
    run_tools: bool
    json_mode: bool
    schema: object | None
    earlier_turns: int = 0  # earlier cells' exchanges sent along (the footer says "+N")
    route: Route = "baseten"
    # Answer from the response cache when it holds this request (`--cache`, else the `cache`
    # setting); never for a tool loop, whose tools run here and may act on the world.
    cache: bool = False


def plan_cell(
    options: Any,
    line: str,
    cell: str,
    *,
    session: Session,
    namespace: Mapping[str, Any],
    cell_id: str | None = None,
) -> CellPlan:
    """The plan for a cell with these parsed `options`; raises ParameterError, sends nothing."""
    settings = session.settings
    out = options.out
    if out is not None and (not out.isidentifier() or keyword.iskeyword(out)):
        raise ParameterError(f"-o expects a Python variable name, got {out!r}; pass e.g. -o answer")
    text = interpolate(cell, namespace) if options.interpolate else cell
    parsed = parse_cell(text)
    memory = settings.memory and not options.no_memory
    key = cell_key(cell_id, line, cell)
    default_system = options.system if options.system is not None else settings.system
    if memory:
        system = parsed.system_prompt(default_system)
        messages = session.conversation.messages_for(key, parsed.messages, system)
        earlier_turns = session.conversation.earlier_count(key)
    else:
        earlier_turns = 0
        messages = parsed.request_messages(default_system)

    params = _cell_params(options, session.defaults())
    tools = _tools(options, namespace, params)
    schema = _schema(options, namespace)
    if options.json or schema is not None:
        from baseten_magic.core.structured import response_format_for

        response_format = response_format_for(bool(options.json), schema)
        if response_format is not None:
            params["response_format"] = response_format

    pricing = Pricing(mode=_pricing_mode(options.pricing, settings.pricing_mode))
    request = prepare_request(
        messages,
        model=options.model if options.model is not None else settings.model,
        stream=settings.stream and not options.no_stream,
        thinking=options.thinking if options.thinking is not None else settings.thinking,
        params=params,
        catalog=session.catalog,
    )
    return CellPlan(
        request=request,
        cell=parsed,
        key=key,
        memory=memory,
        pricing=pricing,
        out=out,
        tools=tuple(tools),
        run_tools=bool(options.run_tools),
        json_mode=bool(options.json),
        schema=schema,
        earlier_turns=earlier_turns,
        route=_route(getattr(options, "route", None), session),
        cache=_cache(options, session),
    )


def _cache(options: Any, session: Session) -> bool:
    """`--cache` / `--no-cache`, else the `cache` setting; off for `--run-tools` cells."""
    wanted = getattr(options, "cache", None)
    on = session.cache_enabled if wanted is None else bool(wanted)
    return on and not options.run_tools


def _as_value(raw: str) -> Any:
    """An option's text as JSON when it parses (`0.7`, `null`), else the string itself."""
    return parse_assignment(f"x={raw}")[1]


def _cell_params(options: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """Settings, then `--param`s, then the named options: later ones win."""
    params = dict(defaults)
    for assignment in options.param:
        name, value = parse_assignment(assignment)
        params[name] = value
    for name in NAMED_PARAMS:
        raw = getattr(options, name)
        if raw is not None:
            params[name] = _as_value(raw) if name != "reasoning_effort" else raw
    return params


def _pricing_mode(raw: str | None, setting: str) -> PricingMode:
    mode = pricing_mode(setting if raw is None else raw)
    if mode is None:
        raise ParameterError(
            f"--pricing must be per_token or per_call, got {raw!r}; pass e.g. --pricing per_call"
        )
    return mode


def _route(raw: str | None, session: Session) -> Route:
    """`--route`, else the session's (the setting, else BASETEN_MAGIC_ROUTE)."""
    if raw is None:
        return session.route()
    for known in ROUTES:
        if raw.strip().lower() == known:
            return known
    raise ParameterError(
        f"--route must be baseten or xpay, got {raw!r}; pass e.g. --route xpay (the reseller's "
        "MCP tool, with XPAY_KEY)"
    )


def _tools(
    options: Any, namespace: Mapping[str, Any], params: dict[str, Any]
) -> list[Callable[..., Any]]:
    if not options.tools:
        if options.run_tools:
            raise ParameterError(
                "--run-tools needs --tools NAME[,NAME...], got no tools; "
                "name the functions to offer, e.g. --tools get_weather --run-tools"
            )
        return []
    from baseten_magic.core.tools import resolve_tools, tool_specs

    names = [name.strip() for name in options.tools.split(",") if name.strip()]
    fns = resolve_tools(names, namespace)
    params["tools"] = tool_specs(fns)
    return fns


def _schema(options: Any, namespace: Mapping[str, Any]) -> object | None:
    if options.schema is None:
        return None
    name = options.schema.strip()
    if name not in namespace:
        close = difflib.get_close_matches(name, [str(k) for k in namespace], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ParameterError(
            f"--schema names {name!r}, which is not defined in the notebook; {hint}"
            "define the dataclass, TypedDict, pydantic model or JSON schema first"
        )
    schema: object = namespace[name]
    return schema
