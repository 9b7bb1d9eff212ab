"""The one settings object. It is the only reader of the process environment (prefix ``TRACETUNE_``)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("tracetune", appauthor=False))


class Settings(BaseSettings):
    """Every setting of tracetune; each is read from ``TRACETUNE_<NAME>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="TRACETUNE_", extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Data home: the SQLite database, uploaded files, adapters and checkpoints live under it.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store. Default: sqlite:///$TRACETUNE_HOME/tracetune.db. "
        "Use postgresql+psycopg://user:pass@host/db to share the store between machines.",
    )
    host: str = Field(default="127.0.0.1", description="Address `tracetune serve` binds to.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port `tracetune serve` listens on.")
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (after zstd decompression too); larger bodies get 413.",
    )
    sqlite_synchronous: str = Field(
        default="FULL",
        pattern="^(FULL|NORMAL|EXTRA)$",
        description="SQLite `synchronous` pragma. FULL makes every acknowledged write survive power loss; "
        "NORMAL survives a process crash only.",
    )
    log_level: str = Field(default="info", description="Log level of the server (debug, info, warning, error).")

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'tracetune.db'}"

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags) taking precedence."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
