"""The HTTP API (FastAPI): one module per resource."""
