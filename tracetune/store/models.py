"""Fine-tuned models: what a succeeded fine-tuning job produced (a LoRA adapter over a base model).

Base models are not rows: they come from :mod:`tracetune.models.registry`. A fine-tuned model belongs to one
workspace; another workspace's is not found. ``adapter_dir`` is stored relative to the home and returned as
stored; :func:`adapter_path` makes it absolute.
"""

from __future__ import annotations

import builtins
import uuid
from pathlib import Path
from typing import Any, cast

from sqlalchemy import delete, insert, select

from tracetune.errors import NotFound
from tracetune.store.blobs import Blobs
from tracetune.store.engine import Database
from tracetune.store.rows import ModelRow
from tracetune.store.schema import fine_tuned_models


def adapter_path(blobs: Blobs, row: ModelRow) -> Path:
    """The local adapter directory of a fine-tuned model row (fetched from the shared object store when this data
    home lacks it)."""
    return blobs.path(row["adapter_dir"])


class FineTunedModelStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, conn: Any, row: ModelRow) -> None:
        """Insert ``row`` (``workspace_id, id, base_model, job_id, adapter_dir, created_at``) in the caller's
        transaction (the job that made it succeeds in the same commit)."""
        conn.execute(insert(fine_tuned_models).values(**row))

    def get(self, workspace_id: uuid.UUID, model_id: str) -> ModelRow:
        with self.db.read() as conn:
            found = conn.execute(
                select(fine_tuned_models).where(
                    fine_tuned_models.c.workspace_id == workspace_id, fine_tuned_models.c.id == model_id
                )
            ).first()
        if found is None:
            raise NotFound(f"The model '{model_id}' does not exist", field="model", code="model_not_found")
        return cast(ModelRow, dict(found._mapping))

    def list(self, workspace_id: uuid.UUID) -> builtins.list[ModelRow]:
        """The workspace's fine-tuned models, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(fine_tuned_models)
                .where(fine_tuned_models.c.workspace_id == workspace_id)
                .order_by(fine_tuned_models.c.created_at, fine_tuned_models.c.id)
            )
            return [cast(ModelRow, dict(r._mapping)) for r in rows]

    def delete(self, workspace_id: uuid.UUID, model_id: str) -> ModelRow:
        """Remove the model's row (its adapter files stay with the job that made them); the removed row."""
        row = self.get(workspace_id, model_id)
        with self.db.write() as conn:
            conn.execute(
                delete(fine_tuned_models).where(
                    fine_tuned_models.c.workspace_id == workspace_id, fine_tuned_models.c.id == model_id
                )
            )
        return row
