"""A base model's tokenizer, loaded with the ``tokenizers`` package alone (no torch) once it is cached.

The first load of a GGUF model converts its tokenizer with ``transformers.AutoTokenizer.from_pretrained(dir,
gguf_file=…)`` (imports torch; ~8 s for SmolLM2) and saves the result — ``tokenizer.json``,
``tokenizer_config.json``, the chat template — under ``$TRACETUNE_HOME/models/<id>/tokenizer/``. Later loads,
in any process, read that ``tokenizer.json`` with ``tokenizers`` only (well under a second). The cache is
keyed by the model's source (path, size, mtime) and rebuilt when that changes. A Hugging Face directory that
already has a ``tokenizer.json`` is read in place; one without is converted and cached like a GGUF.

``ModelTokenizer.path`` is a directory ``transformers.AutoTokenizer.from_pretrained`` loads quickly too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracetune.chat.format import get_template
from tracetune.models.registry import ModelSpec, resolve

if TYPE_CHECKING:
    import tokenizers

log = logging.getLogger(__name__)

SOURCE_FILE = "source.json"  # the fingerprint of what the cache was converted from

_memo: dict[tuple[str, str, str], ModelTokenizer] = {}
_memo_lock = threading.Lock()
_key_locks: dict[tuple[str, str, str], threading.Lock] = {}


class ModelTokenizer:
    """Text ↔ token ids for one base model. Encoding never adds special tokens: the rendered prompt
    (:mod:`tracetune.chat.format`) already holds every marker the model needs."""

    def __init__(self, backend: tokenizers.Tokenizer, path: Path, config: dict[str, Any]) -> None:
        self.backend = backend
        self.path = path
        self.config = config

    def encode(self, text: str) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def count(self, text: str) -> int:
        return len(self.backend.encode(text, add_special_tokens=False).ids)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and each token's ``(start, end)`` character span in ``text``."""
        enc = self.backend.encode(text, add_special_tokens=False)
        return list(enc.ids), [(int(a), int(b)) for a, b in enc.offsets]

    def decode(self, ids: list[int], *, skip_special_tokens: bool = False) -> str:
        return str(self.backend.decode(ids, skip_special_tokens=skip_special_tokens))

    def token_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    @property
    def eos_token(self) -> str | None:
        return _token_text(self.config.get("eos_token"))

    @property
    def eos_token_id(self) -> int | None:
        return self.token_id(self.eos_token) if self.eos_token else None

    @property
    def vocab_size(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))


def stop_token_ids(tokenizer: ModelTokenizer, chat_template: str) -> frozenset[int]:
    """Tokens that end a reply: the tokenizer's eos, the template's end of turn and start of turn."""
    template = get_template(chat_template)
    found = {tokenizer.eos_token_id}
    for marker in (template.turn_end, template.turn_start, "<|endoftext|>"):
        found.add(tokenizer.token_id(marker))
    return frozenset(i for i in found if i is not None)


def load_tokenizer(home: Path, model_id: str) -> ModelTokenizer:
    """The tokenizer of base model ``model_id`` (memoized per home + model; safe to call from many threads)."""
    spec = resolve(home, model_id)
    key = (str(Path(home).resolve()), model_id, str(spec.weights_path))
    with _memo_lock:
        if key in _memo:
            return _memo[key]
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one conversion per model at a time; other models load in parallel
        if key not in _memo:
            tok = _load(Path(home), spec)
            with _memo_lock:
                _memo[key] = tok
    return _memo[key]


def tokenizer_dir(home: Path, model_id: str) -> Path:
    """Where the converted tokenizer of ``model_id`` is cached."""
    return Path(home) / "models" / model_id / "tokenizer"


def _load(home: Path, spec: ModelSpec) -> ModelTokenizer:
    if spec.gguf_file is None and (spec.path / "tokenizer.json").is_file():
        return _read_dir(spec.path)
    cache = tokenizer_dir(home, spec.id)
    fingerprint = _fingerprint(spec)
    if _cached_fingerprint(cache) != fingerprint:
        _convert(spec, cache, fingerprint)
    return _read_dir(cache)


def _read_dir(directory: Path) -> ModelTokenizer:
    import tokenizers

    config_file = directory / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    return ModelTokenizer(tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json")), directory, config)


def _convert(spec: ModelSpec, cache: Path, fingerprint: dict[str, Any]) -> None:
    """Convert with transformers into a scratch directory, then move it into place (atomic for readers)."""
    log.info("converting the tokenizer of %s from %s (first use; takes a few seconds)…", spec.id, spec.weights_path)
    started = time.monotonic()
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True}
    if spec.gguf_file:
        kwargs["gguf_file"] = spec.gguf_file
    hf_tokenizer = AutoTokenizer.from_pretrained(str(spec.path), **kwargs)
    cache.parent.mkdir(parents=True, exist_ok=True)
    scratch = cache.parent / f".tokenizer-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        hf_tokenizer.save_pretrained(str(scratch))
        if not (scratch / "tokenizer.json").is_file():
            raise RuntimeError(f"transformers wrote no tokenizer.json for {spec.id} (a slow-only tokenizer)")
        (scratch / SOURCE_FILE).write_text(json.dumps(fingerprint, indent=2), encoding="utf-8")
        if cache.exists():  # stale (the model changed) or written meanwhile by another process: replace it
            stale = cache.parent / f".stale-{uuid.uuid4().hex[:8]}"
            os.replace(cache, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(scratch, cache)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("tokenizer of %s cached at %s in %.1f s", spec.id, cache, time.monotonic() - started)


def _fingerprint(spec: ModelSpec) -> dict[str, Any]:
    source = spec.weights_path
    stat = source.stat()
    return {"source": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _cached_fingerprint(cache: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((cache / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (cache / "tokenizer.json").is_file():
        return None
    return data if isinstance(data, dict) else None


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # older configs store AddedToken dicts
        value = value.get("content")
    return value if isinstance(value, str) else None
