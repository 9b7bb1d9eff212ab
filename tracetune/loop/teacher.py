"""Distillation from the teacher: the app's production model (any OpenAI-compatible endpoint: the hosted model the
app used before its tuned one, another tracetune, a vLLM) answers the traced inputs the tuned model should learn
better — runs rated bad, failed runs, runs never rated — and its answers are stored as runs of their own.

:func:`label_runs` selects a project's LLM runs (the filter language), reads each one's rating (the newest score
under ``rating_key`` on the run, else on its trace root) and picks, per ``which``: ``disliked`` (rated
``<= bad_score``, or failed), ``unrated``, ``disliked_or_unrated`` (the default) or ``all``. Each picked run's
prompt (its input messages, tools and functions: :func:`tracetune.convert.sessions.prompt_from_run`) is sent to
the teacher (``temperature`` 0), at most ``max_per_s`` requests a second, and its answer stored at once through
the ingest path as a new run — ``run_type`` llm, name ``teacher``, tag ``teacher``, metadata
``teacher_source_run_id`` / ``teacher_model``, the token usage the teacher reported — in the same project (or
``into``): selectable (``has(tags, "teacher")``), reviewable and exportable like any run. A run already labeled by
an earlier call (a teacher run names it) is not sent again, so a stopped or failed call resumes where it stopped.
The first request the teacher refuses or times out on stops the call with :class:`TeacherFailed` naming the URL;
what was stored stays. The summary counts the tokens the teacher used (its cost).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tracetune.convert.sessions import prompt_from_run
from tracetune.errors import InvalidInput, TracetuneError
from tracetune.query.selection import selection_statement, stream_run_groups
from tracetune.train.grader_sandbox import RunError
from tracetune.train.model_graders import ModelEndpoint

if TYPE_CHECKING:
    from tracetune.ingest.service import IngestService
    from tracetune.store import Store

WHICH = ("disliked_or_unrated", "disliked", "unrated", "all")
TAG = "teacher"
SOURCE_KEY = "teacher_source_run_id"
Progress = Callable[[int, int], None]  # (labeled so far, to label)


class TeacherFailed(TracetuneError):
    """The teacher refused, timed out or answered nonsense: what it said, and where."""

    status_code = 502


@dataclass(frozen=True)
class Teacher:
    """The teacher model: an OpenAI-compatible API (``base_url`` ends in ``/v1``), its model name and key."""

    base_url: str
    model: str
    api_key: str | None = None
    max_per_s: float = 2.0
    max_tokens: int = 512
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"the teacher URL must be http(s)://…/v1, not {self.base_url!r}", field="base_url")
        if not self.model.strip():
            raise InvalidInput("the teacher's model name is required", field="model")
        if not self.max_per_s > 0:
            raise InvalidInput("max_per_s must be above 0", field="max_per_s")


@dataclass
class LabelSummary:
    selected: int = 0  # LLM runs the selection found (the teacher's own runs not counted)
    picked: int = 0  # of them, rated as ``which`` asks
    already: int = 0  # picked runs an earlier call labeled
    labeled: int = 0  # labeled now
    skipped: dict[str, int] = field(default_factory=dict)  # picked runs with no chat prompt, by reason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    teacher_run_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Asker:
    """Asks the teacher, at most ``max_per_s`` requests a second, counting the tokens it reports."""

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher
        self.endpoint = ModelEndpoint(teacher.base_url, teacher.api_key, timeout_s=teacher.timeout_s)
        self.interval, self.last = 1.0 / teacher.max_per_s, 0.0
        self.prompt_tokens = self.completion_tokens = 0

    def ask(self, prompt: Any) -> dict[str, Any]:
        wait = self.last + self.interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.last = time.monotonic()
        answered = _ask(self.endpoint, self.teacher, prompt)
        usage = answered.get("usage") or {}
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.completion_tokens += int(usage.get("completion_tokens") or 0)
        return answered


def _wanted(which: str, score: float | None, failed: bool, bad_score: float) -> bool:
    disliked = failed or (score is not None and score <= bad_score)
    return {
        "all": True, "disliked": disliked, "unrated": score is None and not failed,
        "disliked_or_unrated": disliked or score is None,
    }[which]  # fmt: skip


def label_runs(
    store: Store,
    ingest: IngestService,
    workspace_id: uuid.UUID,
    teacher: Teacher,
    *,
    project: str,
    filter: str | None = None,
    which: str = "disliked_or_unrated",
    rating_key: str = "user_score",
    bad_score: float = 0.0,
    limit: int | None = None,
    into: str | None = None,
    progress: Progress | None = None,
) -> LabelSummary:
    """Have ``teacher`` answer the picked runs of ``project`` (see the module docstring); the summary."""
    if which not in WHICH:
        raise InvalidInput(f"which must be one of {', '.join(WHICH)}", field="which")
    started = time.perf_counter()
    summary = LabelSummary()
    stmt = selection_statement(store, workspace_id, project=project, run_type="llm", filter=filter)
    done: set[str] = set()
    picked: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for runs, _, ratings in stream_run_groups(store, workspace_id, stmt, rating_key=rating_key):
        for run in runs:
            source = ((run.get("extra") or {}).get("metadata") or {}).get(SOURCE_KEY)
            if source:
                done.add(str(source))
                continue
            summary.selected += 1
            if _wanted(which, ratings.get(run["id"]), bool(run.get("error")), bad_score):
                picked.append(run)
    summary.picked = len(picked)
    todo = []
    for run in picked:
        if run["id"] in done:
            summary.already += 1
            continue
        prompt: Any = prompt_from_run(run)
        if "reason" in prompt:  # a Skip
            skipped[str(prompt["reason"])] += 1
            continue
        todo.append((run, prompt))
    summary.skipped = dict(skipped)
    todo = todo[:limit] if limit is not None else todo
    asker = _Asker(teacher)
    try:
        for n, (run, prompt) in enumerate(todo, 1):
            stored = _teacher_run(run, prompt, asker.ask(prompt), teacher, into or project)
            ingest.post_run(workspace_id, stored)
            summary.labeled += 1
            summary.teacher_run_ids.append(stored["id"])
            if progress is not None:
                progress(n, len(todo))
    finally:
        summary.prompt_tokens, summary.completion_tokens = asker.prompt_tokens, asker.completion_tokens
    summary.seconds = round(time.perf_counter() - started, 2)
    return summary


def _request(teacher: Teacher, prompt: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": teacher.model, "messages": prompt["messages"], "temperature": 0,
                            "max_tokens": teacher.max_tokens}  # fmt: skip
    for key in ("tools", "functions", "parallel_tool_calls"):
        if prompt.get(key) is not None and (key != "parallel_tool_calls" or prompt.get("tools")):
            body[key] = prompt[key]
    return body


def _ask(endpoint: ModelEndpoint, teacher: Teacher, prompt: Any) -> dict[str, Any]:
    try:
        answered = endpoint.complete(_request(teacher, prompt))
    except RunError as exc:
        raise TeacherFailed(f"the teacher at {teacher.base_url} failed: {exc}", field="base_url") from None
    choices = answered.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0].get("message"), dict):
        raise TeacherFailed(f"the teacher at {teacher.base_url} answered no chat completion: {str(answered)[:300]}",
                            field="base_url")  # fmt: skip
    return answered


def _teacher_run(
    source: dict[str, Any], prompt: Any, answered: dict[str, Any], teacher: Teacher, project: str
) -> dict[str, Any]:
    run_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    inputs = _request(teacher, prompt)
    inputs.pop("model")
    return {
        "id": run_id, "trace_id": run_id, "dotted_order": f"{now.strftime('%Y%m%dT%H%M%S%fZ')}{run_id}",
        "name": TAG, "run_type": "llm", "start_time": now.isoformat(), "end_time": now.isoformat(),
        "session_name": project, "inputs": inputs, "outputs": answered, "tags": [TAG],
        "extra": {
            "metadata": {SOURCE_KEY: str(source["id"]), "teacher_model": teacher.model,
                         "teacher_base_url": teacher.base_url, "ls_model_name": teacher.model, "ls_provider": "openai"},
            "invocation_params": {"model": teacher.model, "temperature": 0, "max_tokens": teacher.max_tokens},
        },
    }  # fmt: skip


@dataclass
class ReferenceSummary:
    records: int = 0  # held-out records read
    already: int = 0  # answered by an earlier call (their lines are in the output already)
    answered: int = 0  # answered now
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


def _prompt_of(record: dict[str, Any], line: int) -> dict[str, Any]:
    """The record without its final assistant answer (a record of inputs only is its own prompt)."""
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput(f"line {line}: a record needs a 'messages' list", field="data", line=line)
    while messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        messages = messages[:-1]
    if not messages:
        raise InvalidInput(f"line {line}: nothing to answer before the assistant turn", field="data", line=line)
    return {**record, "messages": messages}


def reference_answers(
    records: list[dict[str, Any]],
    teacher: Teacher,
    write: Callable[[dict[str, Any]], None],
    *,
    already: int = 0,
    progress: Progress | None = None,
) -> ReferenceSummary:
    """The teacher's answers to held-out inputs, as reference answers: each record (its messages up to the last
    user turn, its tools) is sent to the teacher and ``write`` gets the record with the teacher's answer as its last
    message — a held-out record ``tracetune eval`` and automations score against. The first ``already`` records
    were answered by an earlier call and are skipped (resumable); at most ``max_per_s`` requests a second."""
    started = time.perf_counter()
    summary = ReferenceSummary(records=len(records), already=min(already, len(records)))
    prompts = [_prompt_of(r, n) for n, r in enumerate(records, 1)]  # every line checked before anything is asked
    asker = _Asker(teacher)
    todo = prompts[summary.already :]
    try:
        for n, prompt in enumerate(todo, 1):
            answered = asker.ask(prompt)
            message = {k: v for k, v in answered["choices"][0]["message"].items() if v is not None}
            write({**prompt, "messages": [*prompt["messages"], message]})
            summary.answered += 1
            if progress is not None:
                progress(n, len(todo))
    finally:
        summary.prompt_tokens, summary.completion_tokens = asker.prompt_tokens, asker.completion_tokens
    summary.seconds = round(time.perf_counter() - started, 2)
    return summary
