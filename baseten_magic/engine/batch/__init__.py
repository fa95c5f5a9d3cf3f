"""Prompts over data: a plan of one request per row, a scheduler under the account's limits,
and the runners (blocking, async, dask) that turn the outcomes into a DataFrame."""
