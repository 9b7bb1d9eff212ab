"""The LangSmith-compatible surface: ``protocol`` (pydantic shapes mirroring LangSmith's, ``/info``), ``routes``
(``/api/v1``: thin — parse, call one service, shape the answer) and ``v2`` (``/api/v2``: the runs, traces and
threads queries of the current SDK's generated client), ``otel`` (OTLP/HTTP trace ingest, under ``/api/v1`` and
at the root), ``queues`` (annotation queues and their items) and ``datasets`` (datasets, versions, examples)."""
