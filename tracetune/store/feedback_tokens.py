"""Pre-signed feedback tokens: a URL that records one key's feedback on one run without an API key, until it
expires. The token id (a random UUID) is the credential; the workspace is the creator's."""

from __future__ import annotations

import builtins
import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import insert, select

from tracetune.errors import NotFound
from tracetune.store.engine import Database
from tracetune.store.rows import FeedbackTokenRow
from tracetune.store.schema import feedback_tokens
from tracetune.store.sqlutil import as_utc, utcnow


def _out(row: Any) -> FeedbackTokenRow:
    out = dict(row._mapping)
    out["expires_at"] = as_utc(out["expires_at"])
    out["created_at"] = as_utc(out["created_at"])
    return cast(FeedbackTokenRow, out)


class FeedbackTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_many(
        self, workspace_id: uuid.UUID, tokens: builtins.list[dict[str, Any]]
    ) -> builtins.list[FeedbackTokenRow]:
        """Store tokens given as ``run_id``, ``feedback_key``, ``feedback_config``, ``feedback_id``, ``expires_at``."""
        now = utcnow()
        rows = [{**t, "id": uuid.uuid4(), "workspace_id": workspace_id, "created_at": now} for t in tokens]
        with self.db.write() as conn:
            conn.execute(insert(feedback_tokens), rows)
            fresh = select(feedback_tokens).where(feedback_tokens.c.id.in_([row["id"] for row in rows]))
            made = {made_row.id: _out(made_row) for made_row in conn.execute(fresh)}
        return [made[r["id"]] for r in rows]

    def get(self, token_id: uuid.UUID) -> FeedbackTokenRow:
        """The token, whatever its workspace (its id is the credential); 404 for an unknown one."""
        with self.db.read() as conn:
            row = conn.execute(select(feedback_tokens).where(feedback_tokens.c.id == token_id)).first()
        if row is None:
            raise NotFound(f"no feedback token {token_id}", field="token")
        return _out(row)

    def list(
        self, workspace_id: uuid.UUID, run_id: uuid.UUID, *, limit: int = 100, offset: int = 0
    ) -> builtins.list[FeedbackTokenRow]:
        q = (
            select(feedback_tokens)
            .where(feedback_tokens.c.workspace_id == workspace_id, feedback_tokens.c.run_id == run_id)
            .order_by(feedback_tokens.c.created_at, feedback_tokens.c.id)
            .limit(limit)
            .offset(offset)
        )
        with self.db.read() as conn:
            return [_out(r) for r in conn.execute(q)]

    @staticmethod
    def is_expired(token: FeedbackTokenRow, now: datetime | None = None) -> bool:
        return token["expires_at"] <= (now or utcnow())
