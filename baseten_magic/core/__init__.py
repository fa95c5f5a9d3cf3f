"""Layer 1: pure building blocks, standard library only (pydantic loaded lazily for schemas).

Errors and results, SSE decoding, the stream state, request parameters, the model catalog,
pricing, retry policy, settings read from the environment, tool and output schemas.
"""
