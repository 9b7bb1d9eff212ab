"""fine-tuning: jobs, their events and checkpoints, and the fine-tuned models they produce

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 13:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fine_tuning_jobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("training_file", sa.String(length=64), nullable=False),
        sa.Column("validation_file", sa.String(length=64), nullable=True),
        sa.Column("suffix", sa.String(length=64), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.JSON(), nullable=False),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("user_metadata", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("fine_tuned_model", sa.String(length=300), nullable=True),
        sa.Column("output_model", sa.String(length=300), nullable=False),
        sa.Column("trained_tokens", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("result_files", sa.JSON(), nullable=False),
        sa.Column("estimated_finish", sa.BigInteger(), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("cancel_requested", sa.Integer(), server_default="0", nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_fine_tuning_jobs_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fine_tuning_jobs")),
    )
    op.create_index("ix_fine_tuning_jobs_workspace_created", "fine_tuning_jobs", ["workspace_id", "created_at", "id"])
    op.create_index("ix_fine_tuning_jobs_status_created", "fine_tuning_jobs", ["status", "created_at"])
    op.create_table(
        "fine_tuning_job_events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["fine_tuning_jobs.id"],
            name=op.f("fk_fine_tuning_job_events_job_id_fine_tuning_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_fine_tuning_job_events")),
    )
    op.create_index("ix_fine_tuning_job_events_job_seq", "fine_tuning_job_events", ["job_id", "seq"])
    op.create_table(
        "fine_tuning_checkpoints",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("step_number", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("fine_tuned_model_checkpoint", sa.String(length=300), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["fine_tuning_jobs.id"],
            name=op.f("fk_fine_tuning_checkpoints_job_id_fine_tuning_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fine_tuning_checkpoints")),
        sa.UniqueConstraint("job_id", "step_number", name=op.f("uq_fine_tuning_checkpoints_job_id_step_number")),
    )
    op.create_table(
        "fine_tuned_models",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.String(length=300), nullable=False),
        sa.Column("base_model", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("adapter_dir", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_fine_tuned_models_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_fine_tuned_models")),
    )


def downgrade() -> None:
    op.drop_table("fine_tuned_models")
    op.drop_table("fine_tuning_checkpoints")
    op.drop_index("ix_fine_tuning_job_events_job_seq", table_name="fine_tuning_job_events")
    op.drop_table("fine_tuning_job_events")
    op.drop_index("ix_fine_tuning_jobs_status_created", table_name="fine_tuning_jobs")
    op.drop_index("ix_fine_tuning_jobs_workspace_created", table_name="fine_tuning_jobs")
    op.drop_table("fine_tuning_jobs")
