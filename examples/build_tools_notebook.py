"""Write examples/tools_and_structured.ipynb (run: python examples/build_tools_notebook.py).

Keeping the notebook as code makes its review and its diffs readable; the .ipynb is committed
without outputs. `tests/test_examples_tools.py` executes it in a real kernel against the local
server and checks what it shows.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS: list[tuple[str, str]] = [
    (
        "md",
        "# Tools and structured output\n\n"
        "Python functions become tools the model can call; `--run-tools` runs them and sends "
        "the results back until the model answers. `--json` and `--schema` ask for JSON and "
        "parse it into `.parsed`.\n\n"
        "This notebook runs **offline**: with no `BASETEN_API_KEY` set, `%baseten local` starts "
        "the bundled Baseten-compatible server in the kernel. Its answers are deterministic "
        "stand-ins (tool arguments are taken from the capitalised words of the prompt), but the "
        "wire format, tool-call ids and errors are the real thing.",
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
        "## Tools are plain functions\n\n"
        "The JSON schema the model sees comes from the signature, the type hints and the "
        "docstring: defaults are optional parameters, `Literal` and `Enum` become enums, "
        "dataclasses and TypedDicts become nested objects.",
    ),
    (
        "code",
        "from typing import Literal\n"
        "from baseten_magic import tool_spec\n"
        "\n"
        "def get_weather(city: str, unit: Literal['celsius', 'fahrenheit'] = 'celsius') -> dict:\n"
        '    """The current weather in a city.\n'
        "\n"
        "    Args:\n"
        "        city: the city name, e.g. Paris.\n"
        "        unit: the temperature unit.\n"
        '    """\n'
        "    return {'city': city, 'sky': 'sunny', 'temperature': 21, 'unit': unit}\n"
        "\n"
        "def local_time(city: str) -> str:\n"
        '    """The local time in a city."""\n'
        "    return '14:05'\n"
        "\n"
        "def population(city: str) -> int:\n"
        '    """How many people live in a city."""\n'
        "    raise LookupError(f'no census data for {city}')\n"
        "\n"
        "tool_spec(get_weather)",
    ),
    (
        "md",
        "## Let the model call them\n\n"
        "Without `--run-tools` the cell shows the calls the model asked for and stops. With it, "
        "each call runs here, its result goes back to the model, and the loop goes on until "
        "the model answers (at most five requests, each priced and logged). A tool that raises "
        "does not stop the cell: the error is what the model reads.",
    ),
    (
        "code",
        "%%baseten -m kimi --tools get_weather,local_time -o asked\nWhat is it like in Paris?",
    ),
    ("code", "[(call['id'], call['name'], call['arguments']) for call in asked.tool_calls]"),
    (
        "code",
        "%%baseten -m gpt-oss --tools get_weather,local_time,population --run-tools -o looped\n"
        "Tell me about Lisbon.",
    ),
    ("code", "print(looped.finish_reason, f'${looped.cost_usd:.6f}')\nprint(looped.content)"),
    (
        "md",
        "## JSON mode\n\n`--json` asks for a JSON object and parses it into `.parsed`.",
    ),
    ("code", "%%baseten -m deepseek --json -o data\nList three primary colours as JSON."),
    ("code", "type(data.parsed).__name__, sorted(data.parsed)"),
    (
        "md",
        "## Structured output against a schema\n\n"
        "`--schema NAME` sends a JSON schema built from a dataclass, a TypedDict, a pydantic "
        "model or a schema dict; the reply is checked against it and, for a dataclass, built "
        "into an instance.",
    ),
    (
        "code",
        "from dataclasses import dataclass\n"
        "\n"
        "@dataclass\n"
        "class City:\n"
        "    name: str\n"
        "    country: str\n"
        "    population: int\n"
        "    landmarks: list[str]",
    ),
    ("code", "%%baseten -m gpt-oss --schema City -o city\nDescribe Rome."),
    ("code", "city.parsed"),
    (
        "md",
        "A reply that does not match the schema is an error naming the JSON path of the first "
        "mismatch; the raw text is kept on the exception. (The local server's `/schema-mismatch` "
        "directive produces such a reply.)",
    ),
    (
        "code",
        "from baseten_magic import OutputParseError, chat, parse_reply, response_format_for\n"
        "\n"
        "reply = chat('Describe Rome /schema-mismatch', model='gpt-oss',\n"
        "             response_format=response_format_for(False, City))\n"
        "try:\n"
        "    parse_reply(reply.content, City)\n"
        "except OutputParseError as exc:\n"
        "    print('OutputParseError:', exc)",
    ),
    ("code", "%baseten cost"),
]


def build() -> nbformat.NotebookNode:
    """The notebook, without outputs."""
    nb: nbformat.NotebookNode = new_notebook()  # type: ignore[no-untyped-call]
    # ipykernel's own display name, so JupyterLab does not rewrite it (and mark it modified).
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [
        new_markdown_cell(source) if kind == "md" else new_code_cell(source)  # type: ignore[no-untyped-call]
        for kind, source in CELLS
    ]
    return nb


def main() -> None:
    """Write the notebook next to this script."""
    path = Path(__file__).with_name("tools_and_structured.ipynb")
    nbformat.write(build(), path)  # type: ignore[no-untyped-call]
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
