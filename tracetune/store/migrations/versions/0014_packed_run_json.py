"""packed run JSON: runs.extra, serialized and events hold zstd-compressed JSON; json_dictionaries, the dictionaries

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 22:10:00.000000

PostgreSQL: the three columns become ``bytea`` (each value the UTF-8 bytes of its JSON text, which
``store.packing.unpack`` reads as it is). SQLite: nothing to rewrite; the columns stay declared ``JSON`` and hold
text (older rows) or bytes (new ones). Downgrading decompresses every packed value back to JSON text first.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_COLUMNS = ("extra", "serialized", "events")


def upgrade() -> None:
    op.create_table(
        "json_dictionaries",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_json_dictionaries")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for col in _COLUMNS:
            op.alter_column("runs", col, type_=sa.LargeBinary(), postgresql_using=f"convert_to({col}::text, 'UTF8')")


def downgrade() -> None:
    import zstandard

    conn = op.get_bind()
    dictionaries = {
        dict_id: zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(bytes(data)))
        for dict_id, data in conn.execute(sa.text("SELECT id, data FROM json_dictionaries"))
    }
    dictionaries[0] = zstandard.ZstdDecompressor()
    runs = sa.table("runs", sa.column("workspace_id"), sa.column("id"), *(sa.column(c) for c in _COLUMNS))
    for col in _COLUMNS:
        frames = conn.execute(
            sa.select(runs.c.workspace_id, runs.c.id, runs.c[col]).where(
                sa.func.substr(runs.c[col], 1, 4) == sa.literal(b"\x28\xb5\x2f\xfd", sa.LargeBinary())
            )
        ).all()
        for workspace_id, run_id, frame in frames:
            data = bytes(frame)
            text = dictionaries[zstandard.get_frame_parameters(data).dict_id].decompress(data)
            conn.execute(
                runs.update()
                .where(runs.c.workspace_id == workspace_id, runs.c.id == run_id)
                .values({col: sa.literal(text, sa.LargeBinary())})
            )
        if conn.dialect.name == "postgresql":
            op.alter_column("runs", col, type_=sa.JSON(), postgresql_using=f"convert_from({col}, 'UTF8')::json")
        else:  # back to text, as SQLite held these JSON values before
            conn.execute(sa.text(f"UPDATE runs SET {col} = CAST({col} AS TEXT) WHERE typeof({col}) = 'blob'"))
    op.drop_table("json_dictionaries")
