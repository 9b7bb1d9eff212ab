"""feedback_configs: how each feedback key's scores read (Client.create_feedback_config), one per key

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 07:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_configs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("feedback_key", sa.String(length=500), nullable=False),
        sa.Column("feedback_config", sa.JSON(), nullable=False),
        sa.Column("is_lower_score_better", sa.Boolean(), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_feedback_configs_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_configs")),
        sa.UniqueConstraint("workspace_id", "feedback_key", name=op.f("uq_feedback_configs_workspace_id_feedback_key")),
    )


def downgrade() -> None:
    op.drop_table("feedback_configs")
