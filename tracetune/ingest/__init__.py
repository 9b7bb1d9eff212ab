"""Ingest: LangSmith run operations (post/patch, from multipart or JSON) and OTLP spans → run records in the store.

``service`` (``IngestService``: every write path ends here), ``records`` (a run object → a ``runs`` row:
``run_record``, ``merge_records``), ``feedback_records`` (``feedback_record``), ``usage`` (token usage wherever the
client put it), ``multipart`` (``split_parts``), ``encoding`` (``decode_body``: zstd/gzip with a size cap),
``otlp`` (``decode_request``, ``runs_from_request``: an OTLP/HTTP export → run dicts) and ``genai``
(``read_content``: a span's LLM content in the langsmith, GenAI-semconv or OpenInference attributes)."""
