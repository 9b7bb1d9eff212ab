"""The OpenAI-compatible surface (``/v1``): ``protocol`` (pydantic shapes mirroring OpenAI's), ``routes`` (files,
fine-tuning jobs, models) and ``chat`` (chat completions, with the serving class made on first use)."""
