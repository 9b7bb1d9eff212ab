"""Serving: the inference engine behind the OpenAI-compatible chat completions."""
