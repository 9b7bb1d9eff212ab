"""run sort indexes: the runs table's latency and token orders read a big project's first page from an index

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 16:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the expressions of store.schema.RUN_LATENCY_US and RUN_TOTAL_TOKENS, word for word (the planners match them)
    op.create_index(
        "ix_runs_project_latency",
        "runs",
        ["workspace_id", "project_id", sa.text("coalesce(end_us - start_us, -1)"), "id"],
    )
    op.create_index(
        "ix_runs_project_tokens", "runs", ["workspace_id", "project_id", sa.text("coalesce(total_tokens, -1)"), "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_runs_project_tokens", table_name="runs")
    op.drop_index("ix_runs_project_latency", table_name="runs")
