"""feedback_tokens: pre-signed feedback URLs (Client.create_presigned_feedback_token)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 07:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("feedback_key", sa.String(length=500), nullable=False),
        sa.Column("feedback_config", sa.JSON(), nullable=True),
        sa.Column("feedback_id", sa.Uuid(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_feedback_tokens_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_tokens")),
    )
    op.create_index("ix_feedback_tokens_run", "feedback_tokens", ["workspace_id", "run_id"])


def downgrade() -> None:
    op.drop_index("ix_feedback_tokens_run", table_name="feedback_tokens")
    op.drop_table("feedback_tokens")
