"""A fresh PostgreSQL database per test or benchmark case, on the server of an admin URL (the suite's
``TRACETUNE_TEST_POSTGRES_URL``; the benchmarks' ``--postgres``). No pytest here: bench/ imports it too."""

from __future__ import annotations

import uuid


def make_postgres_database(admin_url: str) -> tuple[str, str]:
    """A new empty database on the server of ``admin_url``: its URL and its name."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"tt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), name


def drop_postgres_database(admin_url: str, name: str) -> None:
    """Drop the database ``name`` (connections to it are ended)."""
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
