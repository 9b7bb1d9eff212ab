"""Evaluation: ``replay`` (held-out conversations replayed against models through the chat API: ``evaluate``,
``replay_one``, the report) and ``scoring`` (one reply against the held-out answer: ``score_reply``, ``summarize``)."""
