"""datasets hold versioned examples (LangSmith's datasets API and tracetune's exports share them); experiments

A 0002 dataset row was one version of a name; its records were the version's lines. Now a dataset is the name
(one row per workspace and name), ``dataset_versions`` are its versions (keeping the 0002 ids, which jobs and
files name), and ``examples`` are its records with validity intervals: a record of version v is valid from v until
the next version of that name (exports replace the whole set). A record is split into the example's inputs (every
message but the last, and the record's other keys) and outputs (the last message); the split becomes the
example's split list. ``projects.reference_dataset_id`` makes a project an experiment over a dataset;
``comparative_experiments`` compare experiments over one dataset (LangSmith's pairwise evaluation).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 09:30:00.000000
"""

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_BATCH = 500
_LISTS = ("messages", "conversations")  # the record formats' turn lists: openai/hf, sharegpt


def _split_record(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The same split ``tracetune.convert.examples.example_from_record`` makes (frozen here, as migrations are)."""
    for key in _LISTS:
        turns = record.get(key)
        if isinstance(turns, list) and turns:
            return {**record, key: turns[:-1]}, {key[:-1]: turns[-1]}
    return dict(record), None


def _table(name: str, uuids: str, jsons: str, times: str, plain: str) -> sa.TableClause:
    """A typed table clause (reflection would not bring back the Uuid/JSON types on SQLite)."""
    return sa.table(
        name,
        *(sa.column(c, sa.Uuid()) for c in uuids.split()),
        *(sa.column(c, sa.JSON()) for c in jsons.split()),
        *(sa.column(c, sa.DateTime(timezone=True)) for c in times.split()),
        *(sa.column(c) for c in plain.split()),
    )


_DATASETS = ("datasets", "id workspace_id", "metadata", "created_at modified_at", "name data_type version")
_VERSIONS = (
    "dataset_versions",
    "id dataset_id workspace_id",
    "tags selection options summary",
    "as_of",
    "version source record_count train_count validation_count",
)
_EXAMPLES = (
    "examples",
    "id dataset_id workspace_id source_run_id trace_id",
    "inputs outputs metadata splits run_ids",
    "created_at modified_at",
    "line valid_from valid_to",
)


def _utc(value: Any) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _create_tables() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("data_type", sa.String(length=16), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("inputs_schema", sa.JSON(), nullable=True),
        sa.Column("outputs_schema", sa.JSON(), nullable=True),
        sa.Column("transformations", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], name=op.f("fk_datasets_workspace_id_workspaces")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_datasets_workspace_id_name")),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("train_count", sa.Integer(), nullable=False),
        sa.Column("validation_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_versions_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
        sa.UniqueConstraint("dataset_id", "version", name=op.f("uq_dataset_versions_dataset_id_version")),
    )
    op.create_table(
        "examples",
        sa.Column("row_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=True),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("splits", sa.JSON(), nullable=False),
        sa.Column("source_run_id", sa.Uuid(), nullable=True),
        sa.Column("run_ids", sa.JSON(), nullable=True),
        sa.Column("trace_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_from", sa.Integer(), nullable=False),
        sa.Column("valid_to", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_examples_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("row_id", name=op.f("pk_examples")),
    )
    op.create_index("ix_examples_current", "examples", ["dataset_id", "valid_to", "line"])
    op.create_index("ix_examples_id", "examples", ["id", "valid_from"])
    op.create_table(
        "comparative_experiments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("reference_dataset_id", sa.Uuid(), nullable=False),
        sa.Column("experiment_ids", sa.JSON(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reference_dataset_id"],
            ["datasets.id"],
            name=op.f("fk_comparative_experiments_reference_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparative_experiments")),
    )


def _copy_old_datasets(conn: sa.Connection) -> None:
    old = sa.table(
        "legacy_datasets",
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
    datasets, versions, examples = _table(*_DATASETS), _table(*_VERSIONS), _table(*_EXAMPLES)
    rows = conn.execute(sa.select(old).order_by(old.c.workspace_id, old.c.name, old.c.version)).all()
    by_name: dict[tuple[Any, str], list[Any]] = {}
    for row in rows:
        by_name.setdefault((row.workspace_id, row.name), []).append(row)
    for (workspace_id, name), series in by_name.items():
        dataset_id = uuid.uuid4()
        first, last = _utc(series[0].created_at), _utc(series[-1].created_at)
        conn.execute(
            datasets.insert().values(
                id=dataset_id,
                workspace_id=workspace_id,
                name=name,
                data_type="chat",
                version=series[-1].version,
                created_at=first,
                modified_at=last,
            )
        )
        for i, row in enumerate(series):
            conn.execute(
                versions.insert().values(
                    id=row.id,
                    dataset_id=dataset_id,
                    workspace_id=workspace_id,
                    version=row.version,
                    as_of=_utc(row.created_at),
                    tags=[],
                    source="export",
                    selection=row.selection,
                    options=row.options,
                    summary=row.summary,
                    record_count=row.record_count,
                    train_count=row.train_count,
                    validation_count=row.validation_count,
                )
            )
            valid_to = series[i + 1].version if i + 1 < len(series) else None
            result = conn.execute(
                sa.select(records).where(records.c.dataset_id == row.id).order_by(records.c.line)
            ).all()
            for start in range(0, len(result), _BATCH):
                batch = []
                for rec in result[start : start + _BATCH]:
                    inputs, outputs = _split_record(rec.record)
                    batch.append(
                        {
                            "id": uuid.uuid4(),
                            "dataset_id": dataset_id,
                            "workspace_id": workspace_id,
                            "line": rec.line,
                            "inputs": inputs,
                            "outputs": outputs,
                            "metadata": None,
                            "splits": [rec.split],
                            "source_run_id": None,
                            "run_ids": rec.run_ids,
                            "trace_id": rec.trace_id,
                            "created_at": _utc(row.created_at),
                            "modified_at": _utc(row.created_at),
                            "valid_from": row.version,
                            "valid_to": valid_to,
                        }
                    )
                conn.execute(examples.insert(), batch)


def upgrade() -> None:
    conn = op.get_bind()
    op.rename_table("datasets", "legacy_datasets")
    if conn.dialect.name == "postgresql":  # index-backed constraint names are schema-wide there
        op.execute("ALTER TABLE legacy_datasets RENAME CONSTRAINT pk_datasets TO pk_legacy_datasets")
        op.execute(
            "ALTER TABLE legacy_datasets RENAME CONSTRAINT uq_datasets_workspace_id_name_version"
            " TO uq_legacy_datasets_workspace_id_name_version"
        )
    _create_tables()
    _copy_old_datasets(conn)
    op.drop_table("dataset_records")
    op.drop_table("legacy_datasets")
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("reference_dataset_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_projects_reference_dataset_id_datasets"),
            "datasets",
            ["reference_dataset_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    """Back to 0002's shape: each version becomes a dataset row again and its examples its records (SDK-made
    versions included; an example that is not a record is written as ``{"inputs", "outputs"}``)."""
    conn = op.get_bind()
    op.drop_table("comparative_experiments")
    with op.batch_alter_table("projects") as batch:
        batch.drop_constraint("fk_projects_reference_dataset_id_datasets", type_="foreignkey")
        batch.drop_column("reference_dataset_id")
    datasets, versions, examples = _table(*_DATASETS), _table(*_VERSIONS), _table(*_EXAMPLES)
    series = conn.execute(
        sa.select(versions, datasets.c.name).join(datasets, datasets.c.id == versions.c.dataset_id)
    ).all()
    kept = []
    for v in series:
        rows = conn.execute(
            sa.select(examples)
            .where(
                examples.c.dataset_id == v.dataset_id,
                examples.c.valid_from <= v.version,
                sa.or_(examples.c.valid_to.is_(None), examples.c.valid_to > v.version),
            )
            .order_by(examples.c.line)
        ).all()
        kept.append((v, [_record_of(r) for r in rows]))
    op.drop_table("examples")
    op.drop_table("dataset_versions")
    op.drop_table("datasets")
    old = op.create_table(
        "datasets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("train_count", sa.Integer(), nullable=False),
        sa.Column("validation_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], name=op.f("fk_datasets_workspace_id_workspaces")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("workspace_id", "name", "version", name=op.f("uq_datasets_workspace_id_name_version")),
    )
    records = op.create_table(
        "dataset_records",
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        sa.Column("trace_id", sa.Uuid(), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_records_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("dataset_id", "line", name=op.f("pk_dataset_records")),
    )
    for v, recs in kept:
        conn.execute(
            old.insert().values(
                id=v.id,
                workspace_id=v.workspace_id,
                name=v.name,
                version=v.version,
                selection=v.selection or {},
                options=v.options or {},
                summary=v.summary or {},
                record_count=v.record_count,
                train_count=v.train_count,
                validation_count=v.validation_count,
                created_at=v.as_of,
            )
        )
        if recs:
            lines = [{"dataset_id": v.id, "line": i, **rec} for i, rec in enumerate(recs, 1)]
            conn.execute(records.insert(), lines)


def _record_of(row: Any) -> dict[str, Any]:
    outputs = row.outputs or {}
    record: dict[str, Any] | None = None
    for key in _LISTS:
        if isinstance((row.inputs or {}).get(key), list) and key[:-1] in outputs:
            record = {**row.inputs, key: [*row.inputs[key], outputs[key[:-1]]]}
    splits = row.splits or []
    return {
        "split": "validation" if "validation" in splits or "test" in splits else "train",
        "run_ids": row.run_ids or [],
        "trace_id": row.trace_id,
        "record": record if record is not None else {"inputs": row.inputs, "outputs": row.outputs},
    }
