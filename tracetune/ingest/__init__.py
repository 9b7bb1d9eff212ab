"""Ingest: LangSmith run operations (post/patch, from multipart or JSON) → run records in the store."""
