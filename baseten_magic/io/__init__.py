"""Layer 2: the I/O edges: the HTTP client (the only importer of httpx) and the SQLite ledger."""
