"""Alembic migrations on both dialects: a blank database reaches head and matches ``store/schema.py``;
reopening (which upgrades again) keeps every row; ``tracetune db upgrade`` does the same from the CLI."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, inspect, select, text
from typer.testing import CliRunner

from tracetune.store import open_store
from tracetune.store.blobs import Blobs
from tracetune.store.engine import MIGRATIONS_DIR, create_store_engine, current_revision, upgrade_to_head
from tracetune.store.schema import metadata

TABLES = {"workspaces", "api_keys", "projects", "runs", "run_tags", "run_metadata", "feedback"}
# 0002, 0010; empty in _fill (tests/store/test_datasets_migration.py)
DATASET_TABLES = {"datasets", "dataset_versions", "examples", "comparative_experiments"}
FILE_TABLES = {"files"}  # 0003; empty in _fill (tests/server/test_openai_files.py)
JOB_TABLES = {"fine_tuning_jobs", "fine_tuning_job_events", "fine_tuning_checkpoints", "fine_tuned_models"}  # 0004
FLAG_TABLES = {"store_flags"}  # 0005
TOKEN_TABLES = {"feedback_tokens", "feedback_configs"}  # 0007, 0008 (0006 adds a column)
QUEUE_TABLES = {"annotation_queues", "annotation_queue_items"}  # 0009
ALIAS_TABLES = {"model_aliases"}  # 0011 (tests/store/test_aliases_store.py)
AUTOMATION_TABLES = {"automations", "automation_firings", "automation_runs"}  # 0012 (tests/loop/)
DICTIONARY_TABLES = {"json_dictionaries"}  # 0014 (tests/store/test_packing.py)
ALL_TABLES = (
    TABLES
    | DATASET_TABLES
    | FILE_TABLES
    | JOB_TABLES
    | FLAG_TABLES
    | TOKEN_TABLES
    | QUEUE_TABLES
    | ALIAS_TABLES
    | AUTOMATION_TABLES
    | DICTIONARY_TABLES
)
ALL_TABLES |= {"alembic_version"}


def _alembic(engine: Engine, action: str, target: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, target)


def _script():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


def head() -> str:
    [only] = _script().get_heads()
    return only  # type: ignore[no-any-return]


def _dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order."""
    out = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = conn.execute(select(table)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def test_blank_database_upgrades_to_head_and_matches_the_schema(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_store_engine(db_url)
    try:
        assert inspect(engine).get_table_names() == []
        assert current_revision(engine) is None
        upgrade_to_head(engine)
        assert set(inspect(engine).get_table_names()) == ALL_TABLES
        assert current_revision(engine) == head()
        with engine.connect() as conn:  # the migrations build exactly what schema.py declares
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
        for table in metadata.sorted_tables:
            assert {c["name"] for c in inspect(engine).get_columns(table.name)} == set(table.c.keys())
    finally:
        engine.dispose()


def test_replicas_started_together_upgrade_a_blank_database_one_at_a_time(db_url: str) -> None:
    """Servers and workers started at once on a new store: each process upgrades in turn (a lock), so none fails
    on a table another made meanwhile (PostgreSQL refused the second CREATE TABLE alembic_version before)."""
    import threading

    engines = [create_store_engine(db_url) for _ in range(4)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def upgrade(engine) -> None:
        start.wait()
        try:
            upgrade_to_head(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(engine,)) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        assert {current_revision(engine) for engine in engines} == {head()}
    finally:
        for engine in engines:
            engine.dispose()


def test_migrations_are_numbered_and_form_one_chain() -> None:
    revisions = list(_script().walk_revisions())
    assert [r.revision for r in reversed(revisions)] == [f"{i:04d}" for i in range(1, len(revisions) + 1)]
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        number, _, name = path.stem.partition("_")
        assert number.isdigit() and name, path.name  # NNNN_what_it_does.py


def _fill(store) -> dict[str, Any]:
    """Some of everything, written through the real ingest path."""
    from tracetune.ingest.service import IngestService

    key, _ = store.workspaces.create_key("ws-mig", name="k")
    ws = store.workspaces.get("ws-mig")
    store.projects.create(ws.id, "explicit", description="made by hand", extra={"metadata": {"a": 1}})
    root, child = str(uuid.uuid4()), str(uuid.uuid4())
    service = IngestService(store, Blobs(Path("/nonexistent")))
    service.batch(
        ws.id,
        {
            "post": [
                {
                    "id": root,
                    "name": "root",
                    "run_type": "chain",
                    "start_time": "2026-01-01T00:00:00Z",
                    "session_name": "p",
                    "tags": ["t1", "t2"],
                    "inputs": {"q": "é ✓"},
                    "extra": {"metadata": {"user": "u1", "thread_id": "th"}},
                },
                {
                    "id": child,
                    "parent_run_id": root,
                    "trace_id": root,
                    "name": "llm",
                    "run_type": "llm",
                    "start_time": "2026-01-01T00:00:01Z",
                    "end_time": "2026-01-01T00:00:02Z",
                    "session_name": "p",
                    "outputs": {"usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
                },
            ],
            "patch": [{"id": root, "end_time": "2026-01-01T00:00:03Z", "error": "boom"}],
        },
    )
    service.feedback(ws.id, {"key": "score", "score": 0.5, "run_id": root, "value": {"why": ["x"]}})
    return {"key": key, "ws": ws, "root": uuid.UUID(root), "child": uuid.UUID(child)}


def test_reopening_a_store_keeps_every_row(db_url: str) -> None:
    store = open_store(db_url, sqlite_synchronous="NORMAL")
    made = _fill(store)
    before = _dump(store.db.engine)
    root_before = store.runs.get(made["ws"].id, made["root"])
    store.close()
    assert all(before[t] for t in TABLES), {t: len(rows) for t, rows in before.items()}

    for _ in range(2):  # opening upgrades again: idempotent
        store = open_store(db_url, sqlite_synchronous="NORMAL")
        try:
            assert _dump(store.db.engine) == before
            assert current_revision(store.db.engine) == head()
            assert store.runs.get(made["ws"].id, made["root"]) == root_before
            assert store.workspaces.access(made["key"]) == (made["ws"], True)
        finally:
            store.close()


def test_rows_written_at_each_revision_survive_the_upgrades(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        chain = [r.revision for r in reversed(list(_script().walk_revisions()))]
        _alembic(engine, "upgrade", chain[0])
        wid = uuid.uuid4()
        with engine.begin() as conn:  # raw SQL: the schema as of the first revision
            conn.execute(
                text("INSERT INTO workspaces (id, name, created_at) VALUES (:id, 'old', :t)"),
                {"id": wid.hex if engine.dialect.name == "sqlite" else wid, "t": "2026-01-01 00:00:00"},
            )
        for revision in [*chain[1:], "head"]:
            _alembic(engine, "upgrade", revision)
            with engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(metadata.tables["workspaces"])).scalar() == 1
        assert current_revision(engine) == head()
        store = open_store(db_url)
        try:
            assert store.workspaces.get("old").id == wid
        finally:
            store.close()
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        upgrade_to_head(engine)
        _alembic(engine, "downgrade", "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert current_revision(engine) is None
        upgrade_to_head(engine)
        assert set(inspect(engine).get_table_names()) == ALL_TABLES
    finally:
        engine.dispose()


@pytest.mark.parametrize("twice", [False, True])
def test_db_upgrade_cli(db_url: str, tmp_path: Path, twice: bool) -> None:
    from tracetune.cli import app

    runner = CliRunner()
    args = ["db", "upgrade", "--database-url", db_url, "--home", str(tmp_path)]
    for _ in range(2 if twice else 1):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert f"at revision {head()}" in result.stdout
    engine = create_store_engine(db_url)
    try:
        assert set(inspect(engine).get_table_names()) == ALL_TABLES
    finally:
        engine.dispose()


def test_db_upgrade_cli_default_database_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracetune.cli import app

    monkeypatch.delenv("TRACETUNE_DATABASE_URL", raising=False)
    monkeypatch.setenv("TRACETUNE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "tracetune.db").exists()
    assert f"at revision {head()}" in result.stdout


@pytest.mark.parametrize("had_keys", [False, True])
def test_a_store_that_had_keys_before_0005_stays_keyed(db_url: str, had_keys: bool) -> None:
    """0005 records the auth mode; a store whose keys were all revoked before it must not come out open."""
    engine = create_store_engine(db_url)
    try:
        _alembic(engine, "upgrade", "0004")
        if had_keys:
            wid, kid = uuid.uuid4(), uuid.uuid4()
            as_id = (lambda u: u.hex) if engine.dialect.name == "sqlite" else (lambda u: u)
            with engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO workspaces (id, name, created_at) VALUES (:id, 'w', :t)"),
                    {"id": as_id(wid), "t": "2026-01-01 00:00:00"},
                )
                conn.execute(
                    text(
                        "INSERT INTO api_keys (id, workspace_id, prefix, key_hash, created_at, revoked_at) "
                        "VALUES (:id, :w, 'tt_abcdefg', :h, :t, :t)"
                    ),
                    {"id": as_id(kid), "w": as_id(wid), "h": "0" * 64, "t": "2026-01-01 00:00:00"},
                )
    finally:
        engine.dispose()
    store = open_store(db_url)
    try:
        assert store.workspaces.auth_required() is had_keys
    finally:
        store.close()


def test_the_runs_sort_orders_read_their_index_after_the_migrations(tmp_path: Path) -> None:
    """The migration's index expressions are the ones the query orders by (SQLite's planner matches them word for
    word; alembic cannot compare expression indexes): each order walks its index, no sort of the project's runs."""
    from tracetune.query.runs_query import SORT_KEYS, RunQuery, build_statement

    engine = create_store_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    try:
        upgrade_to_head(engine)
        with engine.connect() as conn:
            for sort in SORT_KEYS:
                for order in ("desc", "asc"):
                    query = RunQuery(project_ids=[uuid.uuid4()], sort=sort, order=order, run_type="llm", limit=50)
                    literal = {"literal_binds": True}
                    statement = build_statement(uuid.uuid4(), query).compile(conn, compile_kwargs=literal)
                    plan = " | ".join(r[-1] for r in conn.execute(text(f"EXPLAIN QUERY PLAN {statement}")))
                    assert "USING INDEX ix_runs_project_" in plan and "TEMP B-TREE" not in plan, (sort, plan)
    finally:
        engine.dispose()
