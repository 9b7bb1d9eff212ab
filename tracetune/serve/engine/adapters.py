"""LoRA adapters over one base model: loaded on first use, kept in an LRU, mixed freely within one batch.

The first adapter wraps the base model in a ``peft.PeftModel`` (the LoRA layers are injected in place); later
ones are added with ``load_adapter``. A forward pass names each row's adapter (``adapter_names=``, peft's mixed
batch inference; ``"__base__"`` is the plain base model), so requests for different fine-tuned models and for the
base model decode in the same batch. Past ``capacity`` adapters, the least recently used one that no running
sequence holds is deleted. Used from the engine's worker thread only (not thread-safe).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracetune.models.compat import peft_wrapping

log = logging.getLogger(__name__)

BASE = "__base__"  # peft's name for "no adapter" in adapter_names


class AdapterSet:
    def __init__(self, model: Any, capacity: int = 8, on_evict: Callable[[str], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.on_evict = on_evict
        self.model = model  # the base model, or the PeftModel once an adapter is loaded
        self.capacity = capacity
        self._names: OrderedDict[str, str] = OrderedDict()  # adapter directory → adapter name, LRU order
        self._holders: dict[str, int] = {}  # adapter name → running sequences using it

    @property
    def loaded(self) -> list[str]:
        """Adapter directories in memory, least recently used first."""
        return list(self._names)

    def acquire(self, adapter_dir: str | None) -> str:
        """The adapter name to decode ``adapter_dir`` with (loading it if needed), held until :meth:`release`."""
        if adapter_dir is None:
            return BASE
        key = str(Path(adapter_dir).resolve())
        name = self._names.get(key)
        if name is None:
            name = "a" + hashlib.sha1(key.encode()).hexdigest()[:16]
            self._load(key, name)
            self._names[key] = name
        self._names.move_to_end(key)
        self._holders[name] = self._holders.get(name, 0) + 1
        self._evict()
        return name

    def release(self, name: str) -> None:
        if name != BASE:
            self._holders[name] -= 1
            self._evict()

    def forward_kwargs(self, names: list[str]) -> dict[str, Any]:
        """Keyword arguments naming each row's adapter ({} while no adapter was ever loaded)."""
        return {"adapter_names": names} if self._names or _is_peft(self.model) else {}

    def _load(self, directory: str, name: str) -> None:
        from peft import PeftModel

        log.info("loading adapter %s as %s", directory, name)
        if _is_peft(self.model):
            self.model.load_adapter(directory, adapter_name=name, is_trainable=False)
        else:
            with peft_wrapping():
                self.model = PeftModel.from_pretrained(self.model, directory, adapter_name=name, is_trainable=False)
        self.model.eval()

    def _evict(self) -> None:
        for key in list(self._names):
            if len(self._names) <= self.capacity:
                return
            name = self._names[key]
            if self._holders.get(name, 0) > 0:
                continue
            log.info("evicting adapter %s (%s)", key, name)
            with warnings.catch_warnings():  # "adapter … was active which is now deleted": rows name theirs
                warnings.simplefilter("ignore", UserWarning)
                self.model.delete_adapter(name)
            del self._names[key]
            self._holders.pop(name, None)
            if self.on_evict is not None:
                self.on_evict(name)


def _is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config")
