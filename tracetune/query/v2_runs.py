"""The run object of LangSmith's v2 read API (``langsmith.types.Run``), built from the v1 view (``run_view``).

v2 names the fields a caller wants in upper case (``selects``: ``RunSelectField``); a run carries those and
nothing else (no ``selects`` → ``id`` only, as upstream). Enums are upper case (``run_type`` ``LLM``, ``status``
``SUCCESS``), the project is ``project_id``, token and cost details are ``{"raw": {...}}``. Fields tracetune does
not keep (sharing, attachments' signed URLs, annotation-queue times, users) are selectable and null.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson

from tracetune.errors import InvalidInput, shown

PREVIEW_CHARS: Final = 250

View = Mapping[str, Any]


def preview(value: Any) -> str | None:
    """A short text of inputs/outputs/errors for lists: a lone string value as itself, anything else as compact
    JSON, cut at ``PREVIEW_CHARS``."""
    if value is None:
        return None
    if isinstance(value, Mapping) and len(value) == 1:
        (only,) = value.values()
        if isinstance(only, str):
            value = only
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _raw(value: Any) -> Any:
    return {"raw": value} if value is not None else None


def _metadata(extra: Any) -> Any:
    return extra.get("metadata") if isinstance(extra, Mapping) else None


def _none(_: Any) -> None:
    return None


# v2 select → (the v1 view field it is read from, how). The v1 names are what the query layer fetches.
_FIELDS: Final[dict[str, tuple[str, Callable[[Any], Any]]]] = {
    "ID": ("id", str),
    "NAME": ("name", lambda v: v),
    "RUN_TYPE": ("run_type", _upper),
    "STATUS": ("status", _upper),
    "START_TIME": ("start_time", lambda v: v),
    "END_TIME": ("end_time", lambda v: v),
    "LATENCY_SECONDS": ("latency", lambda v: v),
    "FIRST_TOKEN_TIME": ("first_token_time", lambda v: v),
    "ERROR": ("error", lambda v: v),
    "ERROR_PREVIEW": ("error", preview),
    "EXTRA": ("extra", lambda v: v),
    "METADATA": ("extra", _metadata),
    "EVENTS": ("events", lambda v: v),
    "INPUTS": ("inputs", lambda v: v),
    "INPUTS_PREVIEW": ("inputs", preview),
    "OUTPUTS": ("outputs", lambda v: v),
    "OUTPUTS_PREVIEW": ("outputs", preview),
    "MANIFEST": ("serialized", lambda v: v),
    "PARENT_RUN_IDS": ("parent_run_ids", lambda v: v),
    "PROJECT_ID": ("session_id", lambda v: v),
    "TRACE_ID": ("trace_id", lambda v: v),
    "THREAD_ID": ("thread_id", lambda v: v),
    "DOTTED_ORDER": ("dotted_order", lambda v: v),
    "IS_ROOT": ("parent_run_id", lambda v: v is None),
    "REFERENCE_EXAMPLE_ID": ("reference_example_id", lambda v: v),
    "REFERENCE_DATASET_ID": ("reference_dataset_id", _none),
    "TOTAL_TOKENS": ("total_tokens", lambda v: v),
    "PROMPT_TOKENS": ("prompt_tokens", lambda v: v),
    "COMPLETION_TOKENS": ("completion_tokens", lambda v: v),
    "TOTAL_COST": ("total_cost", lambda v: v),
    "PROMPT_COST": ("prompt_cost", lambda v: v),
    "COMPLETION_COST": ("completion_cost", lambda v: v),
    "PROMPT_TOKEN_DETAILS": ("prompt_token_details", _raw),
    "COMPLETION_TOKEN_DETAILS": ("completion_token_details", _raw),
    "PROMPT_COST_DETAILS": ("prompt_cost_details", _raw),
    "COMPLETION_COST_DETAILS": ("completion_cost_details", _raw),
    "PRICE_MODEL_ID": ("price_model_id", _none),
    "TAGS": ("tags", lambda v: v),
    "APP_PATH": ("app_path", lambda v: v),
    "ATTACHMENTS": ("attachments", _none),
    "THREAD_EVALUATION_TIME": ("thread_evaluation_time", _none),
    "IS_IN_DATASET": ("in_dataset", _none),
    "LAST_QUEUED_AT": ("last_queued_at", _none),
    "SHARE_URL": ("share_token", _none),
    "FEEDBACK_STATS": ("feedback_stats", lambda v: v),
    "LS_USER_ID": ("ls_user_id", _none),
}
RUN_SELECTS: Final = frozenset(_FIELDS)
# The v2 key of each select where it is not the lower-cased select.
_KEYS: Final = {"LATENCY_SECONDS": "latency_seconds", "MANIFEST": "manifest"}


def check_selects(selects: Iterable[str] | None, field: str = "selects") -> list[str]:
    """``selects`` as given, refused with the first unknown name (400 naming ``field``); None → ``["ID"]``."""
    chosen = list(selects) if selects else ["ID"]
    for name in chosen:
        if name not in RUN_SELECTS:
            raise InvalidInput(
                f"{shown(name)} is not a run field; selects takes upper-case RunSelectField names such as "
                "ID, NAME, INPUTS, OUTPUTS, FEEDBACK_STATS",
                field=field,
            )
    return chosen


def v1_fields(selects: Iterable[str]) -> list[str]:
    """The v1 view fields ``selects`` are read from: what the run query fetches (heavy columns only if named)."""
    return sorted({"id", *(_FIELDS[s][0] for s in selects)})


def v2_run(view: View, selects: Iterable[str]) -> dict[str, Any]:
    """The v2 run for a v1 ``view`` with the ``selects`` fields (``id`` always)."""
    out: dict[str, Any] = {"id": view["id"]}
    for name in selects:
        source, convert = _FIELDS[name]
        out[_KEYS.get(name, name.lower())] = convert(view.get(source))
    return out
