"""Write examples/quickstart.ipynb from the cells below (run: python examples/build_quickstart.py).

Keeping the notebook as code makes its review and its diffs readable; the .ipynb is committed
without outputs, and `python -m baseten_magic.demo` executes it into examples/out/.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS: list[tuple[str, str] | tuple[str, str, list[str]]] = [
    (
        "md",
        "# baseten_magic quickstart\n\n"
        "Baseten's Chat Completions API, native to the notebook: a streaming `%%baseten` cell "
        "magic, a widget panel and a cost ledger.\n\n"
        "This notebook runs **offline**: with no `BASETEN_API_KEY` set, `%baseten local` starts "
        "the bundled Baseten-compatible server in the kernel and points the magic at it. Its "
        "answers are deterministic stand-ins, but the wire format, streaming, reasoning, "
        "usage and errors are the real thing. Set `BASETEN_API_KEY` to talk to Baseten.",
    ),
    (
        "code",
        "%load_ext baseten_magic\n"
        "import os\n"
        "if not os.environ.get('BASETEN_API_KEY'):\n"
        "    %baseten local --tps 400",
    ),
    (
        "md",
        "## A budget first\n\nA spend cap for this session: cells, the panel and `chat()` in "
        "this kernel all count against it. Before a call is sent its worst case is checked "
        "(the prompt, plus `--max-tokens` or what the model's context allows, at list prices); "
        "a call that could cross the cap is refused and nothing is sent. The env variable "
        "`BASETEN_MAGIC_BUDGET` sets it too. A default answer length keeps each call's worst "
        "case small (without one, it is the model's whole context).",
    ),
    ("code", "%config BasetenMagics.budget_usd = 0.25\n%config BasetenMagics.max_tokens = 2048"),
    (
        "md",
        "## Ask a question\n\nThe answer streams in as Markdown. Reasoning models show their "
        "chain of thought in a collapsible block above the answer; the footer gives tokens, "
        "cost, time to first token and speed.",
    ),
    ("code", "%%baseten\nWhat is a Server-Sent Events stream, and why do chat APIs use it?"),
    (
        "md",
        "## Options\n\n`-m` picks a model by slug or alias (`gpt-oss`, `deepseek`, `glm`, "
        "`kimi`, ...), the sampling options are flags, any of the 44 request parameters goes "
        "through `--param NAME=VALUE`, and `-o` keeps the result object.",
    ),
    (
        "code",
        "%%baseten -m kimi-k2 --temperature 0.3 --max-tokens 120 --param top_k=40 -o answer\n"
        "Give three tips for reading a stack trace.",
    ),
    (
        "code",
        "print(answer.model, answer.finish_reason)\n"
        "print(dict(answer.usage), f'${answer.cost_usd:.6f}')\n"
        "answer.content[:120]",
    ),
    ("md", "The result object shows itself as its cell did:"),
    ("code", "answer"),
    (
        "md",
        "## Several turns in one cell\n\nA line that is exactly `@system`, `@user` or "
        "`@assistant` starts a new message.",
    ),
    (
        "code",
        "%%baseten -m deepseek\n"
        "@system\nYou answer in one short paragraph.\n"
        "@user\nName a sorting algorithm.\n"
        "@assistant\nMerge sort.\n"
        "@user\nWhy is it stable?",
    ),
    (
        "md",
        "## Conversation memory\n\nCells remember the conversation so far. Re-running a cell "
        "replaces its earlier exchange instead of adding a duplicate; `%baseten reset` starts "
        "over.",
    ),
    ("code", "%%baseten -m deepseek\nAnd what is its worst-case running time?"),
    (
        "md",
        "## Variables from the notebook\n\nWith `-i`, `{{name}}` is replaced by a compact "
        "summary of that variable. Nothing else in the cell is touched: braces, JSON and code "
        "stay as written.",
    ),
    (
        "code",
        "scores = {'alice': [9, 7, 10], 'bob': [6, 8, 7]}\nthreshold = 8",
    ),
    (
        "code",
        "%%baseten -i --no-memory\n"
        "Here are exam scores: {{scores}}. Who averages at least {{threshold}}?\n"
        'Answer as JSON like {"names": [...]}.',
    ),
    (
        "md",
        "## Thinking on demand\n\nSome models reason only when asked: `--thinking` sets "
        "`chat_template_args.enable_thinking`; `--reasoning-effort` tunes gpt-oss.",
    ),
    ("code", "%%baseten -m glm --thinking --no-memory\nIs 1001 a prime number?"),
    (
        "code",
        "%%baseten -m gpt-oss --reasoning-effort high --no-memory\n"
        "Plan a three-step experiment to compare two learning rates.",
    ),
    (
        "md",
        "## Pay once: the response cache\n\n`--cache` answers a request that was answered "
        "before from the response cache (the file at `BASETEN_MAGIC_CACHE`, shared with "
        "`baseten_magic.map()`): nothing is sent, it costs $0, the budget is untouched, and "
        "the footer says `cached` with what it saved. The key is the whole request (model, "
        "messages, parameters), so with conversation memory a cell hits only when the "
        "conversation is the same too; these two cells use `--no-memory`. "
        "`%config BasetenMagics.cache = True` turns it on for every cell; `--no-cache` sends "
        "anyway.",
    ),
    (
        "code",
        "%%baseten --cache --no-memory -m glm -o fresh\n"
        "In one sentence: what does a response cache save?",
    ),
    (
        "md",
        "The same request from another cell (or from this one, run again): answered from "
        "the cache, with nothing sent.",
    ),
    (
        "code",
        "%%baseten --cache --no-memory -m glm -o again\n"
        "In one sentence: what does a response cache save?",
    ),
    ("code", "print(again.cached, again.cost_usd, again.content == fresh.content)"),
    (
        "md",
        "## Mistakes are caught before anything is sent\n\nA bad option or value is one line "
        "that says what to do (this cell is expected to fail).",
    ),
    ("code", "%%baseten --temperature 9\nThis is never sent.", ["raises-exception"]),
    (
        "md",
        "So is a call the budget cannot cover: up to 200,000 tokens of Kimi's output could "
        "cost $0.60, more than the $0.25 cap (this cell is expected to fail, and sends nothing).",
    ),
    (
        "code",
        "%%baseten -m kimi --max-tokens 200000 --no-memory\nWrite me a novel.",
        ["raises-exception"],
    ),
    (
        "md",
        "## What did it cost?\n\nEvery call, including errors and interrupts, is a row in "
        "the ledger (SQLite, at `BASETEN_MAGIC_LEDGER`).",
    ),
    ("code", "%baseten cost"),
    ("code", "%baseten cost --by model"),
    (
        "md",
        "The chart: spend per cell stacked by model, the running total above it, the budget "
        "as a dashed line (`--by day` sums per day). It is a PNG, so it stays in the saved "
        "notebook.",
    ),
    ("code", "%baseten cost --plot"),
    ("code", "%baseten models"),
    (
        "md",
        "## The conversation\n\n`%baseten history` shows what the next cell will send before "
        "its own messages, with the cell each message came from; the footer of a cell says "
        "how many earlier turns it sent along. `--markdown FILE` / `--json FILE` export it, "
        "`baseten_magic.history()` gives the messages as a list.",
    ),
    ("code", "%baseten history"),
    (
        "md",
        "## From plain Python\n\n`baseten_magic.chat()` blocks; `achat()` is its awaitable "
        "twin for async code (top-level `await` works in notebooks).",
    ),
    (
        "code",
        "import baseten_magic\n"
        "r = baseten_magic.chat('Say hello in French.', model='gpt-oss', max_tokens=64)\n"
        "print(r.content[:80])\n"
        "r2 = await baseten_magic.achat('Say hello in German.', model='kimi-k2', max_tokens=64)\n"
        "print(r2.content[:80], r2.usage['completion_tokens'])",
    ),
    (
        "code",
        "rows = baseten_magic.ledger()\n"
        "[(row.cell, row.model, row.status, str(row.cost_usd)) for row in rows[-4:]]",
    ),
    (
        "md",
        "The ledger as a DataFrame, this session's rows only: `ts` is a UTC datetime, "
        "`cost_usd` a float, `cell` the `In [n]` of the cell.",
    ),
    (
        "code",
        "frame = baseten_magic.ledger(as_frame=True, session='current')\n"
        "frame.groupby('model')['cost_usd'].agg(['count', 'sum'])",
    ),
    (
        "md",
        "## The panel\n\n`%baseten panel` shows sliders and boxes for the same settings the "
        "magic uses, streams into its own output without blocking the kernel, and can compare "
        "two settings side by side.",
    ),
    ("code", "%baseten panel"),
]


def build() -> nbformat.NotebookNode:
    """The quickstart notebook, without outputs."""
    nb = new_notebook()
    # ipykernel's own display name: JupyterLab rewrites any other on open, marking the
    # notebook modified before anyone touched it.
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    for kind, source, *rest in CELLS:
        if kind == "md":
            nb.cells.append(new_markdown_cell(source))
        else:
            cell = new_code_cell(source)
            if rest:
                cell.metadata["tags"] = rest[0]
            nb.cells.append(cell)
    return nb


if __name__ == "__main__":
    target = Path(__file__).with_name("quickstart.ipynb")
    nbformat.write(build(), target)
    print(f"wrote {target}")
