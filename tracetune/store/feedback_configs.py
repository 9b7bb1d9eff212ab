"""Feedback configurations: how a feedback key's scores read (``continuous`` with bounds, ``categorical`` with
values and labels, ``freeform``), one per key and workspace — what LangSmith has in a workspace without enforced
configurations."""

from __future__ import annotations

import builtins
import uuid
from typing import Any, cast

from sqlalchemy import delete, select

from tracetune.errors import InvalidInput, NotFound
from tracetune.store.engine import Database
from tracetune.store.rows import FeedbackConfigRow
from tracetune.store.schema import feedback_configs
from tracetune.store.sqlutil import as_utc, utcnow


def _out(row: Any) -> FeedbackConfigRow:
    out = dict(row._mapping)
    out["modified_at"] = as_utc(out["modified_at"])
    return cast(FeedbackConfigRow, out)


class FeedbackConfigStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, workspace_id: uuid.UUID, key: str) -> FeedbackConfigRow | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(feedback_configs).where(
                    feedback_configs.c.workspace_id == workspace_id, feedback_configs.c.feedback_key == key
                )
            ).first()
        return _out(row) if row else None

    def key_of(self, workspace_id: uuid.UUID, config_id: uuid.UUID) -> str:
        """The key of configuration ``config_id``; 404 when the workspace has none such."""
        with self.db.read() as conn:
            key = conn.execute(
                select(feedback_configs.c.feedback_key).where(
                    feedback_configs.c.workspace_id == workspace_id, feedback_configs.c.id == config_id
                )
            ).scalar_one_or_none()
        if key is None:
            raise NotFound(f"no feedback config {config_id}", field="id")
        return str(key)

    def create(
        self, workspace_id: uuid.UUID, key: str, config: dict[str, Any], lower_is_better: bool | None
    ) -> FeedbackConfigRow:
        """The key's configuration: made now, or the same one already there; 400 if the key has another one."""
        with self.db.write() as conn:
            existing = conn.execute(
                select(feedback_configs).where(
                    feedback_configs.c.workspace_id == workspace_id, feedback_configs.c.feedback_key == key
                )
            ).first()
            if existing is not None:
                if existing.feedback_config != config:
                    raise InvalidInput(
                        f"Feedback config already exists for {key!r} and differs: update it instead",
                        field="feedback_config",
                    )
                return _out(existing)
            row = {
                "id": uuid.uuid4(),
                "workspace_id": workspace_id,
                "feedback_key": key,
                "feedback_config": config,
                "is_lower_score_better": lower_is_better,
                "modified_at": utcnow(),
            }
            conn.execute(feedback_configs.insert().values(**row))
        found = self.get(workspace_id, key)
        assert found is not None
        return found

    def update(self, workspace_id: uuid.UUID, key: str, changes: dict[str, Any]) -> FeedbackConfigRow:
        """Set ``feedback_config`` / ``is_lower_score_better``; 404 for a key without a configuration."""
        with self.db.write() as conn:
            result = conn.execute(
                feedback_configs.update()
                .where(feedback_configs.c.workspace_id == workspace_id, feedback_configs.c.feedback_key == key)
                .values(**changes, modified_at=utcnow())
            )
        if not result.rowcount:
            raise NotFound(f"no feedback config for key {key!r}", field="feedback_key")
        found = self.get(workspace_id, key)
        assert found is not None
        return found

    def list(
        self,
        workspace_id: uuid.UUID,
        *,
        keys: builtins.list[str] | None = None,
        name_contains: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[FeedbackConfigRow]:
        q = select(feedback_configs).where(feedback_configs.c.workspace_id == workspace_id)
        if keys:
            q = q.where(feedback_configs.c.feedback_key.in_(keys))
        if name_contains:
            q = q.where(feedback_configs.c.feedback_key.contains(name_contains, autoescape=True))
        q = q.order_by(feedback_configs.c.feedback_key).limit(limit).offset(offset)
        with self.db.read() as conn:
            return [_out(r) for r in conn.execute(q)]

    def delete(self, workspace_id: uuid.UUID, key: str) -> None:
        with self.db.write() as conn:
            result = conn.execute(
                delete(feedback_configs).where(
                    feedback_configs.c.workspace_id == workspace_id, feedback_configs.c.feedback_key == key
                )
            )
        if not result.rowcount:
            raise NotFound(f"no feedback config for key {key!r}", field="feedback_key")
