"""Evaluation: ``replay`` (held-out conversations replayed against models through the chat API: ``evaluate``,
``replay_one``, the report), ``scoring`` (one reply against the held-out answer: ``score_reply``, ``summarize``)
and ``experiments`` (a LangSmith dataset as the held-out set, the results kept as experiments:
``dataset_records``, ``record_experiments``)."""
