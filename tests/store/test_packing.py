"""Packed run JSON (``store.packing``) on both dialects: a store trains one dictionary from its own first values and
stores it with the first rows packed with it; every value reads back as it was sent, packed or not, in this
process, in another process that never saw the dictionary, and after a downgrade; a failed transaction leaves no
row naming a dictionary that is not stored."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
import zstandard
from sqlalchemy import cast, select, text
from sqlalchemy.types import LargeBinary

from tracetune.store import open_store
from tracetune.store.dictionaries import TRAIN_AFTER
from tracetune.store.packing import ZSTD_MAGIC, MissingDictionary, unpack
from tracetune.store.schema import json_dictionaries, runs

T0 = 1_795_000_000_000_000
RUNS_TO_TRAIN = TRAIN_AFTER // 3 + 1  # each run below packs three values (extra, serialized, events)
PACKED = ("extra", "serialized", "events")


def sdk_like(i: int) -> dict[str, Any]:
    """A post as ``run_record`` makes it from an SDK's LLM run: the runtime and invocation parameters repeat from run
    to run, the metadata, usage and times do not."""
    rid = uuid.uuid4()
    return {
        "id": rid,
        "trace_id": rid,
        "name": "ChatOpenAI",
        "run_type": "llm",
        "start_us": T0 + i,
        "session_name": "packed",
        "inputs": {"messages": [{"role": "user", "content": f"question {i}"}]},
        "extra": {
            "metadata": {"user_id": f"user-{i % 97}", "ls_model_name": "gpt-4o-mini", "ls_temperature": 0.2},
            "invocation_params": {
                "model": "gpt-4o-mini",
                "temperature": 0.2,
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather. Ünï"}}],
            },
            "runtime": {
                "sdk": "langsmith-py",
                "sdk_version": "0.15.1",
                "platform": "Linux-x86_64",
                "runtime": "python",
            },
            "usage": {"input_tokens": 100 + i % 50, "output_tokens": i % 30},
        },
        "serialized": {"lc": 1, "type": "constructor", "id": ["langchain", "chat_models", "openai", "ChatOpenAI"]},
        "events": [{"name": "start", "time": f"2026-12-07T21:31:{i % 60:02d}.493667+00:00"}],
    }


def stored(store: Any, rid: uuid.UUID) -> dict[str, bytes | str | None]:
    """The raw stored values of the packed columns of run ``rid``."""
    with store.db.read() as conn:
        row = conn.execute(
            select(*(cast(runs.c[c], LargeBinary).label(c) for c in PACKED)).where(runs.c.id == rid)
        ).one()
    return {c: None if row._mapping[c] is None else bytes(row._mapping[c]) for c in PACKED}


def dictionary_ids(store: Any) -> list[int]:
    with store.db.read() as conn:
        return list(conn.execute(select(json_dictionaries.c.id)).scalars())


def write(store: Any, ws: Any, n: int, start: int = 0) -> list[dict[str, Any]]:
    sent = [sdk_like(start + i) for i in range(n)]
    for i in range(0, n, 100):  # as the server applies them: a transaction per request body
        store.runs.apply(ws.id, sent[i : i + 100], [])
    return sent


def assert_reads_back(store: Any, ws: Any, sent: list[dict[str, Any]]) -> None:
    for rec in sent:
        got = store.runs.get(ws.id, rec["id"])
        assert got is not None
        assert {c: got[c] for c in PACKED} == {c: rec[c] for c in PACKED}


@pytest.fixture
def ws(store):
    return store.workspaces.ensure("default")


def test_values_are_packed_with_a_dictionary_trained_on_the_stores_own_values(store, ws) -> None:
    first = write(store, ws, RUNS_TO_TRAIN)
    assert dictionary_ids(store) == []  # trained from these values, stored with the next write
    assert all(v is not None and v[:1] in (b"{", b"[") for v in stored(store, first[0]["id"]).values())

    later = write(store, ws, 200, start=RUNS_TO_TRAIN)
    [dict_id] = dictionary_ids(store)
    sizes = {c: 0 for c in PACKED}
    for rec in later[101:]:  # the second body on: the first one stored the dictionary, packed before it existed
        raw = stored(store, rec["id"])
        for col, value in raw.items():
            assert value is not None and value[:4] == ZSTD_MAGIC
            assert zstandard.get_frame_parameters(value).dict_id == dict_id
            sizes[col] += len(value)
    text_sizes = {c: sum(len(json.dumps(r[c], ensure_ascii=False).encode()) for r in later[101:]) for c in PACKED}
    assert sizes["extra"] * 4 < text_sizes["extra"], (sizes, text_sizes)
    assert sum(sizes.values()) * 3 < sum(text_sizes.values()), (sizes, text_sizes)
    assert_reads_back(store, ws, first + later)


def test_a_patch_replaces_a_packed_value_and_null_stays_null(store, ws) -> None:
    write(store, ws, RUNS_TO_TRAIN + 100)
    rec = sdk_like(7)
    rec["serialized"] = None
    store.runs.apply(ws.id, [rec], [])
    extra = {**rec["extra"], "usage": {"input_tokens": 1, "output_tokens": 2}}
    store.runs.apply(ws.id, [], [{"id": rec["id"], "start_us": T0, "end_us": T0 + 5, "extra": extra}])
    got = store.runs.get(ws.id, rec["id"])
    assert got is not None and got["extra"] == extra and got["serialized"] is None and got["events"] == rec["events"]
    assert stored(store, rec["id"])["serialized"] is None


def test_another_process_reads_values_packed_with_a_dictionary_it_never_saw(store, ws, db_url: str) -> None:
    sent = write(store, ws, RUNS_TO_TRAIN + 300)
    [dict_id] = dictionary_ids(store)
    wanted = {str(r["id"]): {c: r[c] for c in PACKED} for r in sent[-3:]}
    script = (
        "import json, sys, uuid\n"
        "from tracetune.store import open_store\n"
        "s = open_store(sys.argv[1])\n"
        "ws = s.workspaces.ensure('default')\n"
        "cols = ('extra', 'serialized', 'events')\n"
        "out = {i: {c: s.runs.get(ws.id, uuid.UUID(i))[c] for c in cols} for i in sys.argv[2:]}\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, db_url, *wanted], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == wanted

    # a second store on the same database (as a replica would) packs with the stored dictionary: it trains none
    other = open_store(db_url, sqlite_synchronous="NORMAL")
    try:
        more = write(other, ws, RUNS_TO_TRAIN + 100, start=10_000)
        assert dictionary_ids(other) == [dict_id]
        assert zstandard.get_frame_parameters(stored(other, more[0]["id"])["extra"] or b"").dict_id == dict_id
    finally:
        other.close()
    assert_reads_back(store, ws, sent[-50:] + more[-50:])


def test_a_failed_transaction_stores_no_dictionary_and_names_none(store, ws) -> None:
    write(store, ws, RUNS_TO_TRAIN)
    doomed = [sdk_like(i) for i in range(100)]
    with pytest.raises(RuntimeError), store.db.write() as conn:
        store.runs.apply(ws.id, doomed, [], conn)  # carries the trained dictionary
        raise RuntimeError("the request failed after the write")
    assert dictionary_ids(store) == []
    assert store.runs.get(ws.id, doomed[0]["id"]) is None
    after = write(store, ws, 100, start=50_000)  # packed as JSON: no dictionary in use
    assert stored(store, after[-1]["id"])["extra"][:1] == b"{"  # type: ignore[index]
    write(store, ws, RUNS_TO_TRAIN + 100, start=60_000)  # samples again, trains again
    assert len(dictionary_ids(store)) == 1
    assert_reads_back(store, ws, after)


def test_rows_stored_before_the_packing_read_back(store, ws) -> None:
    """SQLite kept these columns' JSON as text, PostgreSQL's migration made it UTF-8 bytes: both read back."""
    rec = sdk_like(1)
    store.runs.apply(ws.id, [rec], [])
    with store.db.write() as conn:
        if store.db.dialect == "sqlite":
            conn.execute(text("UPDATE runs SET extra = :v"), {"v": json.dumps(rec["extra"])})
            assert conn.execute(text("SELECT typeof(extra) FROM runs")).scalar() == "text"
        else:
            conn.execute(text("UPDATE runs SET extra = convert_to(:v, 'UTF8')"), {"v": json.dumps(rec["extra"])})
    got = store.runs.get(ws.id, rec["id"])
    assert got is not None and got["extra"] == rec["extra"]


def test_downgrade_unpacks_every_value_to_json_text(db_url: str) -> None:
    from tests.store.test_migrations import _alembic

    store = open_store(db_url, sqlite_synchronous="NORMAL")
    ws = store.workspaces.ensure("default")
    try:
        sent = write(store, ws, RUNS_TO_TRAIN + 200)
        assert stored(store, sent[-1]["id"])["extra"][:4] == ZSTD_MAGIC  # type: ignore[index]
        _alembic(store.db.engine, "downgrade", "0013")
        with store.db.read() as conn:
            rows = conn.execute(
                text("SELECT id, CAST(extra AS TEXT), CAST(serialized AS TEXT), CAST(events AS TEXT) FROM runs")
            ).all()
        by_id = {uuid.UUID(str(r[0])): r[1:] for r in rows}
        for rec in sent:
            assert [json.loads(v) for v in by_id[rec["id"]]] == [rec[c] for c in PACKED]
    finally:
        store.close()


def test_unpack_refuses_a_dictionary_no_store_holds() -> None:
    dictionary = zstandard.train_dictionary(
        2048, [json.dumps({"k": i, "v": "x" * (i % 40)}).encode() for i in range(400)], dict_id=123_456_789
    )
    frame = zstandard.ZstdCompressor(dict_data=dictionary).compress(b'{"k": 1}')
    with pytest.raises(MissingDictionary, match="dictionary 123456789"):
        unpack(frame)


def test_repack_packs_what_was_stored_before_a_dictionary_and_trains_one(store, ws, monkeypatch) -> None:
    """An older store: values as JSON text (SQLite's old rows) or bytes, no dictionary. ``repack`` trains one from
    them, packs every value with it, and a second pass has nothing left to do."""
    from tracetune.store.dictionaries import JsonPacker

    with monkeypatch.context() as m:
        m.setattr(JsonPacker, "trained", lambda self: None)  # as before packing: stored as JSON bytes
        sent = write(store, ws, RUNS_TO_TRAIN + 150)
    old = sent[0]
    with store.db.write() as conn:  # one row as SQLite stored it before 0014: JSON text
        if store.db.dialect == "sqlite":
            conn.execute(
                text("UPDATE runs SET extra = :v WHERE id = :i"), {"v": json.dumps(old["extra"]), "i": old["id"].hex}
            )
    assert dictionary_ids(store) == []
    fresh = open_store(str(store.db.engine.url), sqlite_synchronous="NORMAL")  # a new process's store (the CLI)
    try:
        seen: list[tuple[int, int]] = []
        rewritten = fresh.runs.repack(batch=100, progress=lambda read, total: seen.append((read, total)))
        assert rewritten == len(sent)
        total = len(sent)
        assert seen[-1] == (total, total) and [r for r, _ in seen] == sorted(r for r, _ in seen)
        [dict_id] = dictionary_ids(fresh)
        for rec in sent[::25]:
            for value in stored(fresh, rec["id"]).values():
                assert value is not None and zstandard.get_frame_parameters(value).dict_id == dict_id
        assert_reads_back(fresh, ws, sent)
        assert fresh.runs.repack(batch=100) == 0  # nothing left
        assert_reads_back(store, ws, sent[:20])  # and the server's store reads them too
    finally:
        fresh.close()


def test_repack_leaves_null_values_and_values_already_packed(store, ws) -> None:
    sent = write(store, ws, RUNS_TO_TRAIN + 250)  # the last body's values packed with the dictionary
    rec = sdk_like(99_000)
    rec["serialized"] = None
    rec["events"] = None
    store.runs.apply(ws.id, [rec], [])
    before = stored(store, sent[-1]["id"])
    rewritten = store.runs.repack(batch=50)
    assert 0 < rewritten < len(sent)  # the values stored before the dictionary
    assert stored(store, sent[-1]["id"]) == before
    after = stored(store, rec["id"])
    assert after["serialized"] is None and after["events"] is None
    assert_reads_back(store, ws, [*sent, rec])
