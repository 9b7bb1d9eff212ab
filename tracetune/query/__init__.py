"""Query: the LangSmith filter language and run listing, over the store's ``runs`` table.

``filter_lang`` (``parse_filter``: tokenizer + parser → AST), ``filter_sql`` (``compile_filter``, ``check_filter``:
AST → SQLAlchemy clause), ``runs_query`` (``RunQuery``, ``query_runs``: one page of runs with cursors), ``run_view``
(``run_view``: a row → the run object LangSmith clients read) and ``selection`` (``stream_run_groups``: a
project's runs streamed for export)."""
