"""Workspaces and the API keys scoped to them. Keys are stored as SHA-256 hashes, never in clear."""

from __future__ import annotations

import builtins
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update

from tracetune.errors import Conflict, NotFound
from tracetune.store.engine import Database
from tracetune.store.schema import api_keys, store_flags, workspaces
from tracetune.store.sqlutil import as_utc, upsert, utcnow

DEFAULT_WORKSPACE = "default"
KEY_PREFIX = "tt_"
AUTH_MODE = "auth_mode"  # the store_flags row
KEYED, OPEN = "keyed", "open"
# Built once: every request reads them
_KEY_LOOKUP = (
    select(workspaces.c.id, workspaces.c.name)
    .join(api_keys, api_keys.c.workspace_id == workspaces.c.id)
    .where(api_keys.c.key_hash == bindparam("key_hash"), api_keys.c.revoked_at.is_(None))
)
_MODE = select(store_flags.c.value).where(store_flags.c.name == AUTH_MODE)


@dataclass(frozen=True)
class Workspace:
    id: uuid.UUID
    name: str


@dataclass(frozen=True)
class ApiKeyInfo:
    id: uuid.UUID
    workspace: str
    name: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class WorkspaceStore:
    """Workspaces by name, keys by hash, and the store's auth mode.

    The mode is **keyed** from the moment a key is created, and stays keyed when keys are revoked (even the
    last one: then nothing is let in) until an operator opens the store explicitly (``open_without_keys``,
    ``tracetune keys open``). A store that never had a key is **open**. Key lookups and the mode are read from
    the database on every request, never cached: a key revoked by any process sharing the store is refused on
    the very next request to every server.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_name: dict[str, Workspace] = {}

    def ensure(self, name: str) -> Workspace:
        """The workspace called ``name``, created on first use."""
        cached = self._by_name.get(name)
        if cached:
            return cached
        with self.db.write() as conn:
            conn.execute(
                upsert(conn, workspaces)
                .values(id=uuid.uuid4(), name=name, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["name"])
            )
            row = conn.execute(select(workspaces.c.id, workspaces.c.name).where(workspaces.c.name == name)).one()
        ws = Workspace(row.id, row.name)
        self._by_name[name] = ws
        return ws

    def get(self, name: str) -> Workspace:
        with self.db.read() as conn:
            row = conn.execute(select(workspaces.c.id, workspaces.c.name).where(workspaces.c.name == name)).first()
        if row is None:
            raise NotFound(f"no workspace named {name!r}", field="workspace")
        return Workspace(row.id, row.name)

    def by_id(self, workspace_id: uuid.UUID | str) -> Workspace | None:
        """The workspace with this id (a string that is no UUID: None)."""
        try:
            wanted = workspace_id if isinstance(workspace_id, uuid.UUID) else uuid.UUID(workspace_id)
        except ValueError:
            return None
        with self.db.read() as conn:
            row = conn.execute(select(workspaces.c.id, workspaces.c.name).where(workspaces.c.id == wanted)).first()
        return Workspace(row.id, row.name) if row is not None else None

    def list(self) -> list[Workspace]:
        with self.db.read() as conn:
            rows = conn.execute(select(workspaces.c.id, workspaces.c.name).order_by(workspaces.c.name)).all()
        return [Workspace(r.id, r.name) for r in rows]

    # -- keys -------------------------------------------------------------------------------------------

    def create_key(self, workspace: str, name: str | None = None) -> tuple[str, ApiKeyInfo]:
        """A new key for ``workspace`` (created if missing). The clear key is returned once, never stored."""
        ws = self.ensure(workspace)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id, now = uuid.uuid4(), utcnow()
        with self.db.write() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key_id,
                    workspace_id=ws.id,
                    name=name,
                    prefix=key[:10],
                    key_hash=hash_key(key),
                    created_at=now,
                )
            )
            self._set_mode(conn, KEYED)
        return key, ApiKeyInfo(key_id, ws.name, name, key[:10], now, None)

    def list_keys(self) -> builtins.list[ApiKeyInfo]:
        q = (
            select(api_keys, workspaces.c.name.label("workspace"))
            .join(workspaces, workspaces.c.id == api_keys.c.workspace_id)
            .order_by(api_keys.c.created_at)
        )
        with self.db.read() as conn:
            rows = conn.execute(q).all()
        return [
            ApiKeyInfo(r.id, r.workspace, r.name, r.prefix, as_utc(r.created_at), as_utc(r.revoked_at))  # type: ignore[arg-type]
            for r in rows
        ]

    def revoke_key(self, prefix: str) -> int:
        """Revoke every active key starting with ``prefix``; returns how many were revoked. The store stays
        keyed: with no active key left, every request is refused until a key is created or the store opened."""
        with self.db.write() as conn:
            result = conn.execute(
                update(api_keys)
                .where(api_keys.c.prefix == prefix[:10], api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return int(result.rowcount or 0)

    def open_without_keys(self) -> None:
        """Let requests in without a key again (into the default workspace). Refused while a key is active."""
        with self.db.write() as conn:
            active = conn.execute(select(api_keys.c.prefix).where(api_keys.c.revoked_at.is_(None))).scalars().all()
            if active:
                listed = ", ".join(p + "…" for p in active)
                raise Conflict(f"{len(active)} key(s) still active ({listed}): revoke them first", field="keys")
            self._set_mode(conn, OPEN)

    def auth_required(self) -> bool:
        """Whether every request must carry a key (the store is keyed; see the class docstring)."""
        with self.db.read() as conn:
            return conn.execute(_MODE).scalar() == KEYED

    def access(self, key: str | None) -> tuple[Workspace | None, bool]:
        """What a request carrying ``key`` may do: the workspace of the active key ``key`` (None for no key, an
        unknown or a revoked one), and whether the store requires a key. One read transaction, the mode read only
        when the key let nothing in: a request is one connection checkout, not two (per-request CPU)."""
        with self.db.read() as conn:
            if key:
                row = conn.execute(_KEY_LOOKUP, {"key_hash": hash_key(key)}).first()
                if row is not None:
                    return Workspace(row.id, row.name), True
            return None, conn.execute(_MODE).scalar() == KEYED

    @staticmethod
    def _set_mode(conn: Connection, mode: str) -> None:
        stmt = upsert(conn, store_flags).values(name=AUTH_MODE, value=mode, updated_at=utcnow())
        conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"value": mode, "updated_at": utcnow()}))
