"""`-i` interpolation: references only, code and JSON untouched, compact summaries."""

from __future__ import annotations

from typing import Any

import pytest

from baseten_magic.core.errors import ParameterError
from baseten_magic.notebook.interpolate import interpolate, resolve, summarize


class Box:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


NS: dict[str, Any] = {
    "name": "Ada",
    "cfg": {"key": "value", "n": [1, 2, 3]},
    "rows": ["first", "second"],
    "run": Box(config=Box(lr=0.01), _secret="hidden"),
    "count": 42,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hi {{name}}", "hi Ada"),
        ("hi {{ name }}!", "hi Ada!"),
        ("{{run.config.lr}}", "0.01"),
        ("{{rows[0]}} {{rows[-1]}}", "first second"),
        ("{{cfg[\"key\"]}} {{ cfg['n'][1] }}", "value 2"),
        ("{{count}}", "42"),
    ],
)
def test_references_are_replaced(text: str, expected: str) -> None:
    assert interpolate(text, NS) == expected


@pytest.mark.parametrize(
    "text",
    [
        "single {name} braces",
        '{"a": {"b": 1}}',
        '{"nested": {"deep": {"x": [1, 2]}}}',
        "```python\nprint(f'{{name}} {x}')\nd = {{'a': 1}}\n```",
        "~~~\n{{missing}}\n~~~",
        "inline `f'{{missing}}'` code",
        "``{{ also `code` }}``",
        "def f(): return {}",
    ],
)
def test_braces_json_and_code_are_untouched(text: str) -> None:
    assert interpolate(text, NS) == text


def test_unterminated_fence_protects_to_the_end() -> None:
    text = "{{name}}\n```\n{{missing}}"
    assert interpolate(text, NS) == "Ada\n```\n{{missing}}"


def test_escape_gives_literal_double_braces() -> None:
    assert interpolate(r"\{{name}} is {{name}}", NS) == "{{name}} is Ada"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{{missing}}", "'missing'"),
        ("{{ rows[5] }}", "IndexError"),
        ("{{cfg.nope}}", "AttributeError"),
        ('{{cfg["nope"]}}', "KeyError"),
        ("{{ name.upper() }}", "not a reference"),
        ("{{ count + 1 }}", "not a reference"),
        ("{{ rows[count] }}", "not a reference"),
        ("{{ }}", "not a reference"),
        ("{{ run._secret }}", "private"),
        ("{{ __import__ }}", "not defined"),
    ],
)
def test_bad_references_are_one_line_errors(text: str, fragment: str) -> None:
    with pytest.raises(ParameterError) as info:
        interpolate(text, NS)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_resolve_never_calls_anything() -> None:
    calls: list[int] = []

    class Trap:
        def __call__(self) -> None:
            calls.append(1)

    with pytest.raises(ParameterError):
        resolve("trap()", {"trap": Trap()})
    assert calls == []


def test_long_strings_are_truncated_with_total_length() -> None:
    text = summarize("x" * 5000)
    assert text.startswith("x" * 4000)
    assert "5,000 characters" in text
    assert summarize("short") == "short"


def test_other_objects_repr_truncated() -> None:
    text = summarize(list(range(2000)))
    assert len(text) < 1100
    assert "characters in total" in text


class FakeFrame:
    """Duck-typed like a pandas DataFrame, without pandas."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.shape = (rows, 2)
        self.columns = ["city", "temp"]
        self.dtypes = {"city": "object", "temp": "float64"}
        self.head_calls: list[int] = []

    def head(self, n: int) -> FakeFrame:
        self.head_calls.append(n)
        return FakeFrame(min(n, self.rows))

    def to_markdown(self) -> str:
        raise ImportError("Missing optional dependency 'tabulate'")

    def to_string(self) -> str:
        return "\n".join(f"row{i} Paris 21.5" for i in range(self.rows))


def test_dataframe_like_summary() -> None:
    frame = FakeFrame(1000)
    text = interpolate("data: {{df}}", {"df": frame})
    assert "FakeFrame with 1,000 rows × 2 columns" in text
    assert "city (object), temp (float64)" in text
    assert "row4 Paris" in text
    assert "row5" not in text
    assert frame.head_calls == [5]


class FakeSeries:
    shape = (300,)
    name = "temp"
    dtype = "float64"

    def head(self, n: int) -> FakeSeries:
        return self

    def to_string(self) -> str:
        return "0 1.0\n1 2.0"


class FakeArray:
    shape = (3, 4)
    dtype = "int64"

    def __repr__(self) -> str:
        return "array(" + "9" * 3000 + ")"


def test_series_and_array_summaries() -> None:
    series = summarize(FakeSeries())
    assert "FakeSeries 'temp' with 300 values, dtype float64" in series
    assert "0 1.0" in series
    array = summarize(FakeArray())
    assert array.startswith("FakeArray shape=(3, 4) dtype=int64\n")
    assert "3,007 characters in total" in array
