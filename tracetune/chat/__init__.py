"""The message/record contract every layer shares: ``types`` (the documented shapes of messages, tool calls,
sessions), ``format`` (the one renderer of messages + tools into a prompt and the one parser of tool calls back,
for training, serving and validation alike) and ``validate`` (OpenAI's fine-tuning record rules)."""
