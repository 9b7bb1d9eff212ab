"""Convert: runs → chat sessions (OpenAI chat format) → fine-tuning records, validated, deduplicated, split.
No SQL here (the store streams the runs: :mod:`tracetune.query.selection`).

* ``messages`` — one recorded message, in any form traces hold it → a ``ChatMessage`` (``message_from_any``);
* ``sessions`` — runs → ``ChatSession`` or ``Skip`` (``sessions_from_runs``, ``session_from_run``);
* ``trajectories`` — the LLM calls of one agent loop merged into one conversation (``merge_trajectories``);
* ``hygiene`` — duplicates, PII scrubbing, human corrections (``Deduper``, ``scrub_session``, ``apply_correction``);
* ``records`` — a session → one JSONL record in a format (``record_from_session``, ``dumps_record``);
* ``examples`` — dataset examples ↔ training records (``example_from_record``, ``record_from_example``,
  ``iter_dataset_records``);
* ``csv_examples`` — a CSV upload → dataset examples (``examples_from_csv``);
* ``split`` — leakage-safe train/validation split by conversation group (``assign_split``);
* ``token_count``, ``target_check`` — token counts and whether a record trains the target model;
* ``dataset_builder`` — the whole pipeline in memory (``Selection``, ``ExportOptions``, ``DatasetBuilder``);
* ``export`` — the pipeline over the store or a file, to JSONL and stored datasets (``export_runs``,
  ``export_dataset``, ``preview_dataset``);
* ``langchain_loader`` — ``TracetuneChatLoader``, LangChain's chat-loader interface;
* ``tool_recovery`` — tool declarations a converter dropped, back from the stored runs (``recover_tools``)."""
