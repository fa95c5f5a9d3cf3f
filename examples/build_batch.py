"""Write examples/batch.ipynb from the cells below (run: python examples/build_batch.py).

Prompts over data: classify restaurant reviews in a DataFrame with a schema, watch the
progress, read the cost, and re-run from the cache. The .ipynb is committed without outputs;
`python -m baseten_magic.demo examples/batch.ipynb` executes it into examples/out/.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS: list[tuple[str, str]] = [
    (
        "md",
        "# Prompts over data\n\n"
        "`baseten_magic.map(prompt, data)` sends one chat completion per row of a DataFrame "
        "and returns the answers as columns, in the input's order and index. It stays under "
        "the account's rate limit (found from 429s, or given as `rpm=`/`tpm=`), retries "
        "rate-limited rows, caps the spend with `budget_usd=`, and keeps every answer in a "
        "response cache, so a re-run after a crash or an interrupt sends only what is "
        "missing.\n\n"
        "This notebook runs **offline**: with no `BASETEN_API_KEY` set it starts the bundled "
        "local server with an account's limits (600 requests/min, 8 at once). It uses a fresh "
        "cache file so it shows the same thing every time it runs.",
    ),
    (
        "code",
        "import os, tempfile\n"
        "import pandas as pd\n"
        "import baseten_magic\n"
        "from baseten_magic.server import use_local_server\n"
        "\n"
        "if not os.environ.get('BASETEN_API_KEY'):\n"
        "    server = use_local_server(rpm=600, max_concurrent=8, latency_s=0.2)\n"
        "os.environ['BASETEN_MAGIC_CACHE'] = os.path.join(tempfile.mkdtemp(), 'cache.sqlite3')",
    ),
    ("md", "## The data\n\nA DataFrame of reviews; its index is kept in the result."),
    (
        "code",
        "texts = [\n"
        "    'The ramen was rich and the staff were lovely.',\n"
        "    'Cold fries, long wait, never again.',\n"
        "    'Fine. Nothing special, nothing wrong.',\n"
        "    'Best dumplings in town, worth the queue.',\n"
        "    'The soup arrived lukewarm and salty.',\n"
        "    'Friendly owner, cosy room, decent coffee.',\n"
        "] * 4\n"
        "reviews = pd.DataFrame({'review': texts},\n"
        "                       index=pd.Index([f'R{i:03}' for i in range(len(texts))], "
        "name='id'))\n"
        "reviews.head()",
    ),
    (
        "md",
        "## What we want back\n\nA schema (a dataclass here; a TypedDict, a pydantic model or "
        "a JSON schema work too). Its fields become typed columns.",
    ),
    (
        "code",
        "from dataclasses import dataclass\n"
        "from typing import Literal\n"
        "\n"
        "@dataclass\n"
        "class Verdict:\n"
        "    sentiment: Literal['positive', 'negative', 'neutral']\n"
        "    stars: int\n"
        "    topic: str",
    ),
    (
        "md",
        "## How much could it cost?\n\n`dry_run=True` sends nothing: it counts the requests "
        "(rows already in the cache are free) and bounds the cost.",
    ),
    (
        "code",
        "prompt = 'Classify this restaurant review: {review}'\n"
        "print(baseten_magic.map(prompt, reviews, schema=Verdict, max_tokens=200, "
        "dry_run=True))",
    ),
    (
        "md",
        "## Run it\n\nA progress line updates while the rows are sent (rows, rate, spend, "
        "ETA, errors, cache hits, concurrency) and leaves a one-line summary.",
    ),
    (
        "code",
        "out = baseten_magic.map(prompt, reviews, schema=Verdict, max_tokens=200, "
        "budget_usd=0.05)\n"
        "out[['review', 'sentiment', 'stars', 'topic', 'error', 'cost_usd']].head(8)",
    ),
    ("code", "out.dtypes"),
    (
        "md",
        "## The cost\n\n`cost_usd` per row, and the run's summary in `out.attrs['baseten']`. "
        "Every request sent is a row in the cost ledger too (`source='batch'`).",
    ),
    (
        "code",
        "print(f\"total ${out['cost_usd'].sum():.6f}\")\nout.attrs['baseten']",
    ),
    (
        "code",
        "batch_rows = [r for r in baseten_magic.ledger() if r.source == 'batch']\n"
        "# one row per request sent, 429s that were retried included\n"
        "len(batch_rows) == out.attrs['baseten']['requests'], sum(r.cost_usd for r in batch_rows)",
    ),
    (
        "md",
        "## Run it again\n\nThe same requests were answered before: nothing is sent, and the "
        "rows cost $0. After an interrupt or a budget stop, this is how the run resumes.",
    ),
    (
        "code",
        "again = baseten_magic.map(prompt, reviews, schema=Verdict, max_tokens=200)\n"
        "summary = again.attrs['baseten']\n"
        "print(summary['cached'], 'cached,', summary['requests'], 'requests sent')\n"
        "(again['sentiment'] == out['sentiment']).all()",
    ),
    (
        "md",
        "## The same from a cell\n\n"
        "With the extension loaded, `%%baseten --over NAME` runs the cell body as the template "
        "over the notebook's DataFrame (or Series, or list). The usual cell options apply "
        "(`-m`, `--system`, `--temperature`, `--max-tokens`, `--param`, `--schema`, `--json`, "
        "`--route`), plus `--rpm`, `--tpm`, `--concurrency`, `--budget`, `--no-cache` and "
        "`--dry-run`. It shows the live progress line, then the summary and the first rows; "
        "`-o` keeps the frame, also after Kernel → Interrupt (the rows done so far), and "
        "running the cell again sends only the rows still missing.",
    ),
    ("code", "%load_ext baseten_magic"),
    (
        "code",
        "%%baseten --over reviews -o short --max-tokens 50 --temperature 0\n"
        "Summarise this review in five words: {review}",
    ),
    (
        "md",
        "Its requests are in the cost ledger as `source='batch'`, with this notebook's session "
        "and the cell's number, so `%baseten cost` counts them.",
    ),
    ("code", "short.attrs['baseten']['rows'], bool(short['error'].isna().all())"),
]


def build() -> nbformat.NotebookNode:
    """The batch notebook, without outputs."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for kind, source in CELLS:
        nb.cells.append(new_markdown_cell(source) if kind == "md" else new_code_cell(source))
    return nb


if __name__ == "__main__":
    target = Path(__file__).with_name("batch.ipynb")
    nbformat.write(build(), target)
    print(f"wrote {target}")
