"""Workspaces and the API keys scoped to them. Keys are stored as SHA-256 hashes, never in clear."""

from __future__ import annotations

import builtins
import hashlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from tracetune.errors import NotFound
from tracetune.store.engine import Database
from tracetune.store.schema import api_keys, workspaces
from tracetune.store.sqlutil import as_utc, upsert, utcnow

DEFAULT_WORKSPACE = "default"
KEY_PREFIX = "tt_"


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
    """Workspaces by name, keys by hash. Lookups are cached; the "are there any keys?" answer for a few s."""

    KEYS_PRESENT_TTL_S = 2.0
    KEY_CACHE_TTL_S = 10.0  # a key revoked from another process stops working within this time

    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_name: dict[str, Workspace] = {}
        self._by_hash: dict[str, tuple[float, Workspace]] = {}
        self._keys_present: tuple[float, bool] | None = None
        self._lock = threading.Lock()

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
        self._keys_present = None
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
        """Revoke every active key starting with ``prefix``; returns how many were revoked."""
        with self.db.write() as conn:
            result = conn.execute(
                update(api_keys)
                .where(api_keys.c.prefix == prefix[:10], api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        with self._lock:
            self._by_hash.clear()
        self._keys_present = None
        return int(result.rowcount or 0)

    def any_keys(self) -> bool:
        """Whether any active key exists (then every request must carry one)."""
        now = time.monotonic()
        cached = self._keys_present
        if cached and now - cached[0] < self.KEYS_PRESENT_TTL_S:
            return cached[1]
        with self.db.read() as conn:
            n = conn.execute(select(func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))).scalar()
        present = bool(n)
        self._keys_present = (now, present)
        return present

    def authenticate(self, key: str) -> Workspace | None:
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._by_hash.get(digest)
        if hit and now - hit[0] < self.KEY_CACHE_TTL_S:
            return hit[1]
        q = (
            select(workspaces.c.id, workspaces.c.name)
            .join(api_keys, api_keys.c.workspace_id == workspaces.c.id)
            .where(api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None))
        )
        with self.db.read() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        ws = Workspace(row.id, row.name)
        with self._lock:
            self._by_hash[digest] = (now, ws)
        return ws
