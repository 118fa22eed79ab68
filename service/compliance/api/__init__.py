"""HTTP API (FastAPI app factory in ``app``)."""
