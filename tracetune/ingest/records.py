"""Pure functions: one LangSmith run object (as the SDK sends it) → one row of the ``runs`` table.

A *post* opens a run and a *patch* closes it; they can arrive in any order, twice, or merged. The store
applies posts with "fill what is missing" and patches with "override with what is given" semantics, so each
record carries only the columns the operation actually gave (``None`` = not given).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from tracetune.errors import InvalidInput, Unprocessable, shown
from tracetune.ingest.usage import usage_counts
from tracetune.timeutil import dotted_segment, time_to_us

Kind = Literal["post", "patch"]

JSON_OBJECT_FIELDS = ("inputs", "outputs", "extra", "serialized")
THREAD_KEYS = ("thread_id", "session_id", "conversation_id")
# Widths of the text columns these fields land in (``store/schema.py``); longer values are refused.
MAX_CHARS = {"name": 500, "run_type": 32, "dotted_order": 2000, "session_name": 500, "tag": 500, "thread_id": 500}
INT32 = 2**31
# LangSmith's run types (``langsmith.schemas.RunTypeEnum``); anything else is a 422 there and here.
RUN_TYPES = frozenset({"tool", "chain", "llm", "retriever", "embedding", "prompt", "parser"})
# One segment of a dotted order per ancestor, root first: ``<YYYYMMDDTHHMMSSffffff>Z<run id>``.
_SEGMENT_TEXT = r"\d{8}T\d{12}Z[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_SEGMENT = re.compile(_SEGMENT_TEXT)
_DOTTED = re.compile(rf"{_SEGMENT_TEXT}(?:\.{_SEGMENT_TEXT})*")


def parse_uuid(value: Any, field: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidInput(f"{shown(value)} is not a UUID", field=field) from None


def check_text(value: str, limit: int | None, field: str) -> str:
    """``value`` if both databases can store it: no NUL character, at most ``limit`` characters."""
    if "\x00" in value:
        raise InvalidInput("text may not contain NUL (\\u0000) characters", field=field)
    if limit is not None and len(value) > limit:
        raise InvalidInput(f"at most {limit} characters allowed, got {len(value)}", field=field)
    return value


def _dotted_ids(dotted: str, where: str) -> list[str]:
    """The run ids of a dotted order (32 lower-case hex digits, as ``UUID.hex``), root first; a 400 naming the
    field (and the bad segment) when it is not one."""
    if _DOTTED.fullmatch(dotted):  # the common case: one match for the whole text, then slices
        return [segment[22:].replace("-", "").lower() for segment in dotted.split(".")]
    for i, segment in enumerate(dotted.split(".")):
        if _SEGMENT.fullmatch(segment) is None:
            shown_segment = segment if len(segment) <= 80 else segment[:80] + "…"
            raise InvalidInput(
                f"segment {i + 1} ({shown_segment!r}) is not <YYYYMMDDTHHMMSSffffff>Z<run id>",
                field=f"{where}.dotted_order",
            )
    raise AssertionError("unreachable: every segment matched")


def _check_dotted_order(rec: dict[str, Any], where: str) -> None:
    """A dotted order must end with the run's own id, start with its trace's and name its parent next to last."""
    ids = _dotted_ids(rec["dotted_order"], where)
    field = f"{where}.dotted_order"
    if ids[-1] != rec["id"].hex:
        raise InvalidInput(f"its last segment names run {uuid.UUID(ids[-1])}, not this run ({rec['id']})", field=field)
    if "trace_id" in rec and ids[0] != rec["trace_id"].hex:
        raise InvalidInput(
            f"its first segment names run {uuid.UUID(ids[0])}, not the trace_id {rec['trace_id']}", field=field
        )
    parent = rec.get("parent_run_id")
    if parent is not None and (len(ids) < 2 or ids[-2] != parent.hex):
        raise InvalidInput(f"it does not name the parent_run_id {parent} before the run's own segment", field=field)
    if parent is None and len(ids) > 1:
        rec["parent_run_id"] = uuid.UUID(ids[-2])  # the dotted order says who the parent is


def _start_from_dotted_order(dotted: str) -> int | None:
    stamp = dotted.rsplit(".", 1)[-1][:22]  # YYYYMMDDTHHMMSSffffffZ
    if len(stamp) == 22 and stamp[8] == "T" and stamp[21] == "Z" and stamp.isascii():
        digits = stamp[:8] + stamp[9:21]
        if digits.isdigit():  # the fixed-width form every SDK writes: no strptime (several times slower)
            try:
                dt = datetime(
                    int(digits[:4]),
                    int(digits[4:6]),
                    int(digits[6:8]),
                    int(digits[8:10]),
                    int(digits[10:12]),
                    int(digits[12:14]),
                    int(digits[14:20]),
                    tzinfo=UTC,
                )
            except ValueError:
                pass  # strptime decides
            else:
                return time_to_us(dt, "dotted_order")
    try:
        dt = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return time_to_us(dt, "dotted_order")


def _tokens(run: dict[str, Any], outputs: Any, extra: Any) -> tuple[Any, Any, Any]:
    """(prompt, completion, total): the run's own counts, else from wherever its client put its usage."""
    prompt, completion, total = run.get("prompt_tokens"), run.get("completion_tokens"), run.get("total_tokens")
    if total is not None:
        return prompt, completion, total
    counts = usage_counts(outputs, extra)
    return counts if counts is not None else (prompt, completion, total)


def _int_or_none(value: Any) -> int | None:
    """A token count as stored (a 32-bit integer column); anything else counts as not given."""
    ok = isinstance(value, int) and not isinstance(value, bool) and -INT32 <= value < INT32
    return value if ok else None


def run_record(run: Any, kind: Kind, where: str) -> dict[str, Any]:
    """Validate and normalise one run object. ``where`` names it in errors (e.g. ``post[3]``)."""
    if not isinstance(run, dict):
        raise InvalidInput(f"a run must be a JSON object, got {type(run).__name__}", field=where)
    if "id" not in run or run["id"] is None:
        raise InvalidInput("a run needs an 'id'", field=f"{where}.id")
    rec: dict[str, Any] = {"id": parse_uuid(run["id"], f"{where}.id")}
    for key in ("trace_id", "parent_run_id", "reference_example_id", "session_id"):
        if run.get(key) is not None:
            rec[key] = parse_uuid(run[key], f"{where}.{key}")
    for key in ("name", "run_type", "dotted_order", "session_name"):
        value = run.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise InvalidInput(f"expected a string, got {type(value).__name__}", field=f"{where}.{key}")
            rec[key] = check_text(value, MAX_CHARS[key], f"{where}.{key}")
    if "run_type" in rec and rec["run_type"] not in RUN_TYPES:
        raise Unprocessable(
            f"{shown(rec['run_type'])} is not a run type; expected one of {', '.join(sorted(RUN_TYPES))}",
            field=f"{where}.run_type",
        )
    if "dotted_order" in rec:
        _check_dotted_order(rec, where)
    if run.get("start_time") is not None:
        rec["start_us"] = time_to_us(run["start_time"], f"{where}.start_time")
    if run.get("end_time") is not None:
        rec["end_us"] = time_to_us(run["end_time"], f"{where}.end_time")
    for key in JSON_OBJECT_FIELDS:
        value = run.get(key)
        if value is not None and not isinstance(value, dict):
            raise InvalidInput(f"expected a JSON object, got {type(value).__name__}", field=f"{where}.{key}")
        if value is not None:
            rec[key] = value
    # An open run's post carries ``outputs: {}``; it must not hide the outputs a patch brings.
    if kind == "post" and rec.get("outputs") == {} and "end_us" not in rec:
        del rec["outputs"]
    events = run.get("events")
    if events is not None:
        if not isinstance(events, list):
            raise InvalidInput("expected a JSON array", field=f"{where}.events")
        rec["events"] = events
        for event in events:
            if isinstance(event, dict) and event.get("name") == "new_token" and event.get("time"):
                with contextlib.suppress(InvalidInput):  # a bad token time is dropped, not an error
                    rec["first_token_us"] = time_to_us(event["time"], f"{where}.events")
                break
    tags = run.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InvalidInput("expected a list of strings", field=f"{where}.tags")
        for i, tag in enumerate(tags):
            check_text(tag, MAX_CHARS["tag"], f"{where}.tags[{i}]")
        rec["tags"] = tags
    error = run.get("error")
    if error is not None:
        if not isinstance(error, str):
            raise InvalidInput(f"expected a string, got {type(error).__name__}", field=f"{where}.error")
        rec["error"] = check_text(error, None, f"{where}.error")
    prompt, completion, total = _tokens(run, rec.get("outputs"), rec.get("extra"))
    for key, value in (("prompt_tokens", prompt), ("completion_tokens", completion), ("total_tokens", total)):
        if _int_or_none(value) is not None:
            rec[key] = value
    meta = rec.get("extra", {}).get("metadata")
    if isinstance(meta, dict):
        for key in meta:  # each key becomes a run_metadata row
            check_text(key, 500, f"{where}.extra.metadata")
        for key in THREAD_KEYS:
            if meta.get(key) is not None:
                thread = str(meta[key])
                rec["thread_id"] = check_text(thread, MAX_CHARS["thread_id"], f"{where}.extra.metadata.{key}")
                break
    if kind == "post" and "parent_run_id" not in rec:  # a root: its own trace, and a dotted order of one segment
        rec.setdefault("trace_id", rec["id"])
        if "dotted_order" not in rec and "start_us" in rec and rec["trace_id"] == rec["id"]:
            rec["dotted_order"] = dotted_segment(rec["start_us"], rec["id"])
    # A child posted without a dotted order (``Client.create_run(parent_run_id=…)``) gets it, and its trace id,
    # from its parent when both are stored (``RunStore``), whichever arrives first.
    if "start_us" not in rec and kind == "patch":
        start = _start_from_dotted_order(rec["dotted_order"]) if "dotted_order" in rec else None
        rec["start_us"] = start if start is not None else rec.get("end_us")
    return rec


def merge_records(records: list[dict[str, Any]], kind: Kind) -> list[dict[str, Any]]:
    """One record per run id: for posts the first value given wins, for patches the last one."""
    merged: dict[uuid.UUID, dict[str, Any]] = {}
    for rec in records:
        current = merged.get(rec["id"])
        if current is None:
            merged[rec["id"]] = dict(rec)
        elif kind == "post":
            for key, value in rec.items():
                current.setdefault(key, value)
        else:
            current.update(rec)
    return list(merged.values())
