"""Convert: runs → chat sessions (OpenAI chat format) → fine-tuning records, validated, deduplicated, split."""
