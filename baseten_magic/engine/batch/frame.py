"""Data in and out of a batch as pandas: rows as records, outcomes as a typed DataFrame.

Rule: the output has the input's index and columns, then `answer` and `error` (object columns
holding str or None, as the contract says), `cost_usd` (float64), then the parsed fields. A
schema decides the parsed columns and their nullable dtypes (`Int64`, `Float64`, `boolean`,
`string`, else object) even when no row parsed, so every partition of a dask run has the same
columns; `json=True` without a schema uses the keys the replies had (with dask, whose columns
must be known before any reply, one object column `parsed` holds the parsed value). A parsed
field whose name is taken gets the prefix `parsed_`. pandas is imported here, never at
package import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from baseten_magic.core.errors import ConfigurationError, ParameterError
from baseten_magic.core.structured import schema_of

if TYPE_CHECKING:
    import pandas as pd

    from baseten_magic.engine.batch.scheduler import RowOutcome

RESULT_COLUMNS = ("answer", "error", "cost_usd")
_DTYPES = {"integer": "Int64", "number": "Float64", "boolean": "boolean", "string": "string"}


def import_pandas() -> Any:
    """pandas, or a one-line error naming the extra to install."""
    try:
        import pandas
    except ImportError:
        raise ConfigurationError(
            "map() needs pandas, which is not installed; install it with "
            "pip install 'baseten_magic[batch]'"
        ) from None
    return pandas


@dataclass(frozen=True)
class Table:
    """The input as a frame (index and columns kept for the output) and as row records."""

    frame: pd.DataFrame
    records: list[dict[str, Any]]

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]


def to_table(data: Any) -> Table:
    """A DataFrame, a Series, a list of str or a list of dicts, as a Table."""
    pd = import_pandas()
    if isinstance(data, pd.DataFrame):
        frame = data
        names = [str(c) for c in frame.columns]
        records = [dict(zip(names, values, strict=True)) for values in frame.itertuples(False)]
        return Table(frame, records)
    if isinstance(data, pd.Series):
        name = str(data.name) if data.name is not None else "value"
        frame = data.to_frame(name)
        records = [{"value": v, name: v} for v in data.tolist()]
        return Table(frame, records)
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        items = list(data)
        if all(isinstance(item, str) for item in items):
            return Table(pd.DataFrame({"value": items}), [{"value": v} for v in items])
        if all(isinstance(item, Mapping) for item in items):
            records = [{str(k): v for k, v in item.items()} for item in items]
            return Table(pd.DataFrame(records), records)
    raise ParameterError(
        f"expected a pandas DataFrame or Series, a list of str, a list of dicts or a dask "
        f"DataFrame as data, got {type(data).__name__}; pass e.g. a DataFrame with a column "
        "per template field"
    )


def schema_columns(schema: object | None) -> list[tuple[str, str]]:
    """The parsed columns a schema gives, with their pandas dtypes (object when unsure)."""
    if schema is None:
        return []
    _, body = schema_of(schema)
    properties = body.get("properties")
    if not isinstance(properties, Mapping):
        return [("parsed", "object")]
    return [(str(name), _dtype(spec, body)) for name, spec in properties.items()]


def _dtype(spec: Any, root: Mapping[str, Any]) -> str:
    if not isinstance(spec, Mapping):
        return "object"
    ref = spec.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return _dtype(target, root)
    kind = spec.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    for key in ("anyOf", "oneOf"):
        arms = spec.get(key)
        if kind is None and isinstance(arms, list):
            real = [a for a in arms if not (isinstance(a, Mapping) and a.get("type") == "null")]
            if len(real) == 1:
                return _dtype(real[0], root)
    if kind is None and isinstance(spec.get("enum"), list):
        values = spec["enum"]
        kind = "string" if all(isinstance(v, str) for v in values) else None
    return _DTYPES.get(str(kind), "object")


def result_frame(
    table: Table,
    outcomes: Sequence[RowOutcome],
    *,
    schema: object | None,
    json_mode: bool,
    summary: Mapping[str, Any],
    infer_json: bool = True,
) -> pd.DataFrame:
    """The output frame: the input's index and columns, the results, the parsed fields."""
    pd = import_pandas()
    out = table.frame.copy()
    taken = {str(c) for c in out.columns} | set(RESULT_COLUMNS)
    out["answer"] = pd.Series([o.answer for o in outcomes], index=out.index, dtype=object)
    out["error"] = pd.Series([o.error for o in outcomes], index=out.index, dtype=object)
    out["cost_usd"] = pd.Series([float(o.cost) for o in outcomes], index=out.index, dtype="float64")
    columns = schema_columns(schema)
    if schema is None and json_mode and not infer_json:
        # Partitions of one dask frame must agree on columns that no reply has shown yet.
        values = [None if o.parsed is None else o.parsed.get("parsed", o.parsed) for o in outcomes]
        label = "parsed_parsed" if "parsed" in taken else "parsed"
        out[label] = pd.Series(values, index=out.index, dtype=object)
    elif schema is None and json_mode:
        seen: dict[str, None] = {}
        for o in outcomes:
            seen.update(dict.fromkeys(o.parsed or {}))
        columns = [(name, "infer") for name in seen]
    for name, dtype in columns:
        values = [None if o.parsed is None else o.parsed.get(name) for o in outcomes]
        label = f"parsed_{name}" if name in taken else name
        out[label] = _column(pd, values, dtype, out.index)
    out.attrs["baseten"] = dict(summary)
    return out


def _column(pd: Any, values: list[Any], dtype: str, index: Any) -> Any:
    if dtype == "infer":
        return pd.Series(values, index=index, dtype=object).convert_dtypes()
    try:
        return pd.Series(pd.array(values, dtype=dtype), index=index)
    except (TypeError, ValueError):  # a value the schema's type does not hold: keep it as is
        return pd.Series(values, index=index, dtype=object)
