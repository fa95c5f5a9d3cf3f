"""Deterministic answers for the local server: what it "says", token by token.

Rule: pure functions of the request. The same request always yields the same answer, so demos,
teaching notebooks and tests are reproducible. Nothing here does I/O.

What the local server answers
-----------------------------
*Tokens.* A token is one word with the whitespace or punctuation that follows it
(``"Hello, "``, ``"world!\\n"``); joining the tokens gives the text back exactly. Streams carry
one token per chunk. Prompt tokens are counted the same way over every message (plus 4 per
message and 3 for the reply), and tool definitions count as their JSON text.

*Answer text* depends only on the request: the model, the messages, ``seed`` and ``temperature``
(rounded to 0.1), and the settings it names. The default answer is a labelled stand-in, never
a pretend model: it opens with "Local stand-in answer", echoes the question, says which model
with which settings would have answered on Baseten, and shows each Markdown feature once (a
short list, a small table with a text and a number column, a fenced code block, the inline
math ``$e^{i\\pi}+1=0$``), in about 130 tokens. Another seed or temperature gives another
wording. Reasoning is labelled the same way ("stand-in reasoning").

*Directives* in the last user message, for demos and tests:

- ``/echo TEXT`` (at the start of the message) answers exactly TEXT, newlines included.
- ``/words N`` answers exactly N tokens of Markdown prose, in paragraphs of 60 tokens.
- ``/bad-json`` makes a JSON-mode answer invalid JSON.
- ``/schema-mismatch`` makes a ``json_schema`` answer valid JSON that breaks the schema.

*Reasoning* comes first and follows the model's mode in the catalog: ``always`` (Kimi K2
Thinking, gpt-oss), ``default_on`` (DeepSeek V3.1; ``chat_template_args: {"enable_thinking":
false}`` turns it off), ``opt_in`` (GLM, Kimi K2.5: ``{"enable_thinking": true}``), ``none``.
``reasoning_effort`` low / medium / high gives 16 / 48 / 128 reasoning tokens (medium by default).

*Limits.* ``max_tokens`` counts reasoning, answer and tool-call tokens together; reaching it ends
with ``finish_reason: "length"``. Without ``max_tokens`` the answer is never cut. ``stop`` cuts the
answer before the first occurrence of any stop string (``finish_reason: "stop"``).

*Structured output.* ``response_format`` ``json_object`` answers a JSON object; ``json_schema``
answers a value generated to match the schema.

*Tools.* When tools are offered and ``tool_choice`` is not ``"none"``, round r is the number of
assistant tool-call messages since the last user message. With ``parallel_tool_calls`` (the
default) round 0 calls every tool at once; without it round r calls ``tools[r]`` until each tool
was called once. ``"required"`` forces calls every round; a named function is called in round 0
only. After the calls the answer quotes each tool result. Arguments follow each tool's JSON
schema, with string values taken from the capitalised words of the prompt. Kimi models use call
ids like ``functions.get_weather:0``; the others ``call_<hex>``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from baseten_magic.server.schema_sample import sample, violate

_TOKEN_RE = re.compile(r"\s*\S+\s*")
_WORDS_RE = re.compile(r"/words\s+(\d+)")
_CAPITAL_RE = re.compile(r"\b[A-Z][A-Za-z'\-]*[A-Za-z]\b")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


REASONING_EFFORT_TOKENS = {"low": 16, "medium": 48, "high": 128}
PARAGRAPH_TOKENS = 60

_VOCABULARY = _words(
    "data model notebook answer stream token cell kernel result table value function "
    "request response server client latency budget cost price cache prompt context "
    "window pattern example summary detail step method approach question idea signal "
    "metric chart batch sample estimate error margin trend baseline feature library "
    "output input test clear simple careful quick steady useful small large exact rough "
    "local remote typical usually often rarely first next then finally also still quite "
    "fairly mostly simply compute measure compare explain describe render parse check "
    "build verify improve"
)
_STOP_CAPITALS = frozenset(
    _words(
        "What How Why When Where Who Which Whose Please Can Could Would Should Will Is Are "
        "Was Were Do Does Did The A An I It This That These Those Tell Give Show And Or But "
        "In On At For Use Call Find Get Check Compare Let Make Hi Hello Hey Thanks If Also "
        "Then Describe Explain Summarize List Write Return Extract Generate Create Weather "
        "Reply Answer Now Next Yes No"
    )
)


def tokenize(text: str) -> list[str]:
    """Split text into tokens (a word plus its trailing whitespace); joining them gives `text`."""
    tokens = _TOKEN_RE.findall(text)
    if not tokens:
        return [text] if text else []
    return tokens


@dataclass(frozen=True)
class ToolCallPlan:
    """One tool call: its id, function name and the argument fragments (one token each)."""

    id: str
    name: str
    fragments: tuple[str, ...]

    @property
    def arguments(self) -> str:
        """The full arguments JSON string."""
        return "".join(self.fragments)

    @property
    def tokens(self) -> int:
        """Tokens this call costs: one for the name, one per argument fragment."""
        return 1 + len(self.fragments)


@dataclass(frozen=True)
class TokenLogprob:
    """Log probability of one answer token with its top alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ChoicePlan:
    """Everything one choice will say, in order: reasoning tokens, answer tokens, tool calls."""

    index: int
    reasoning: tuple[str, ...]
    content: tuple[str, ...]
    tool_calls: tuple[ToolCallPlan, ...]
    finish_reason: str
    logprobs: tuple[TokenLogprob, ...] | None = None

    @property
    def completion_tokens(self) -> int:
        """Tokens generated, reasoning included."""
        return len(self.reasoning) + len(self.content) + sum(c.tokens for c in self.tool_calls)


@dataclass(frozen=True)
class GenerationRequest:
    """The parts of a chat request that shape the answer."""

    model: str
    messages: Sequence[Mapping[str, Any]]
    reasoning_mode: str = "none"
    kimi_ids: bool = False
    seed: int | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    reasoning_effort: str | None = None
    enable_thinking: bool | None = None
    response_format: Mapping[str, Any] | None = None
    tools: Sequence[Mapping[str, Any]] = ()
    tool_choice: Any = None
    parallel_tool_calls: bool = True
    logprobs: bool = False
    top_logprobs: int = 0
    n: int = 1


def message_text(message: Mapping[str, Any]) -> str:
    """All the text one message carries (content parts, tool-call arguments, reasoning)."""
    pieces: list[str] = []
    content = message.get("content")
    if isinstance(content, str):
        pieces.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                pieces.append(part["text"])
    for key in ("reasoning_content", "reasoning", "name"):
        value = message.get(key)
        if isinstance(value, str):
            pieces.append(value)
    for call in message.get("tool_calls") or []:
        if isinstance(call, Mapping):
            function = call.get("function") or {}
            if isinstance(function, Mapping):
                pieces.append(str(function.get("name", "")))
                pieces.append(str(function.get("arguments", "")))
    return " ".join(pieces)


def message_token_counts(messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """Prompt tokens per message (4 of framing plus the text's tokens)."""
    return [4 + len(tokenize(message_text(m))) for m in messages]


def count_prompt_tokens(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()
) -> int:
    """Prompt tokens of a request: every message, the reply priming, and the tool definitions."""
    total = sum(message_token_counts(messages)) + 3
    if tools:
        total += len(tokenize(json.dumps(list(tools), sort_keys=True)))
    return total


def plan(request: GenerationRequest) -> list[ChoicePlan]:
    """Plan every choice of a request (`n` of them), limits applied."""
    return [_plan_choice(request, index) for index in range(max(1, request.n))]


# --- one choice --------------------------------------------------------------------------


def _rng(request: GenerationRequest, index: int, salt: str) -> random.Random:
    temperature = None if request.temperature is None else round(float(request.temperature), 1)
    material = json.dumps(
        [request.model, list(request.messages), request.seed, temperature, index, salt],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(material.encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _last_user_index(messages: Sequence[Mapping[str, Any]]) -> int:
    for position in range(len(messages) - 1, -1, -1):
        if messages[position].get("role") == "user":
            return position
    return -1


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    position = _last_user_index(messages)
    if position < 0:
        return ""
    content = messages[position].get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def _question(text: str) -> str:
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if line:
            return line if len(line) <= 80 else line[:77] + "..."
    return "your question"


def _capitals(text: str) -> list[str]:
    seen: dict[str, None] = {}
    for word in _CAPITAL_RE.findall(text):
        if word not in _STOP_CAPITALS:
            seen.setdefault(word, None)
    return list(seen)


def _thinking_on(request: GenerationRequest) -> bool:
    mode = request.reasoning_mode
    if mode == "always":
        return True
    if mode == "default_on":
        return request.enable_thinking is not False
    if mode == "opt_in":
        return request.enable_thinking is True
    return False


def _plan_choice(request: GenerationRequest, index: int) -> ChoicePlan:
    rng = _rng(request, index, "answer")
    user_text = _last_user_text(request.messages)
    question = _question(user_text)
    reasoning: list[str] = []
    if _thinking_on(request):
        effort = request.reasoning_effort or "medium"
        count = REASONING_EFFORT_TOKENS.get(effort, REASONING_EFFORT_TOKENS["medium"])
        reasoning = _reasoning_tokens(question, count, _rng(request, index, "reasoning"))
    calls = _tool_calls(request, index, user_text)
    content: list[str] = []
    if not calls:
        content = tokenize(_answer_text(request, user_text, question, rng))
    return _limit(request, index, reasoning, content, calls)


def _answer_text(
    request: GenerationRequest, user_text: str, question: str, rng: random.Random
) -> str:
    stripped = user_text.lstrip()
    if stripped.startswith("/echo ") or stripped == "/echo":
        return stripped[len("/echo ") :]
    if request.tools and _round(request.messages) > 0:
        return _tool_summary(request.messages, rng)
    kind = (request.response_format or {}).get("type")
    if kind == "json_object":
        return _json_answer(question, rng, broken="/bad-json" in user_text)
    if kind == "json_schema":
        return _schema_answer(request, user_text, mismatch="/schema-mismatch" in user_text)
    match = _WORDS_RE.search(user_text)
    if match:
        return "".join(_prose_tokens(int(match.group(1)), rng))
    return _markdown_answer(request, question, rng)


# --- text ------------------------------------------------------------------------------


def _prose_tokens(count: int, rng: random.Random) -> list[str]:
    """Exactly `count` tokens of prose: sentences, paragraphs of 60 tokens, no trailing blank."""
    tokens: list[str] = []
    choice = rng.choice
    vocabulary = _VOCABULARY
    capitalize = True
    for position in range(count):
        word = choice(vocabulary)
        if capitalize:
            word = word.capitalize()
            capitalize = False
        last = position == count - 1
        end_of_paragraph = (position + 1) % PARAGRAPH_TOKENS == 0
        if last:
            tokens.append(word + ".")
        elif end_of_paragraph:
            tokens.append(word + ".\n\n")
            capitalize = True
        elif rng.random() < 0.09:
            tokens.append(word + ". ")
            capitalize = True
        elif rng.random() < 0.05:
            tokens.append(word + ", ")
        else:
            tokens.append(word + " ")
    return tokens


def _settings(request: GenerationRequest) -> list[tuple[str, str]]:
    """The request's settings that shaped the answer, as (name, value) pairs."""
    pairs: list[tuple[str, str]] = []
    if request.temperature is not None:
        pairs.append(("temperature", f"{round(float(request.temperature), 1):g}"))
    if request.seed is not None:
        pairs.append(("seed", str(request.seed)))
    if request.max_tokens is not None:
        pairs.append(("max_tokens", str(request.max_tokens)))
    if request.stop:
        pairs.append(("stop", ", ".join(json.dumps(s) for s in request.stop)))
    if _thinking_on(request):
        effort = request.reasoning_effort
        pairs.append(("reasoning", f"on (effort {effort})" if effort else "on"))
    elif request.reasoning_mode != "none":
        pairs.append(("reasoning", "off"))
    return pairs


_OPENERS = (
    "What follows shows how an answer renders:",
    "Here is every Markdown feature an answer uses, once:",
    "A short tour of how answers look:",
)
_CLOSERS = (
    "Same request, same text: change the seed or the temperature for another wording.",
    "For a real answer, set `BASETEN_API_KEY` and leave `BASETEN_BASE_URL` unset.",
    "The text is fixed by the request, so notebooks and tests built on it are reproducible.",
)


def _markdown_answer(request: GenerationRequest, question: str, rng: random.Random) -> str:
    settings = _settings(request)
    said = ", ".join(f"{name} {value}" for name, value in settings)
    how = f"with {said}" if said else "with the model's default settings"
    words = len(question.split())
    code = json.dumps(question, ensure_ascii=False)
    return (
        "**Local stand-in answer.** The offline server wrote this; no model ran.\n\n"
        f'You asked: "{question}"\n\n'
        f"On Baseten, **{request.model}** would have answered this, {how}.\n\n"
        f"{rng.choice(_OPENERS)}\n\n"
        "- a short list, like this one\n"
        "- a table with a text column (left) and a number column (right)\n"
        "- a highlighted code block\n"
        "- inline math: $e^{i\\pi}+1=0$\n\n"
        "| measure of the question | value |\n"
        "|---|---:|\n"
        f"| words | {words} |\n"
        f"| characters | {len(question)} |\n"
        f"| prompt tokens (as counted here) | {count_prompt_tokens(request.messages)} |\n\n"
        "```python\n"
        f"question = {code}\n"
        'print(len(question.split()), "words")  # stand-in code\n'
        "```\n\n"
        f"{rng.choice(_CLOSERS)}"
    )


def _reasoning_tokens(question: str, count: int, rng: random.Random) -> list[str]:
    tokens = tokenize(
        f'(Stand-in reasoning, no model ran.) Question: "{question}". The local server fills '
        "this block so you can see where reasoning appears and how it folds away. "
    )
    steps = (
        "restate the question",
        "list what is known",
        "pick an approach",
        "check the answer",
        "keep it short",
    )
    step = rng.randrange(len(steps))
    number = 1
    while len(tokens) < count:
        tokens.extend(tokenize(f"Step {number}: {steps[step % len(steps)]}. "))
        step += 1
        number += 1
    tokens = tokens[:count]
    tokens[-1] = tokens[-1].rstrip()
    return tokens


def _json_answer(question: str, rng: random.Random, *, broken: bool) -> str:
    value = {
        "question": question,
        "answer": "A stand-in JSON answer from the local server; no model ran.",
        "confidence": round(0.5 + rng.random() / 2, 2),
        "tags": ["stand-in", rng.choice(("offline", "local", "demo"))],
    }
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if broken:
        # A trailing comma and no closing brace: what a truncated or sloppy model emits.
        text = text[: text.rfind("\n")] + ",\n"
    return text


def _schema_of(response_format: Mapping[str, Any]) -> Any:
    spec = response_format.get("json_schema")
    if isinstance(spec, Mapping):
        schema = spec.get("schema")
        return schema if schema is not None else {}
    return {}


def _schema_answer(request: GenerationRequest, user_text: str, *, mismatch: bool) -> str:
    schema = _schema_of(request.response_format or {})
    value = sample(schema, _capitals(user_text))
    if mismatch:
        value = violate(schema, value)
    return json.dumps(value, indent=2, ensure_ascii=False)


# --- tools -----------------------------------------------------------------------------


def _round(messages: Sequence[Mapping[str, Any]]) -> int:
    start = _last_user_index(messages) + 1
    return sum(1 for m in messages[start:] if m.get("role") == "assistant" and m.get("tool_calls"))


def _function(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    function = tool.get("function")
    return function if isinstance(function, Mapping) else {}


def _tools_to_call(request: GenerationRequest) -> list[Mapping[str, Any]]:
    tools = list(request.tools)
    choice = request.tool_choice
    if not tools or choice == "none":
        return []
    current = _round(request.messages)
    if isinstance(choice, Mapping):
        wanted = (choice.get("function") or {}).get("name")
        if current > 0:
            return []
        return [t for t in tools if _function(t).get("name") == wanted][:1]
    required = choice == "required"
    if request.parallel_tool_calls:
        return tools if current == 0 or required else []
    if current < len(tools):
        return [tools[current]]
    return [tools[current % len(tools)]] if required else []


def _tool_calls(request: GenerationRequest, index: int, user_text: str) -> list[ToolCallPlan]:
    chosen = _tools_to_call(request)
    if not chosen:
        return []
    words = _capitals(user_text)
    earlier = sum(
        len(m.get("tool_calls") or []) for m in request.messages if m.get("role") == "assistant"
    )
    rng = _rng(request, index, "tools")
    calls: list[ToolCallPlan] = []
    for position, tool in enumerate(chosen):
        function = _function(tool)
        name = str(function.get("name", "tool"))
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        # Rotate the words so parallel calls about "Paris and Tokyo" get one city each.
        rotated = words[position % len(words) :] + words[: position % len(words)] if words else []
        arguments = json.dumps(sample(parameters, rotated), ensure_ascii=False)
        if request.kimi_ids:
            call_id = f"functions.{name}:{earlier + position}"
        else:
            call_id = f"call_{rng.getrandbits(96):024x}"
        calls.append(ToolCallPlan(call_id, name, tuple(tokenize(arguments))))
    return calls


def _tool_summary(messages: Sequence[Mapping[str, Any]], rng: random.Random) -> str:
    start = _last_user_index(messages) + 1
    names: dict[str, str] = {}
    for message in messages[start:]:
        for call in message.get("tool_calls") or []:
            if isinstance(call, Mapping):
                names[str(call.get("id"))] = str((call.get("function") or {}).get("name", "tool"))
    lines = ["Here is what the tools returned:", ""]
    for message in messages[start:]:
        if message.get("role") != "tool":
            continue
        name = names.get(str(message.get("tool_call_id")), str(message.get("name") or "tool"))
        result = message_text({"content": message.get("content")})
        lines.append(f"- **{name}**: {' '.join(result.split())}")
    lines.extend(["", rng.choice(_TOOL_CLOSERS)])
    return "\n".join(lines)


_TOOL_CLOSERS = (
    "(A stand-in summary from the local server: it quotes the results; a model would use them.)",
    "(The local server only quotes tool results; a real model would reason about them.)",
)


# --- limits and logprobs -----------------------------------------------------------------


def _cut_at_stop(tokens: list[str], stops: Sequence[str]) -> tuple[list[str], bool]:
    stops = [s for s in stops if s]
    if not stops or not tokens:
        return tokens, False
    text = "".join(tokens)
    positions = [p for p in (text.find(s) for s in stops) if p >= 0]
    if not positions:
        return tokens, False
    cut = min(positions)
    kept: list[str] = []
    length = 0
    for token in tokens:
        if length + len(token) <= cut:
            kept.append(token)
            length += len(token)
            continue
        if cut > length:
            kept.append(token[: cut - length])
        break
    return kept, True


def _limit(
    request: GenerationRequest,
    index: int,
    reasoning: list[str],
    content: list[str],
    calls: list[ToolCallPlan],
) -> ChoicePlan:
    content, _ = _cut_at_stop(content, request.stop)
    finish = "tool_calls" if calls else "stop"
    budget = request.max_tokens
    if budget is not None:
        wanted = len(reasoning) + len(content) + sum(c.tokens for c in calls)
        if wanted > budget:
            finish = "length"
            reasoning = reasoning[:budget]
            budget -= len(reasoning)
            content = content[:budget]
            budget -= len(content)
            kept: list[ToolCallPlan] = []
            for call in calls:
                if budget <= 0:
                    break
                kept.append(ToolCallPlan(call.id, call.name, call.fragments[: budget - 1]))
                budget -= call.tokens
            calls = kept
    logprobs = (
        _logprobs(content, request.top_logprobs, _rng(request, index, "logprobs"))
        if request.logprobs
        else None
    )
    return ChoicePlan(
        index=index,
        reasoning=tuple(reasoning),
        content=tuple(content),
        tool_calls=tuple(calls),
        finish_reason=finish,
        logprobs=logprobs,
    )


def _logprobs(tokens: Sequence[str], top: int, rng: random.Random) -> tuple[TokenLogprob, ...]:
    result: list[TokenLogprob] = []
    for token in tokens:
        chosen = -round(rng.random() * 1.5 + 0.001, 4)
        alternatives: list[tuple[str, float]] = [(token, chosen)] if top else []
        floor = chosen
        while len(alternatives) < top:
            floor = round(floor - rng.random() * 2 - 0.01, 4)
            alternatives.append((rng.choice(_VOCABULARY) + " ", floor))
        result.append(TokenLogprob(token, chosen, tuple(alternatives)))
    return tuple(result)
