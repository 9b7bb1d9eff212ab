"""The message/record contract every layer shares: ``types`` (the documented shapes of messages, tool calls,
sessions), ``format`` (the one renderer of messages + tools into a prompt and the one parser of tool calls back,
for training, serving and validation alike), ``validate`` (OpenAI's fine-tuning record rules), ``preference``
(OpenAI's DPO lines: validated as two chat records, split into them), ``reinforcement`` (OpenAI's RFT lines: a
prompt the model answers and the item a grader reads) and ``scoring`` (one
reply against the held-out answer: ``split_record``, ``score_reply``, ``summarize``; training and evaluation alike)
and ``diagnose`` (findings a user can act on — one answer for every input, rare or unseen argument values,
train/validation leakage — over records and replies; shared by jobs, ``tracetune eval``, export and the UI)."""
