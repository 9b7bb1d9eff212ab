"""store flags (the auth mode that survives revoking the last key) and an index of runs awaiting their parent's
dotted order

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:00:00.000000
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_flags",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.String(length=500), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_store_flags")),
    )
    # A store that ever had a key stays keyed (revoking the last key must not open it).
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT 1 FROM api_keys LIMIT 1")).first() is not None:
        flags = sa.table(
            "store_flags",
            sa.column("name", sa.String),
            sa.column("value", sa.String),
            sa.column("updated_at", sa.DateTime(timezone=True)),
        )
        conn.execute(flags.insert().values(name="auth_mode", value="keyed", updated_at=datetime.now(UTC)))
    op.create_index(
        "ix_runs_awaiting_parent",
        "runs",
        ["workspace_id", "parent_run_id"],
        sqlite_where=sa.text("dotted_order IS NULL"),
        postgresql_where=sa.text("dotted_order IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_awaiting_parent", table_name="runs")
    op.drop_table("store_flags")
