"""Tests of tracetune.models. ``shared_smollm2_tokenizer`` lets several test modules share one conversion."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracetune.models import DEFAULT_MODEL_ID, ModelTokenizer, load_tokenizer


def smollm2_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data home per test session holding the converted SmolLM2 tokenizer."""
    home = tmp_path_factory.getbasetemp() / "smollm2-tokenizer-home"
    home.mkdir(exist_ok=True)
    return home


def shared_smollm2_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> ModelTokenizer:
    """The real SmolLM2 tokenizer: converted from the GGUF on first use in the session (slow), then memoized."""
    return load_tokenizer(smollm2_home(tmp_path_factory), DEFAULT_MODEL_ID)
