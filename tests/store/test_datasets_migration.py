"""Migration 0002 (datasets) on both dialects: a blank database reaches it; a database at 0001 holding runs,
feedback and projects upgrades to it without losing or changing a row, and can export into the new tables;
downgrading drops only the dataset tables."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, select

from tests.dataset_support import chain_root, chat_run, ingest
from tracetune.store import Store
from tracetune.store.engine import MIGRATIONS_DIR, Database, create_store_engine, current_revision, upgrade_to_head
from tracetune.store.schema import metadata
from tracetune.store.sqlutil import utcnow

OLD_TABLES = ("workspaces", "api_keys", "projects", "runs", "run_tags", "run_metadata", "feedback")
LATER_COLUMNS = {"projects": ("end_time",)}  # added to the 0001 tables by later migrations (0006)
NEW_TABLES = {"datasets", "dataset_records"}


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
            present = {c["name"] for c in inspect(conn).get_columns(name)}
            old_columns = [c for c in table.c if c.name in present and c.name not in LATER_COLUMNS.get(name, ())]
            out[name] = sorted((tuple(r) for r in conn.execute(select(*old_columns))), key=repr)
        return out


def test_blank_database_reaches_0002(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_store_engine(db_url)
    try:
        upgrade_to_head(engine)
        assert (current_revision(engine) or "") >= "0002"  # 0002 or a later head
        assert set(inspect(engine).get_table_names()) >= NEW_TABLES
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
        uniques = inspect(engine).get_unique_constraints("datasets")
        assert [u["column_names"] for u in uniques] == [["workspace_id", "name", "version"]]
    finally:
        engine.dispose()


def test_a_database_at_0001_holding_runs_upgrades_without_losing_a_row(db_url: str, tmp_path: Path) -> None:
    engine = create_store_engine(db_url)
    try:
        _alembic(engine, "upgrade", "0001")
        assert not NEW_TABLES & set(inspect(engine).get_table_names())
        old = Store(Database(engine))  # the 0001 tables are what these repositories write
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
        ingest(old, ws, sent, "kept")
        old.feedback.create(ws, {"id": uuid.uuid4(), "run_id": uuid.UUID(sent[1]["id"]), "key": "k", "score": 1.0})
        before = _dump(engine)
        assert all(before[t] for t in OLD_TABLES), {t: len(rows) for t, rows in before.items()}

        _alembic(engine, "upgrade", "0002")
        assert current_revision(engine) == "0002"
        assert _dump(engine) == before
        upgraded = Store(Database(engine))
        made = upgraded.datasets.create(ws, name="d", selection={}, options={}, summary={}, records=[])
        assert made["version"] == 1 and upgraded.datasets.list(ws) == [made]

        _alembic(engine, "downgrade", "0001")
        assert not NEW_TABLES & set(inspect(engine).get_table_names())
        assert _dump(engine) == before
    finally:
        engine.dispose()
