"""A store's compression dictionaries for its packed JSON columns (``store.packing``): trained, stored, used.

Dictionaries are rows of ``json_dictionaries`` (the id is the zstd dictionary id), immutable and never deleted. A
process packs with the newest one it knows; it trains one when the store has none yet, from the first
``TRAIN_AFTER`` values it packs, and the row goes in the same transaction as the first runs packed with it, so
no committed value ever names a dictionary that is not stored. Replicas that train at the same time each store
their own; readers find any of them by id.
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime
from typing import Any

import zstandard
from sqlalchemy import Connection, select
from sqlalchemy.exc import SQLAlchemyError

from tracetune.store.engine import Database
from tracetune.store.packing import json_bytes, remember, watch
from tracetune.store.schema import json_dictionaries as t

TRAIN_AFTER = 1000  # values packed before a dictionary is trained from them
DICTIONARY_BYTES = 16384  # 64 KB measured no smaller on SDK runs
LEVEL = 3
_MAX_SAMPLE = 65536  # a longer value is not a sample (it would crowd out the others)
_local = threading.local()  # zstd compressors are not thread-safe: one per thread and dictionary


class JsonPacker:
    """Packs the values of one store's ``PackedJSON`` columns: with its newest dictionary, or, until it has one,
    as JSON bytes while they are collected as training samples."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._dictionary: zstandard.ZstdCompressionDict | None = None
        self._loaded = False
        self._samples: list[bytes | bytearray | memoryview] = []
        self._lock = threading.Lock()
        watch(self)

    def pack(self, value: Any) -> bytes | None:
        if value is None:
            return None
        data = json_bytes(value)
        dictionary = self._dictionary
        if dictionary is None:
            if len(data) <= _MAX_SAMPLE:
                with self._lock:
                    if len(self._samples) < TRAIN_AFTER:
                        self._samples.append(data)
            return data
        cache: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("compressors", {})
        compressor = cache.get(dictionary.dict_id())
        if compressor is None:
            compressor = cache[dictionary.dict_id()] = zstandard.ZstdCompressor(
                level=LEVEL, dict_data=dictionary, write_checksum=False, write_content_size=True
            )
        return compressor.compress(data)

    def dictionary_id(self) -> int | None:
        """The id of the dictionary values are packed with now (None until the store has one)."""
        return None if self._dictionary is None else int(self._dictionary.dict_id())

    def start(self) -> None:
        """Load the store's newest dictionary, once (before the first values are packed)."""
        if self._loaded:
            return
        with self.db.read() as conn:
            row = conn.execute(select(t.c.id, t.c.data).order_by(t.c.created_at.desc(), t.c.id).limit(1)).first()
        if row is not None:
            self._dictionary = remember(row.id, row.data)
        self._loaded = True

    def trained(self) -> zstandard.ZstdCompressionDict | None:
        """A dictionary trained from the samples, once there are enough and none is in use; None otherwise. The
        caller stores it (``store``) in the transaction of the values it packs next."""
        with self._lock:
            if self._dictionary is not None or len(self._samples) < TRAIN_AFTER:
                return None
            samples, self._samples = self._samples, []
        size = min(DICTIONARY_BYTES, max(1024, sum(map(len, samples)) // 4))
        try:
            return zstandard.train_dictionary(
                size, samples, k=64, d=8, level=LEVEL, dict_id=secrets.randbelow(2**31 - 1) + 1
            )
        except zstandard.ZstdError:
            return None  # samples too alike or too few bytes to learn from: collect again

    def store(self, conn: Connection, dictionary: zstandard.ZstdCompressionDict) -> None:
        """Insert ``dictionary`` in the caller's write transaction; it packs this process's values from the
        commit on."""
        data = dictionary.as_bytes()
        conn.execute(t.insert().values(id=dictionary.dict_id(), data=data, created_at=datetime.now(UTC)))
        conn.info.setdefault("after_commit", []).append(lambda: self._use(dictionary))

    def _use(self, dictionary: zstandard.ZstdCompressionDict) -> None:
        self._dictionary = remember(dictionary.dict_id(), dictionary.as_bytes())

    def load(self, dict_id: int) -> zstandard.ZstdCompressionDict | None:
        """The store's dictionary ``dict_id`` (registered for ``unpack``), or None if it has none by that id."""
        try:
            with self.db.read() as conn:
                data = conn.execute(select(t.c.data).where(t.c.id == dict_id)).scalar()
        except SQLAlchemyError:  # a store closed since, or one older than the dictionaries: it has none
            return None
        return None if data is None else remember(dict_id, data)
