"""A dask DataFrame maps lazily, partition by partition, on a real two-process LocalCluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import baseten_magic
from baseten_magic.server import LocalServer

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

ServerFactory = Callable[..., LocalServer]


@pytest.fixture
def cluster_client(limited_server: ServerFactory) -> Iterator[tuple[LocalServer, object]]:
    # The server and the environment first: worker processes inherit the variables.
    server = limited_server(rpm=600, max_concurrent=8, latency_s=0.05)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    try:
        yield server, client
    finally:
        client.close()
        cluster.close()


@pytest.mark.timeout(180)
def test_a_dask_frame_maps_lazily_on_the_cluster(
    cluster_client: tuple[LocalServer, object],
) -> None:
    server, _ = cluster_client
    data = pd.DataFrame(
        {"review": [f"review {i}" for i in range(24)], "n": range(24)},
        index=pd.Index([f"r{i}" for i in range(24)], name="id"),
    )
    frame = dd.from_pandas(data, npartitions=3, sort=False)
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["label", "score"],
    }
    lazy = baseten_magic.map("Rate {review}", frame, schema=schema, rpm=600)
    assert server.stats().requests == 0  # nothing runs before compute()
    assert list(lazy.columns) == ["review", "n", "answer", "error", "cost_usd", "label", "score"]
    assert str(lazy.dtypes["score"]) == "Int64"
    out = lazy.compute()
    assert list(out.index) == list(data.index)
    assert out["error"].isna().all(), out["error"].tolist()
    stats = server.stats()
    assert stats.requests - stats.rate_limited == 24  # a 429 is retried, not a failure
    assert stats.rate_limited <= 3
    assert str(out["score"].dtype) == "Int64"
    again = baseten_magic.map("Rate {review}", frame, schema=schema).compute()
    assert server.stats().requests == stats.requests  # the workers share the cache file
    assert again["cost_usd"].sum() == 0
