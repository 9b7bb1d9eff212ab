"""Small SQL helpers shared by the repositories (dialect-specific constructs live only here)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert(conn: Connection, table: Table) -> Any:
    """``INSERT`` that supports ``on_conflict_do_nothing``/``on_conflict_do_update`` on this dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def advisory_lock(conn: Connection, key: str) -> None:
    """Serialise writers that share ``key`` until the transaction ends: ``pg_advisory_xact_lock`` on
    PostgreSQL; nothing on SQLite, where a write transaction already holds the one database write lock."""
    if conn.dialect.name != "postgresql":
        return
    import hashlib

    from sqlalchemy import text

    number = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": number})
