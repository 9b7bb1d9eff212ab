"""Pure function: a LangSmith FeedbackCreate object → one row of the ``feedback`` table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tracetune.errors import InvalidInput
from tracetune.ingest.records import check_text, parse_uuid


def _time(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("expected an ISO-8601 time string", field=field)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{value!r} is not an ISO-8601 time", field=field) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def feedback_record(obj: Any, where: str) -> dict[str, Any]:
    """Validate one feedback object; ``where`` names it in errors (e.g. ``feedback.<id>``)."""
    if not isinstance(obj, dict):
        raise InvalidInput("feedback must be a JSON object", field=where)
    key = obj.get("key")
    if not isinstance(key, str) or not key:
        raise InvalidInput("feedback needs a non-empty string 'key'", field=f"{where}.key")
    check_text(key, 500, f"{where}.key")
    score = obj.get("score")
    if isinstance(score, bool):
        score = float(score)
    elif score is not None and not isinstance(score, int | float):
        raise InvalidInput(f"score must be a number, got {type(score).__name__}", field=f"{where}.score")
    rec: dict[str, Any] = {
        "id": parse_uuid(obj["id"], f"{where}.id") if obj.get("id") is not None else None,
        "key": key,
        "score": score,
        "value": obj.get("value"),
        "comment": obj.get("comment"),
        "correction": obj.get("correction"),
        "feedback_source": obj.get("feedback_source"),
        "extra": obj.get("extra"),
        "created_at": _time(obj.get("created_at"), f"{where}.created_at"),
        "modified_at": _time(obj.get("modified_at"), f"{where}.modified_at"),
    }
    if rec["comment"] is not None and not isinstance(rec["comment"], str):
        raise InvalidInput("comment must be a string", field=f"{where}.comment")
    if rec["comment"] is not None:
        check_text(rec["comment"], None, f"{where}.comment")
    for key_name in ("run_id", "trace_id", "session_id"):
        value = obj.get(key_name)
        rec[key_name] = parse_uuid(value, f"{where}.{key_name}") if value is not None else None
    return rec


def check_score(score: Any, config: Any) -> None:
    """A score within a ``FeedbackConfig``'s bounds (``continuous``: ``min``/``max``; ``categorical``: one of its
    categories' values); 400 naming ``score`` otherwise. No config, or another type: anything goes."""
    if score is None or not isinstance(config, dict):
        return
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise InvalidInput(f"score must be a number, got {type(score).__name__}", field="score")
    kind = config.get("type")
    if kind == "continuous":
        low, high = config.get("min"), config.get("max")
        if (low is not None and score < low) or (high is not None and score > high):
            raise InvalidInput(f"score {score} is outside this key's range [{low}, {high}]", field="score")
    elif kind == "categorical":
        allowed = [c.get("value") for c in config.get("categories") or [] if isinstance(c, dict)]
        if allowed and score not in allowed:
            raise InvalidInput(f"score {score} is not one of this key's categories {allowed}", field="score")
