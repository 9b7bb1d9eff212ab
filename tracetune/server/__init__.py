"""The HTTP server: one FastAPI app with the LangSmith-compatible API under /api/v1 (more surfaces later)."""
