"""Pure functions that shape data for the UI's templates (no I/O, no web framework): run facets → a filter
expression, a trace's runs → a tree with timing bars, an LLM run → a chat, metrics events → a loss chart."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

THUMBS_KEY = "user_score"  # the feedback key of the UI's thumbs up (score 1) / down (score 0)
CORRECTION_KEY = "correction"
FEEDBACK_FACETS = {
    "up": f'and(eq(feedback_key, "{THUMBS_KEY}"), eq(feedback_score, 1))',
    "down": f'and(eq(feedback_key, "{THUMBS_KEY}"), eq(feedback_score, 0))',
    "corrected": f'eq(feedback_key, "{CORRECTION_KEY}")',
}


ERROR_FACETS = {"only": "eq(error, true)", "none": "eq(error, false)"}


def combined_filter(
    user_filter: str | None,
    feedback: str | None,
    *,
    errors: str | None = None,
    root: bool = False,
    since: str | None = None,
) -> str | None:
    """The user's filter (checked by the caller on its own, so error positions are the user's) and-ed with the
    feedback facet's expression (and, for a filter that stands alone — the dataset builder's — the errors, root and
    time-range facets, ``since`` an ISO time: the runs page applies those as query parameters)."""
    facets = (
        FEEDBACK_FACETS.get(feedback or "", ""),
        ERROR_FACETS.get(errors or "", ""),
        "eq(parent_run_id, null)" if root else "",
        f'gte(start_time, "{since}")' if since else "",
    )
    parts = [p for p in ((user_filter or "").strip(), *facets) if p]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else f"and({', '.join(parts)})"


def selection_filter(selection: dict[str, Any]) -> str:
    """A stored dataset selection as one runs-page filter: its run type, filter and feedback condition (the runs
    page shows the runs with that feedback of their own; the dataset also took runs whose ROOT has it)."""
    parts = []
    if selection.get("run_type"):
        parts.append(f"eq(run_type, {json.dumps(selection['run_type'])})")
    if selection.get("filter"):
        parts.append(str(selection["filter"]))
    if selection.get("feedback_key") is not None:
        parts.append(f"eq(feedback_key, {json.dumps(selection['feedback_key'])})")
        if selection.get("min_score") is not None:
            parts.append(f"gte(feedback_score, {float(selection['min_score'])!r})")
    return parts[0] if len(parts) == 1 else f"and({', '.join(parts)})" if parts else ""


def check_filter(text: str | None) -> None:
    """Raise the filter language's ``InvalidInput`` (with ``position`` in ``text``) for a filter that does not
    parse or names an unknown field; None when fine. Compiles the SQL expression only (no query runs)."""
    if text and text.strip():
        from tracetune.query.filter_sql import check_filter as compile_check

        compile_check(text)


def caret_line(position: int | None) -> str:
    """Spaces then ``^`` under character ``position`` (an inline error marker below the filter text)."""
    return "" if position is None else " " * max(0, position) + "^"


# -- the trace tree --------------------------------------------------------------------------------------------


@dataclass
class TreeRow:
    run: dict[str, Any]
    depth: int
    offset_pct: float  # where its bar starts in the trace's span
    width_pct: float  # how long it is


def trace_tree(runs: list[dict[str, Any]]) -> list[TreeRow]:
    """The runs of one trace (``run_view`` dicts, any order) depth-first by start time, each with its depth and
    its timing bar in percent of the trace's span. A run whose parent is missing is shown at the top level."""
    if not runs:
        return []
    ids = {r["id"] for r in runs}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for run in runs:
        parent = run.get("parent_run_id")
        children.setdefault(parent if parent in ids else None, []).append(run)
    for group in children.values():
        group.sort(key=lambda r: (r.get("start_time") or "", r["id"]))
    starts = [_us(r.get("start_time")) for r in runs]
    ends = [_us(r.get("end_time")) or _us(r.get("start_time")) for r in runs]
    t0 = min((s for s in starts if s is not None), default=0)
    t1 = max((e for e in ends if e is not None), default=t0)
    span = max(t1 - t0, 1)
    out: list[TreeRow] = []
    stack: list[tuple[dict[str, Any], int]] = [(r, 0) for r in reversed(children.get(None, []))]
    seen: set[str] = set()
    while stack:
        run, depth = stack.pop()
        if run["id"] in seen:
            continue
        seen.add(run["id"])
        start = _us(run.get("start_time")) or t0
        end = _us(run.get("end_time")) or start
        offset = 100.0 * (start - t0) / span
        width = max(100.0 * (end - start) / span, 0.5)
        out.append(TreeRow(run, depth, round(offset, 2), round(min(width, 100.0 - offset) or 0.5, 2)))
        stack.extend((child, depth + 1) for child in reversed(children.get(run["id"], [])))
    return out


def _us(iso: str | None) -> int | None:
    if not iso:
        return None
    from datetime import datetime

    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return int(dt.timestamp() * 1_000_000)


# -- LLM runs as chats -----------------------------------------------------------------------------------------


@dataclass
class ChatView:
    messages: list[dict[str, Any]] = field(default_factory=list)  # with "arguments_pretty" on tool calls
    tools: list[dict[str, Any]] = field(default_factory=list)  # {"name", "description", "parameters"}
    skipped: str | None = None  # why the run is not shown as a chat, in words
    answer: dict[str, Any] | None = None  # the run's final assistant message, as the converter read it
    waiting: str | None = None  # no answer (yet): the prompt is shown, and this says why there is no answer

    def answer_text(self) -> str:
        """The answer as the correction editor starts it: its text, or the message as JSON when it calls tools."""
        if not self.answer:
            return ""
        content = self.answer.get("content")
        if isinstance(content, str) and not self.answer.get("tool_calls"):
            return content
        return _pretty({k: v for k, v in self.answer.items() if k in ("role", "content", "tool_calls")})


def chat_view(run: dict[str, Any]) -> ChatView | None:
    """An LLM run as the converter reads it (``session_from_run``: the SAME normalisation datasets use), shaped
    for display; None for a run that is not an LLM run."""
    if run.get("run_type") != "llm":
        return None
    from tracetune.convert.sessions import prompt_from_run, session_from_run

    result: Any = session_from_run(run)
    waiting = None
    if result.get("reason") == "no_output":  # pending, or it recorded no answer: the prompt alone
        result = prompt_from_run(run)
        waiting = "No answer yet: the run is still running." if run.get("status") == "pending" else (
            "The run recorded no answer.")  # fmt: skip
    if "reason" in result:
        reason = result["reason"]
        said = SKIP_REASONS.get(reason) or f"tracetune cannot read it as a chat: {result.get('detail', '')}"
        return ChatView(skipped=said)
    messages = [display_message(m) for m in result.get("messages", [])]
    tools = [_tool(t) for t in result.get("tools") or []] + [_tool(f) for f in result.get("functions") or []]
    raw = result.get("messages") or []
    answer = raw[-1] if raw and not waiting else None
    return ChatView(messages=messages, tools=tools, answer=answer, waiting=waiting)


# the converter's reasons for not reading a run as a chat, as the trace page says them
SKIP_REASONS = {
    "error": "the run failed before it answered",
    "no_output": "the run recorded no answer",
    "batched": "the run holds several prompts at once (a batch)",
}


PREVIEW_CHARS = 120


def run_preview(run: Mapping[str, Any]) -> tuple[str, str]:
    """``(input, output)`` of a runs-table row, one line each: an LLM run's last user message and its answer (the
    text, or ``name(arguments)`` per tool call), read as the converter reads it; any other run's first text value
    of its inputs and outputs (else their JSON)."""
    if run.get("run_type") == "llm":
        chat = chat_view(dict(run))
        if chat is not None and chat.messages:
            raw = [m for m in chat.messages if m.get("role") == "user"]
            said = _line(raw[-1].get("content") or "") if raw else ""
            answer = chat.answer or {}
            calls = [f"{c['function'].get('name')}({_compact(c['function'].get('arguments'))})"
                     for c in answer.get("tool_calls") or [] if isinstance(c.get("function"), dict)]  # fmt: skip
            text = answer.get("content") if isinstance(answer.get("content"), str) else ""
            return said, _line(" ".join([text or "", *calls]).strip())
    return _line(_first_text(run.get("inputs"))), _line(_first_text(run.get("outputs")))


def model_name(run: Mapping[str, Any]) -> str:
    """The model an LLM run called, as the tracer recorded it (``ls_model_name``, or the invocation's ``model``)."""
    extra = _mapping(run.get("extra"))
    metadata, params = _mapping(extra.get("metadata")), _mapping(extra.get("invocation_params"))
    return str(metadata.get("ls_model_name") or params.get("model") or params.get("model_name") or "")


def model_parameters(run: Mapping[str, Any]) -> dict[str, str]:
    """The scalar settings an LLM call was made with (temperature, max_tokens, …: the tracer's
    ``invocation_params``, without the model name, messages or tools), each as short text."""
    params = _mapping(_mapping(run.get("extra")).get("invocation_params"))
    skipped = {"model", "model_name", "messages", "tools", "functions", "_type", "stream", "n"}
    return {
        k: _line(_compact(v))
        for k, v in params.items()
        if k not in skipped and v is not None and not isinstance(v, dict | list)
    }


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _first_text(value: Any) -> str:
    if value is None or value == {}:
        return ""
    if isinstance(value, dict):
        texts = [v for v in value.values() if isinstance(v, str) and v.strip()]
        if texts:
            return texts[0]
    return _compact(value)


def _compact(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))


def _line(text: str) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


def correction_view(correction: Any, answer: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's correction beside its answer: the message it stands for (as datasets read it), and where the answer
    differs from it (``differences``: each argument, or the words); ``invalid`` when it reads as no message."""
    from tracetune.chat.scoring import differences
    from tracetune.convert.hygiene import correction_message
    from tracetune.errors import InvalidInput

    try:
        message = dict(correction_message(correction))
    except InvalidInput as exc:
        return {"invalid": str(exc), "message": None, "differences": []}
    found = differences(message, answer) if answer else []
    return {"invalid": None, "message": display_message(message), "differences": found}


def display_message(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat message with its text content and tool calls' arguments pretty-printed for display."""
    content = message.get("content")
    if isinstance(content, list):
        texts = [p.get("text", "") if isinstance(p, dict) and p.get("type") == "text" else _pretty(p) for p in content]
        content = "\n".join(texts)
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        calls.append(
            {"id": call.get("id"), "name": fn.get("name"), "arguments": _pretty_arguments(fn.get("arguments"))}
        )
    if message.get("function_call"):
        fn = message["function_call"]
        calls.append({"id": None, "name": fn.get("name"), "arguments": _pretty_arguments(fn.get("arguments"))})
    return {
        "role": message.get("role", "?"),
        "name": message.get("name"),
        "content": content if content is None or isinstance(content, str) else _pretty(content),
        "tool_calls": calls,
        "tool_call_id": message.get("tool_call_id"),
    }


def _tool(spec: dict[str, Any]) -> dict[str, Any]:
    fn = spec.get("function", spec) if isinstance(spec, dict) else {}
    return {
        "name": fn.get("name"),
        "description": fn.get("description"),
        "parameters": _pretty(fn.get("parameters")) if fn.get("parameters") is not None else "",
    }


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _pretty_arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            return _pretty(json.loads(arguments))
        except ValueError:
            return arguments
    return _pretty(arguments)


# -- the loss chart --------------------------------------------------------------------------------------------


@dataclass
class LossChart:
    width: int
    height: int
    train: str  # SVG polyline points
    valid: str
    train_points: list[tuple[float, float]]  # (x, y) of each validation marker, to draw circles
    valid_points: list[tuple[float, float]]
    y_min: float
    y_max: float
    first_step: int
    steps: int  # the last step


def loss_chart(
    metrics: list[dict[str, Any]], width: int = 640, height: int = 240, pad: int = 32, key: str = "loss"
) -> LossChart | None:
    """SVG coordinates of the train and validation loss (or another ``train_<key>`` / ``valid_<key>`` figure: a
    DPO job's ``reward_margin``) over steps, from the job's ``metrics`` events' data (``{"step", "train_loss",
    "valid_loss"?}``); None when there is none yet."""
    train_key, valid_key = f"train_{key}", f"valid_{key}"
    train = [(m["step"], m[train_key]) for m in metrics if _num(m.get("step")) and _num(m.get(train_key))]
    valid = [(m["step"], m[valid_key]) for m in metrics if _num(m.get("step")) and _num(m.get(valid_key))]
    if not train and not valid:
        return None
    values = [v for _, v in train + valid]
    steps = [s for s, _ in train + valid]
    y_min, y_max = min(values), max(values)
    if y_max - y_min < 1e-9:
        y_min, y_max = y_min - 0.5, y_max + 0.5
    s_min, s_max = min(steps), max(steps)
    s_span = max(s_max - s_min, 1)

    def point(step: float, loss: float) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * ((step - s_min) / s_span)
        y = pad + (height - 2 * pad) * (1 - (loss - y_min) / (y_max - y_min))
        return round(x, 1), round(y, 1)

    train_points = [point(s, v) for s, v in train]
    valid_points = [point(s, v) for s, v in valid]

    def line(points: list[tuple[float, float]]) -> str:
        return " ".join(f"{x},{y}" for x, y in points)

    return LossChart(
        width,
        height,
        line(train_points),
        line(valid_points),
        train_points,
        valid_points,
        y_min,
        y_max,
        int(s_min),
        int(s_max),
    )


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


class JobQuality(TypedDict):
    """What a job's events say about the model it made: per-epoch validation scores, the served (best) step, an
    early stop, the served epoch's answers and the diagnostics (:mod:`tracetune.chat.diagnose`)."""

    epochs: list[dict[str, Any]]  # {"step", "epoch", "valid_loss", "valid_accuracy", "valid_tool_args_exact", ...}
    best_step: int | None
    best: dict[str, Any] | None  # the best epoch's row of ``epochs``
    early_stop: dict[str, Any] | None
    answers: dict[str, int]
    findings: list[dict[str, Any]]


def job_quality(events: Sequence[Mapping[str, Any]]) -> JobQuality:
    """:class:`JobQuality` from a job's events (oldest first)."""
    epochs = [
        e["data"]
        for e in events
        if e["type"] == "metrics" and isinstance(e["data"], dict) and "valid_accuracy" in e["data"]
    ]
    best_step = early_stop = None
    answers: dict[str, int] = {}
    findings: list[dict[str, Any]] = []
    for e in events:
        data = e["data"] if isinstance(e["data"], dict) else {}
        if "best_step" in data and "reason" not in data:
            best_step = data["best_step"]
        elif "reason" in data and "best_step" in data:
            early_stop = data
        elif "answers" in data:
            answers = data["answers"]
        elif "diagnostic" in data:
            findings.append(data["diagnostic"])
    best = next((row for row in epochs if row.get("step") == best_step), None)
    return {"epochs": epochs, "best_step": best_step, "best": best, "early_stop": early_stop, "answers": answers,
            "findings": findings}  # fmt: skip
