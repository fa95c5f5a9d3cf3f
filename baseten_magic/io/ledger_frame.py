"""The ledger's rows as a pandas DataFrame with typed columns.

Rule: pandas is optional and loads only here, when a frame is asked for; without it the error
names the extra to install. Each column has one dtype whatever the rows hold (also with no
rows): `ts` tz-aware UTC datetimes, `cost_usd` float64 (the ledger's exact Decimal becomes a
float only at this edge), token counts and `cell` nullable `Int64` (a panel call has no cell),
timings float64, text columns pandas strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from baseten_magic.core.errors import ConfigurationError
from baseten_magic.io.ledger import LedgerRow

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DTYPES", "INSTALL_HINT", "rows_frame"]

INSTALL_HINT = "pip install 'baseten_magic[batch]'"

#: Every ledger column and its dtype (`ts` is converted on its own: a datetime with a zone).
DTYPES: dict[str, str] = {
    "session": "string",
    "cell": "Int64",
    "model": "string",
    "prompt_tokens": "Int64",
    "completion_tokens": "Int64",
    "reasoning_tokens": "Int64",
    "cached_tokens": "Int64",
    "cost_usd": "float64",
    "latency_s": "float64",
    "ttft_s": "float64",
    "status": "string",
    "error": "string",
    "request_id": "string",
    "pricing_mode": "string",
    "source": "string",
    "route": "string",
}


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ConfigurationError(
            "ledger(as_frame=True) needs pandas, which is not installed; "
            f"install it with {INSTALL_HINT}"
        ) from None
    return pandas


def rows_frame(rows: Sequence[LedgerRow]) -> pd.DataFrame:
    """`rows` as a DataFrame, one row each, oldest first, with the columns' dtypes fixed."""
    pandas = _pandas()
    names = ["ts", *DTYPES]
    data: dict[str, list[Any]] = {name: [] for name in names}
    for row in rows:
        for name in names:
            value = getattr(row, name)
            data[name].append(float(value) if name == "cost_usd" else value)
    frame = pandas.DataFrame(data, columns=names)
    frame["ts"] = pandas.to_datetime(frame["ts"], utc=True, format="ISO8601")
    return frame.astype(DTYPES)
