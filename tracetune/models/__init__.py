"""Base models: the registry (ids → local weights) and their tokenizers. Importing this never imports torch."""

from tracetune.models.registry import DEFAULT_MODEL_ID, ModelSpec, list_models, register, resolve
from tracetune.models.tokenizer import ModelTokenizer, load_tokenizer

__all__ = ["DEFAULT_MODEL_ID", "ModelSpec", "ModelTokenizer", "list_models", "load_tokenizer", "register", "resolve"]
