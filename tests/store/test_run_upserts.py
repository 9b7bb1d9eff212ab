"""``RunStore.apply`` on both dialects: the fill/override rules hold whatever mix of shapes one call carries, and
the metadata side rows end where the rules say (including the rows the store skips writing)."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from tracetune.store.jsonvalues import canonical_json
from tracetune.store.runs import metadata_value
from tracetune.store.schema import run_metadata, run_tags, runs

T0 = 1_795_000_000_000_000


def post(rid: uuid.UUID, **fields: Any) -> dict[str, Any]:
    return {"id": rid, "trace_id": rid, "name": "r", "run_type": "llm", "start_us": T0, "session_name": "p", **fields}


def patch(rid: uuid.UUID, **fields: Any) -> dict[str, Any]:
    """A patch record as ``run_record`` makes them: with a start time (read off the dotted order)."""
    return {"id": rid, "start_us": T0, **fields}


def meta_of(store, ws, rid: uuid.UUID) -> dict[str, str]:
    with store.db.read() as conn:
        rows = conn.execute(
            select(run_metadata.c.key, run_metadata.c.value).where(
                run_metadata.c.workspace_id == ws.id, run_metadata.c.run_id == rid
            )
        ).all()
    return dict(rows)


def tags_of(store, ws, rid: uuid.UUID) -> set[str]:
    with store.db.read() as conn:
        rows = conn.execute(
            select(run_tags.c.tag).where(run_tags.c.workspace_id == ws.id, run_tags.c.run_id == rid)
        ).all()
    return {r.tag for r in rows}


@pytest.fixture
def ws(store):
    return store.workspaces.ensure("default")


def test_patch_overrides_metadata_and_post_fills(store, ws) -> None:
    rid = uuid.uuid4()
    store.runs.apply(ws.id, [post(rid, extra={"metadata": {"a": 1, "b": "x"}})], [])
    store.runs.apply(ws.id, [], [patch(rid, end_us=T0 + 5, extra={"metadata": {"a": 1, "b": "y", "c": [1]}})])
    assert meta_of(store, ws, rid) == {"a": "1", "b": '"y"', "c": "[1]"}
    store.runs.apply(ws.id, [post(rid, extra={"metadata": {"b": "z", "d": None}})], [])  # a late duplicate post
    assert meta_of(store, ws, rid) == {"a": "1", "b": '"y"', "c": "[1]", "d": "null"}


def test_post_and_patch_of_a_stored_run_in_one_call(store, ws) -> None:
    """The post's row for a key the same call's patch also sets is not written: the patch decides, even over
    a value stored before; a key only the post gives is filled, never overriding what is stored."""
    rid = uuid.uuid4()
    store.runs.apply(ws.id, [], [patch(rid, start_us=T0, extra={"metadata": {"k": "old", "only_post": "old"}})])
    store.runs.apply(
        ws.id,
        [post(rid, extra={"metadata": {"k": "post", "only_post": "post", "new": 1}})],
        [patch(rid, end_us=T0 + 9, extra={"metadata": {"k": "patch"}})],
    )
    assert meta_of(store, ws, rid) == {"k": '"patch"', "only_post": '"old"', "new": "1"}


def test_patches_of_different_shapes_in_one_call(store, ws) -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store.runs.apply(
        ws.id,
        [post(r, inputs={"q": str(r)}, tags=["t1"]) for r in (a, b, c)],
        [],
    )
    store.runs.apply(
        ws.id,
        [],
        [
            patch(a, end_us=T0 + 1),
            patch(b, outputs={"o": 1}, error="boom", total_tokens=7, tags=["t2"]),
            patch(c),  # gives nothing that could change the run
        ],
    )
    ra, rb, rc = (store.runs.get(ws.id, r) for r in (a, b, c))
    assert (ra["end_us"], ra["outputs"], ra["inputs"]) == (T0 + 1, None, {"q": str(a)})
    assert (rb["end_us"], rb["outputs"], rb["error"], rb["total_tokens"]) == (None, {"o": 1}, "boom", 7)
    assert rb["inputs"] == {"q": str(b)} and rb["name"] == "r" and rb["start_us"] == T0
    assert {k: rc[k] for k in ("name", "run_type", "start_us", "end_us", "inputs")} == {
        "name": "r",
        "run_type": "llm",
        "start_us": T0,
        "end_us": None,
        "inputs": {"q": str(c)},
    }
    assert tags_of(store, ws, a) == {"t1"} and tags_of(store, ws, b) == {"t1", "t2"}


def test_posts_of_different_shapes_fill_only_what_is_missing(store, ws) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    store.runs.apply(ws.id, [], [patch(a, start_us=T0, end_us=T0 + 3, name="patched"), patch(b, start_us=T0)])
    store.runs.apply(
        ws.id,
        [post(a, end_us=T0 + 99, inputs={"x": 1}), post(b, serialized={"s": 1}, thread_id="th")],
        [],
    )
    ra, rb = store.runs.get(ws.id, a), store.runs.get(ws.id, b)
    assert (ra["name"], ra["end_us"], ra["inputs"]) == ("patched", T0 + 3, {"x": 1})
    assert (rb["name"], rb["serialized"], rb["thread_id"]) == ("r", {"s": 1}, "th")


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "",
        "é ü 漢字",
        'quo"te',
        "back\\slash",
        "new\nline",
        "tab\t",
        "\x00nul",
        "\x7f",
        "\u2028",
        "\ud800",
        "\xa0nbsp",
        0,
        -5,
        2**70,
        True,
        False,
        None,
        0.2,
        -0.0,
        1e16,
        1.5e-7,
        3.0,
        math.nan,
        math.inf,
        -math.inf,
        {"b": 1, "a": [1, "x"]},
        [],
        [None, 1.0],
    ],
)
def test_metadata_text_is_canonical_json(value: Any) -> None:
    assert metadata_value(value) == canonical_json(value)


def test_project_made_in_a_rolled_back_transaction_is_made_again(store, ws) -> None:
    """Rows are bound outside the transaction only for projects this store has committed runs to; a
    project created by a transaction that then failed is not taken for known."""
    lost = uuid.uuid4()
    with pytest.raises(RuntimeError), store.db.write() as conn:
        store.runs.apply(ws.id, [post(lost, session_name="rolled-back")], [], conn)
        raise RuntimeError("after the rows, before the commit")
    kept = uuid.uuid4()
    store.runs.apply(ws.id, [post(kept, session_name="rolled-back")], [])
    store.runs.apply(ws.id, [], [patch(kept, end_us=T0 + 1, session_name="rolled-back")])  # now a known name
    assert store.runs.get(ws.id, lost) is None
    row = store.runs.get(ws.id, kept)
    assert row["end_us"] == T0 + 1
    assert store.projects.get(ws.id, row["project_id"])["name"] == "rolled-back"


def test_bare_number_json_values_read_back(store) -> None:
    """SQLite gives a column declared JSON numeric affinity: '12' is stored as 12 and must still read back."""
    import uuid as _uuid

    ws = store.workspaces.ensure("default")
    for i, value in enumerate([12, 1.5, "12", True, None, [1, 2], {"a": 1}]):
        fid = _uuid.uuid4()
        row = store.feedback.create(ws.id, {"id": fid, "key": f"k{i}", "value": value, "correction": value})
        assert row["value"] == value and row["correction"] == value


AWKWARD = ['a "quoted" {brace}, comma', "back\\slash", "NULL", "", "ünïcödé ✓", "tab\tnew\nline"]


def test_every_value_kind_is_stored_as_given_by_the_bulk_write(store, ws) -> None:
    """The bulk write (PostgreSQL: one statement, an array per column) keeps text that array literals would
    mangle, JSON arrays (not taken for array dimensions), JSON scalars, NULL columns, 64-bit integers and numbers
    of mixed types (which psycopg refuses in one array)."""
    rows = {}
    for i, text in enumerate(AWKWARD):
        rid = uuid.uuid4()
        rows[rid] = post(
            rid,
            name=text or "empty",
            error=text,
            start_us=T0 + i,
            end_us=2**62 + i,
            inputs={"text": text, "list": [text, None, 1.5]},
            outputs=[text, {"k": text}],
            events=[{"name": text}],
            tags=[text or "t", "x"],
            serialized="just a string" if i % 2 else None,
            total_tokens=i,
            prompt_tokens=float(i) if i % 4 in (1, 2) else i,  # ints and floats mixed in one statement
            extra={"metadata": {"k": text, "n": [i]}},
        )
    store.runs.apply(ws.id, list(rows.values()), [])
    with store.db.read() as conn:
        got = {r.id: r for r in conn.execute(select(runs).where(runs.c.workspace_id == ws.id))}
    assert set(got) == set(rows)
    for rid, sent in rows.items():
        row = got[rid]
        for col in ("name", "error", "start_us", "end_us", "inputs", "outputs", "events", "tags", "total_tokens"):
            assert getattr(row, col) == sent[col], col
        assert row.serialized == sent["serialized"] and row.parent_run_id is None
        assert row.prompt_tokens == sent["prompt_tokens"] and isinstance(row.prompt_tokens, int)
        assert tags_of(store, ws, rid) == set(sent["tags"])
        assert meta_of(store, ws, rid) == {
            "k": canonical_json(sent["extra"]["metadata"]["k"]),
            "n": canonical_json(sent["extra"]["metadata"]["n"]),
        }


def test_a_refused_bulk_write_is_sqlalchemys_error_and_writes_nothing(store, ws) -> None:
    """PostgreSQL refuses an over-long name (SQLite does not check lengths). The error is SQLAlchemy's DBAPIError,
    as write_retrying needs to tell a deadlock victim (run again) from other errors, and no row of the call is
    kept."""
    from sqlalchemy.exc import DBAPIError

    if store.db.dialect != "postgresql":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    good, bad = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(DBAPIError, match="too long"):
        store.runs.apply(ws.id, [post(good), post(bad, name="x" * 501)], [])
    with store.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar() == 0
