"""Query: the LangSmith filter language and run listing, over the store's ``runs`` table.

``filter_lang`` (``parse_filter``: tokenizer + parser → AST), ``filter_sql`` (``compile_filter``, ``check_filter``,
``FeedbackWindow``: AST → SQLAlchemy clause), ``runs_query`` (``RunQuery``, ``query_runs``: one page of runs with
cursors), ``run_view`` (``run_view``: a row → the run object LangSmith clients read), ``run_stats``
(``run_stats``: aggregate figures of a selection), ``selection`` (``stream_run_groups``: a project's runs streamed
for export), and the v2 API's: ``v2_runs`` (``v2_run``, ``check_selects``: the v2 run object and its ``selects``),
``traces`` (``query_runs_v2``, ``query_traces``, ``trace_runs``) and ``threads`` (``query_threads``,
``thread_traces``); ``example_filter`` (``example_predicate``: the filter language over dataset examples)."""
