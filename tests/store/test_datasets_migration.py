"""Migrations 0002 (datasets) and 0010 (datasets hold versioned examples) on both dialects: a blank database
reaches the head; a database at 0001 holding runs, feedback and projects upgrades without losing or changing a
row; datasets written in 0002's shape come back through the head's store as the same versions and the same
records, byte for byte; downgrading to 0009 gives 0002's rows back, and to 0001 drops only the dataset tables."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, inspect, select

from tests.dataset_support import chain_root, chat_run, ingest
from tracetune.convert.examples import iter_dataset_records
from tracetune.store import Store
from tracetune.store.engine import MIGRATIONS_DIR, Database, create_store_engine, current_revision, upgrade_to_head
from tracetune.store.schema import metadata
from tracetune.store.sqlutil import utcnow

OLD_TABLES = ("workspaces", "api_keys", "projects", "runs", "run_tags", "run_metadata", "feedback")
LATER_COLUMNS = {"projects": ("end_time", "reference_dataset_id")}  # added to the 0001 tables later (0006, 0010)
OLD_DATASET_TABLES = {"datasets", "dataset_records"}  # 0002 to 0009
NEW_TABLES = {"datasets", "dataset_versions", "examples"}  # 0010
PACKED = ("extra", "serialized", "events")  # runs columns 0014 packs


def _alembic(engine: Engine, action: str, target: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, target)


def _dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the 0001 tables, in the columns 0001 has (later migrations add some, e.g. projects.end_time)."""
    with engine.connect() as conn:
        out = {}
        for name in OLD_TABLES:
            table = metadata.tables[name]
            present = {c["name"]: c["type"] for c in inspect(conn).get_columns(name)}
            old_columns = [
                # before 0014, PostgreSQL's runs.extra, serialized and events are json columns: read them as such
                sa.type_coerce(c, sa.JSON(none_as_null=True)).label(c.name)
                if name == "runs" and c.name in PACKED and not isinstance(present[c.name], sa.LargeBinary)
                else c
                for c in table.c
                if c.name in present and c.name not in LATER_COLUMNS.get(name, ())
            ]
            out[name] = sorted((tuple(r) for r in conn.execute(select(*old_columns))), key=repr)
        return out


def _ingest_at_0001(engine: Engine, ws: uuid.UUID, sent: list[dict[str, Any]], project: str, tmp: Path) -> None:
    """``sent`` stored in the 0001 database as 0001 holds runs: ingested by today's code into a scratch store, then
    the project, run and side rows copied over with 0001's column types (0014 packs runs.extra, serialized and
    events, which 0001 declares JSON)."""
    from tracetune.store import open_store

    scratch = open_store(f"sqlite:///{tmp / 'scratch.db'}", sqlite_synchronous="OFF")
    try:
        with scratch.db.write() as conn:  # the same workspace id as the 0001 database's
            conn.execute(metadata.tables["workspaces"].delete())
            conn.execute(metadata.tables["workspaces"].insert().values(id=ws, name="default", created_at=utcnow()))
        ingest(scratch, ws, sent, project)
        with scratch.db.read() as src, engine.begin() as dst:
            for name in ("projects", "runs", "run_tags", "run_metadata"):
                present = {c["name"] for c in inspect(dst).get_columns(name)}
                columns = [c for c in metadata.tables[name].c if c.name in present]
                target = sa.table(
                    name,
                    *(sa.column(c.name, sa.JSON(none_as_null=True) if c.name in PACKED else c.type) for c in columns),
                )
                rows = [dict(r._mapping) for r in src.execute(select(*columns))]
                dst.execute(target.insert(), rows)
    finally:
        scratch.close()


def test_blank_database_reaches_the_head(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_store_engine(db_url)
    try:
        upgrade_to_head(engine)
        assert (current_revision(engine) or "") >= "0010"
        tables = set(inspect(engine).get_table_names())
        assert tables >= NEW_TABLES and "dataset_records" not in tables
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
        uniques = inspect(engine).get_unique_constraints("datasets")
        assert [u["column_names"] for u in uniques] == [["workspace_id", "name"]]
    finally:
        engine.dispose()


RECORDS = [  # 0002 records as the exporter wrote them (openai and sharegpt formats), and their splits
    (
        "train",
        {
            "messages": [
                {"role": "user", "content": "weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "18C"},
                {"role": "assistant", "content": "18C in Paris."},
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        },
    ),
    ("validation", {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}),
    ("train", {"conversations": [{"from": "human", "value": "2+2"}, {"from": "gpt", "value": "4"}]}),
]


def _write_0002_datasets(engine: Engine, ws: uuid.UUID) -> dict[int, uuid.UUID]:
    """Two versions of dataset "d" as 0002 stores them: v1 holds the first two records, v2 all three."""
    old = sa.table(
        "datasets",
        *(sa.column(c, sa.Uuid()) for c in ("id", "workspace_id")),
        *(sa.column(c) for c in ("name", "version", "record_count", "train_count", "validation_count")),
        sa.column("created_at", sa.DateTime(timezone=True)),
        *(sa.column(c, sa.JSON()) for c in ("selection", "options", "summary")),
    )
    records = sa.table(
        "dataset_records",
        *(sa.column(c, sa.Uuid()) for c in ("dataset_id", "trace_id")),
        *(sa.column(c) for c in ("line", "split")),
        *(sa.column(c, sa.JSON()) for c in ("run_ids", "record")),
    )
    ids = {}
    with engine.begin() as conn:
        for version, recs in ((1, RECORDS[:2]), (2, RECORDS)):
            ids[version] = uuid.uuid4()
            train = sum(split == "train" for split, _ in recs)
            conn.execute(
                old.insert().values(
                    id=ids[version],
                    workspace_id=ws,
                    name="d",
                    version=version,
                    record_count=len(recs),
                    train_count=train,
                    validation_count=len(recs) - train,
                    created_at=utcnow(),
                    selection={"project": "kept"},
                    options={"format": "openai"},
                    summary={"written": len(recs)},
                )
            )
            conn.execute(
                records.insert(),
                [
                    {
                        "dataset_id": ids[version],
                        "line": i,
                        "split": split,
                        "trace_id": None,
                        "run_ids": [str(uuid.uuid4())],
                        "record": rec,
                    }
                    for i, (split, rec) in enumerate(recs, 1)
                ],
            )
    return ids


def _records(store: Store, ws: uuid.UUID, version_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    return [(r["split"], r["record"]) for r in iter_dataset_records(store, ws, version_id)]


def test_a_database_at_0001_holding_runs_upgrades_without_losing_a_row(db_url: str, tmp_path: Path) -> None:
    engine = create_store_engine(db_url)
    try:
        _alembic(engine, "upgrade", "0001")
        assert not NEW_TABLES & set(inspect(engine).get_table_names())
        old = Store(Database(engine))  # the 0001 tables are what these repositories write, but for runs (0014)
        ws = old.workspaces.ensure("default").id
        with engine.begin() as conn:  # a key as 0001 stores it (the repository's create_key also sets 0005's flag)
            conn.execute(
                metadata.tables["api_keys"]
                .insert()
                .values(id=uuid.uuid4(), workspace_id=ws, prefix="tt_0001", key_hash="0" * 64, created_at=utcnow())
            )
        root = chain_root()
        sent = [root, chat_run("q1", "a1", trace=root, thread="t1"), chat_run("q2", "a2", n=1)]
        sent[2]["tags"] = ["tagged"]
        _ingest_at_0001(engine, ws, sent, "kept", tmp_path)
        old.feedback.create(ws, {"id": uuid.uuid4(), "run_id": uuid.UUID(sent[1]["id"]), "key": "k", "score": 1.0})
        before = _dump(engine)
        assert all(before[t] for t in OLD_TABLES), {t: len(rows) for t, rows in before.items()}

        _alembic(engine, "upgrade", "0009")
        ids = _write_0002_datasets(engine, ws)
        _alembic(engine, "upgrade", "head")
        assert _dump(engine) == before
        store = Store(Database(engine))
        versions = store.datasets.list(ws)
        assert [(v["id"], v["name"], v["version"]) for v in versions] == [(ids[2], "d", 2), (ids[1], "d", 1)]
        assert versions[1]["selection"] == {"project": "kept"} and versions[0]["train_count"] == 2
        assert _records(store, ws, ids[1]) == [(s, r) for s, r in RECORDS[:2]]
        assert _records(store, ws, ids[2]) == [(s, r) for s, r in RECORDS]
        made = store.datasets.create(
            ws, name="d", selection={}, options={}, summary={}, records=[], to_example=lambda r: (r, None)
        )
        assert made["version"] == 3 and made["dataset_id"] == versions[0]["dataset_id"]
        assert _records(store, ws, made["id"]) == [] and _records(store, ws, ids[2])  # v2 is still readable

        _alembic(engine, "downgrade", "0009")
        with engine.connect() as conn:
            back = conn.execute(sa.text("SELECT id, version, record_count FROM datasets ORDER BY version")).all()
            lines = conn.execute(
                sa.text("SELECT split, record FROM dataset_records WHERE dataset_id = :d ORDER BY line"),
                {"d": ids[2] if engine.dialect.name == "postgresql" else ids[2].hex},
            ).all()
        expected = [(ids[1], 1, 2), (ids[2], 2, 3), (made["id"], 3, 0)]
        assert [(uuid.UUID(str(r[0])), r[1], r[2]) for r in back] == expected
        assert [(s, r if isinstance(r, dict) else json.loads(r)) for s, r in lines] == list(RECORDS)

        _alembic(engine, "downgrade", "0001")
        assert not (NEW_TABLES | OLD_DATASET_TABLES) & set(inspect(engine).get_table_names())
        assert _dump(engine) == before
    finally:
        engine.dispose()
