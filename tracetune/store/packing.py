"""Compressed JSON columns: a run's ``extra``, ``serialized`` and ``events``, stored as zstd frames with a dictionary
trained on the store's own values.

These columns are read back whole and never searched in SQL (metadata, the one part of ``extra`` that filters
read, has its side table). Their values repeat from run to run: the SDK's runtime, the model's invocation
parameters and tools, the LangChain constructor of ``serialized``. A dictionary trained on a thousand of them
shrinks an SDK's LLM-run ``extra`` from ~1.2 KB to ~100 bytes (``bench/storage.py --sdk``).

A stored value is one of (all of them readable forever):

* JSON text (a ``str``): rows SQLite stored before these columns were packed;
* JSON as UTF-8 bytes: values written before the store had a dictionary, PostgreSQL's rows from before;
* a zstd frame (it starts with zstd's magic number, which no JSON text does) naming its dictionary by id in its
  header (0: none).

This module is the codec (``unpack``, the column type) and the process's dictionaries by id; ``store.dictionaries``
trains, stores and packs with them. ``unpack`` asks every open store of the process for an id it has not seen
(a dictionary another process trained).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol

import orjson
import zstandard
from sqlalchemy import LargeBinary, TypeDecorator
from sqlalchemy.engine import Dialect

from tracetune.errors import TracetuneError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# Every dictionary this process has seen, by id; shared by the stores of the process (ids are random 31-bit
# numbers, and a dictionary never changes under its id).
_DICTIONARIES: dict[int, zstandard.ZstdCompressionDict] = {}
_STORES: weakref.WeakSet[DictionarySource] = weakref.WeakSet()  # open stores, asked for an id not seen yet
_local = threading.local()  # zstd decompressors are not thread-safe: one per thread and dictionary


class MissingDictionary(TracetuneError):
    """A stored value names a dictionary that no open store holds."""


def json_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _decompressor(dict_id: int) -> zstandard.ZstdDecompressor:
    cache: dict[int, zstandard.ZstdDecompressor] = _local.__dict__.setdefault("decompressors", {})
    found = cache.get(dict_id)
    if found is None:
        if dict_id == 0:
            found = zstandard.ZstdDecompressor()
        else:
            data = _DICTIONARIES.get(dict_id)
            if data is None:
                data = _load_dictionary(dict_id)
            found = zstandard.ZstdDecompressor(dict_data=data)
        cache[dict_id] = found
    return found


class DictionarySource(Protocol):
    def load(self, dict_id: int) -> zstandard.ZstdCompressionDict | None: ...


def watch(source: DictionarySource) -> None:
    """``unpack`` will ask ``source`` (a store's ``JsonPacker``) for dictionaries it has not seen, while it lives."""
    _STORES.add(source)


def remember(dict_id: int, data: bytes) -> zstandard.ZstdCompressionDict:
    """The dictionary ``data``, known to ``unpack`` from now on."""
    dictionary = zstandard.ZstdCompressionDict(bytes(data))
    _DICTIONARIES[dict_id] = dictionary
    return dictionary


def _load_dictionary(dict_id: int) -> zstandard.ZstdCompressionDict:
    for source in list(_STORES):
        found = source.load(dict_id)
        if found is not None:
            return found
    raise MissingDictionary(f"a stored value needs compression dictionary {dict_id}, which no open store holds")


def unpack(value: Any) -> Any:
    """The JSON value of a stored ``value`` (any of the forms above; None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return orjson.loads(value)
    if isinstance(value, int | float):  # SQLite's NUMERIC affinity turned the JSON text of a number into one
        return value
    data = bytes(value)
    if data[:4] == ZSTD_MAGIC:
        data = _decompressor(zstandard.get_frame_parameters(data).dict_id).decompress(data)
    return orjson.loads(data)


class _SQLiteJSONBytes(LargeBinary):
    """Bytes in a column SQLite declares ``JSON`` (as before: no table rebuild), handed back as stored."""

    __visit_name__ = "JSON"

    def result_processor(self, dialect: Dialect, coltype: object) -> None:
        return None  # bytes, or the text of a row stored before: ``unpack`` reads both


def frame_dictionary(value: Any) -> int | None:
    """The id of the dictionary a stored value was packed with (0: packed without one); None for a value that is
    not a zstd frame (JSON text or bytes, NULL)."""
    if isinstance(value, bytes | memoryview) and bytes(value[:4]) == ZSTD_MAGIC:
        return int(zstandard.get_frame_parameters(bytes(value)).dict_id)
    return None


class StoredJSON(TypeDecorator[Any]):
    """A ``PackedJSON`` column's values as stored (text, bytes or a frame), for code that rewrites them
    (``RunStore.repack``); ``type_coerce(column, StoredJSON())``."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(_SQLiteJSONBytes() if dialect.name == "sqlite" else LargeBinary())

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return bytes(value) if isinstance(value, memoryview) else value


class PackedJSON(TypeDecorator[Any]):
    """A JSON column whose values ``store.dictionaries.JsonPacker.pack`` compressed: bytes in the database (``bytea``
    on PostgreSQL), the JSON value in Python. A value bound unpacked (a plain statement) is stored as its JSON
    bytes."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(_SQLiteJSONBytes() if dialect.name == "sqlite" else LargeBinary())

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None or isinstance(value, bytes):
            return value
        return json_bytes(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return unpack(value)
