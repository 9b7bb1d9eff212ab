"""Time as the store keeps it: integer microseconds since the Unix epoch (``*_us``), parsed from ISO 8601 and
formatted back, and the dotted-order segment of a run (its start time and id, as the SDKs write it)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tracetune.errors import InvalidInput, shown

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_to_us(value: Any, field: str) -> int:
    """ISO-8601 (naive = UTC, ``Z`` allowed) or a datetime → integer microseconds since the epoch."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"{shown(value)} is not an ISO-8601 time", field=field) from None
    else:
        raise InvalidInput(f"expected an ISO-8601 time string, got {type(value).__name__}", field=field)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_time(us: int | None) -> datetime | None:
    if us is None:
        return None
    return EPOCH + timedelta(microseconds=us)


def dotted_segment(start_us: int, run_id: uuid.UUID) -> str:
    """The dotted-order segment of a run that started at ``start_us``: what the SDKs write for it."""
    return (EPOCH + timedelta(microseconds=start_us)).strftime("%Y%m%dT%H%M%S%fZ") + str(run_id)
