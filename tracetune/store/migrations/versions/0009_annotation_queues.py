"""annotation_queues and their items: runs or threads waiting for review

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 07:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "annotation_queues",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("rubric_instructions", sa.Text(), nullable=True),
        sa.Column("rubric_items", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_annotation_queues_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_queues")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_annotation_queues_workspace_id_name")),
    )
    op.create_table(
        "annotation_queue_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("queue_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("item_type", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("thread_id", sa.String(length=500), nullable=True),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_reviewed_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["queue_id"],
            ["annotation_queues.id"],
            name=op.f("fk_annotation_queue_items_queue_id_annotation_queues"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_queue_items")),
    )
    op.create_index(
        "ix_annotation_queue_items_queue", "annotation_queue_items", ["queue_id", "completed_at", "added_at"]
    )
    op.create_index("ix_annotation_queue_items_run", "annotation_queue_items", ["workspace_id", "run_id"])


def downgrade() -> None:
    op.drop_index("ix_annotation_queue_items_run", table_name="annotation_queue_items")
    op.drop_index("ix_annotation_queue_items_queue", table_name="annotation_queue_items")
    op.drop_table("annotation_queue_items")
    op.drop_table("annotation_queues")
