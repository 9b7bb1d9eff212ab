"""Ingest: LangSmith run operations (post/patch, from multipart or JSON) → run records in the store.

``service`` (``IngestService``: every write path ends here), ``records`` (a run object → a ``runs`` row:
``run_record``, ``merge_records``), ``feedback_records`` (``feedback_record``), ``usage`` (token usage wherever the
client put it), ``multipart`` (``split_parts``) and ``encoding`` (``decode_body``: zstd/gzip with a size cap)."""
