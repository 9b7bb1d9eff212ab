"""Aliases of served models, versioned: a name (``support-bot``) → a model id (``ft:…``, a base model) or another
alias. Every change is a new version of the name — set, rolled back (to the model the version before named),
removed (``model`` NULL) — so the history stays and a rollback is one step. The newest version is the alias.

``resolve`` follows the chain (one indexed read per hop), so serving looks aliases up on every request and every
replica on the shared store sees a change at once. A change that would close a cycle (``a → b → a``) is refused;
whether the target exists is for the caller to check (the store does not know the model registry).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from tracetune.errors import Conflict, InvalidInput, NotFound
from tracetune.store.engine import Database
from tracetune.store.rows import AliasRow
from tracetune.store.schema import model_aliases as t
from tracetune.store.sqlutil import as_utc, utcnow

MAX_HOPS = 8  # an alias may name an alias, this deep at most


def _row(row: Any) -> AliasRow:
    out = dict(row._mapping)
    out["created_at"] = as_utc(out["created_at"])
    return cast(AliasRow, out)


class AliasStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _newest(conn: Any, workspace_id: uuid.UUID, name: str) -> AliasRow | None:
        found = conn.execute(
            select(t).where(t.c.workspace_id == workspace_id, t.c.name == name).order_by(t.c.version.desc()).limit(1)
        ).first()
        return _row(found) if found is not None else None

    def get(self, workspace_id: uuid.UUID, name: str) -> AliasRow | None:
        """The alias ``name`` (its newest version), or None when there is none (never set, or removed)."""
        with self.db.read() as conn:
            row = self._newest(conn, workspace_id, name)
        return row if row is not None and row["model"] is not None else None

    def resolve(self, workspace_id: uuid.UUID, model_id: str) -> str:
        """What ``model_id`` names once every alias on the way is followed (``model_id`` itself when it is not an
        alias)."""
        with self.db.read() as conn:
            return self._resolve(conn, workspace_id, model_id)[-1]

    def _resolve(self, conn: Any, workspace_id: uuid.UUID, model_id: str) -> list[str]:
        """The chain from ``model_id`` to what it finally names."""
        chain = [model_id]
        for _ in range(MAX_HOPS + 1):
            row = self._newest(conn, workspace_id, chain[-1])
            if row is None or row["model"] is None:
                return chain
            if row["model"] in chain:
                raise Conflict(f"alias cycle: {' → '.join([*chain, row['model']])}", field="model")
            chain.append(row["model"])
        raise InvalidInput(f"aliases nest deeper than {MAX_HOPS}: {' → '.join(chain)}", field="model")

    def list(self, workspace_id: uuid.UUID) -> builtins.list[AliasRow]:
        """The workspace's aliases (their newest versions; removed ones left out), by name."""
        newest = (
            select(t.c.name, func.max(t.c.version).label("version"))
            .where(t.c.workspace_id == workspace_id)
            .group_by(t.c.name)
            .subquery()
        )
        stmt = (
            select(t)
            .join(newest, (t.c.name == newest.c.name) & (t.c.version == newest.c.version))
            .where(t.c.workspace_id == workspace_id, t.c.model.is_not(None))
            .order_by(t.c.name)
        )
        with self.db.read() as conn:
            return [_row(r) for r in conn.execute(stmt)]

    def history(self, workspace_id: uuid.UUID, name: str) -> builtins.list[AliasRow]:
        """Every version of ``name``, newest first; NotFound when it never existed."""
        with self.db.read() as conn:
            rows = [
                _row(r)
                for r in conn.execute(
                    select(t).where(t.c.workspace_id == workspace_id, t.c.name == name).order_by(t.c.version.desc())
                )
            ]
        if not rows:
            raise NotFound(f"no alias named {name!r}", field="name")
        return rows

    def set(
        self,
        workspace_id: uuid.UUID,
        name: str,
        model: str,
        note: str = "set",
        check: Callable[[str], object] | None = None,
    ) -> AliasRow:
        """Point ``name`` at ``model`` (a new version); Conflict when that would close a cycle. ``check(model)``
        (the caller's: is it served?) runs once no cycle is found, before anything is written."""

        def work(conn: Any) -> AliasRow:
            chain = self._resolve(conn, workspace_id, model)
            if name in chain:
                raise Conflict(f"alias cycle: {' → '.join([name, *chain[: chain.index(name) + 1]])}", field="model")
            if check is not None:
                check(model)
            return self._add(conn, workspace_id, name, model, note)

        return self._write(work)

    def rollback(self, workspace_id: uuid.UUID, name: str, check: Callable[[str], object] | None = None) -> AliasRow:
        """Point ``name`` back at what its version before the newest named (a new version; ``check`` as for
        :meth:`set`)."""

        def work(conn: Any) -> AliasRow:
            rows = conn.execute(
                select(t)
                .where(t.c.workspace_id == workspace_id, t.c.name == name)
                .order_by(t.c.version.desc())
                .limit(2)
            ).all()
            if not rows:
                raise NotFound(f"no alias named {name!r}", field="name")
            if len(rows) < 2 or rows[1].model is None:
                raise InvalidInput(f"alias {name!r} has no earlier model to roll back to", field="name")
            previous = rows[1]
            if name in self._resolve(conn, workspace_id, previous.model):
                raise Conflict(f"rolling {name!r} back to {previous.model!r} would close an alias cycle", field="name")
            if check is not None:
                check(previous.model)
            return self._add(conn, workspace_id, name, previous.model, f"rollback to v{previous.version}")

        return self._write(work)

    def remove(self, workspace_id: uuid.UUID, name: str) -> AliasRow:
        """Remove ``name`` (a new version naming nothing; the history stays)."""

        def work(conn: Any) -> AliasRow:
            current = self._newest(conn, workspace_id, name)
            if current is None or current["model"] is None:
                raise NotFound(f"no alias named {name!r}", field="name")
            return self._add(conn, workspace_id, name, None, "removed")

        return self._write(work)

    def _write(self, work: Any) -> AliasRow:
        for _ in range(3):  # two writers may take the same next version: the loser reads again
            try:
                return cast(AliasRow, self.db.write_retrying(work))
            except IntegrityError:
                continue
        raise Conflict("the alias changed under three attempts in a row: try again", field="name")

    def _add(self, conn: Any, workspace_id: uuid.UUID, name: str, model: str | None, note: str) -> AliasRow:
        current = self._newest(conn, workspace_id, name)
        row: AliasRow = {
            "workspace_id": workspace_id,
            "name": name,
            "version": (current["version"] if current else 0) + 1,
            "model": model,
            "note": note,
            "created_at": utcnow(),
        }
        conn.execute(insert(t).values(**row))
        return row
