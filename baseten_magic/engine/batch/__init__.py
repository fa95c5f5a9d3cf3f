"""Prompts over data: a plan of one request per row, a scheduler under the account's limits,
and the runners (blocking, async, dask) that turn the outcomes into a DataFrame.

Rule: `plan` sends nothing, `scheduler` does no pandas, `frame` does no I/O; `runner` is the only
module that ties them together, and the only way front ends run a batch.
"""
