"""Evaluation: ``replay`` (held-out conversations replayed against models through the chat API: ``evaluate``,
``replay_one``, the report; each reply scored by :mod:`tracetune.chat.scoring`) and ``experiments`` (a LangSmith
dataset as the held-out set, the results kept as experiments: ``dataset_records``, ``record_experiments``) and
``gates`` (whether a candidate may replace the current model: an expression over their metrics)."""
