"""What the UI's buttons do, as plain functions over the store and the existing services (no web framework):
rate a run (the feedback model the API writes), add runs to a dataset as examples (as ``POST
/api/v1/examples`` with ``use_source_run_io``), start a fine-tune from a stored dataset (the dataset's JSONL
uploaded as files, then ``create_job`` exactly as ``POST /v1/fine_tuning/jobs`` calls it)."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from tracetune.errors import InvalidInput
from tracetune.server.ui.views import CORRECTION_KEY, THUMBS_KEY
from tracetune.store.rows import FeedbackRow

if TYPE_CHECKING:
    from tracetune.ingest.service import IngestService
    from tracetune.store import Store
    from tracetune.store.workspaces import Workspace

UI_SOURCE = {"type": "app", "metadata": {"via": "tracetune-ui"}}
NOTE_KEY = "note"  # a reviewer's comment on a run (LangSmith's annotation notes use this key)
NOTE_MAX_CHARS = 4000


def parse_correction(text: str) -> Any:
    """A correction typed in the UI: a JSON object (an assistant message …) or plain text (the answer's text).
    Checked with the converter's own reader, so a saved correction is one a dataset can use."""
    from tracetune.convert.hygiene import correction_message

    stripped = text.strip()
    if not stripped:
        raise InvalidInput("the correction is empty", field="correction")
    value: Any = stripped
    if stripped.startswith(("{", "[")):
        try:
            value = json.loads(stripped)
        except ValueError as exc:
            raise InvalidInput(f"the correction is not valid JSON: {exc}", field="correction") from None
    correction_message(value)
    return value


def rate_run(
    store: Store,
    ingest: IngestService,
    ws: Workspace,
    run: dict[str, Any],
    kind: str,
    correction: str = "",
    comment: str = "",
) -> FeedbackRow:
    """Thumbs ``up``/``down`` (key ``user_score``, score 1/0), a ``correction`` or a ``note`` (key ``note``, a
    comment, as LangSmith's annotation notes) on ``run`` (a ``run_view``). The UI keeps one of each per run:
    clicking again updates its earlier feedback rather than adding another."""
    changes: dict[str, Any]
    if kind in ("up", "down"):
        key, changes = THUMBS_KEY, {"score": 1.0 if kind == "up" else 0.0}
    elif kind == "correction":
        key, changes = CORRECTION_KEY, {"correction": parse_correction(correction)}
    elif kind == "note":
        text = comment.strip()
        if not text or len(text) > NOTE_MAX_CHARS:
            raise InvalidInput(f"a note is 1 to {NOTE_MAX_CHARS} characters, not {len(text)}", field="comment")
        key, changes = NOTE_KEY, {"comment": text}
    else:
        raise InvalidInput(f"unknown feedback kind {kind!r}; expected up, down, correction or note", field="kind")
    run_id = uuid.UUID(run["id"])
    mine = [
        f
        for f in store.feedback.list(ws.id, run_ids=[run_id], keys=[key], limit=1000)
        if (f.get("feedback_source") or {}).get("metadata") == UI_SOURCE["metadata"]
    ]
    if mine:
        return store.feedback.update(ws.id, mine[-1]["id"], changes)
    body = {
        "run_id": run["id"],
        "trace_id": run.get("trace_id"),
        "session_id": run.get("session_id"),
        "key": key,
        "feedback_source": UI_SOURCE,
        **changes,
    }
    return ingest.feedback(ws.id, body)


def add_runs_to_dataset(store: Store, ws: Workspace, runs: list[dict[str, Any]], dataset_name: str) -> dict[str, Any]:
    """``runs`` as new examples of the dataset named ``dataset_name`` (made when missing), in one new version: each
    run's inputs (with the tools it offered) and outputs, its source run and trace kept; the new version's row
    (``id``: the version's, ``name``: the dataset's)."""
    from tracetune.convert.examples import run_example_io
    from tracetune.store.examples import NewExample

    name = dataset_name.strip()
    if not name:
        raise InvalidInput("name the dataset to add the runs to", field="dataset")
    examples = []
    for run in runs:
        if not isinstance(run.get("inputs"), dict):
            raise InvalidInput(f"run {run['id']} ({run.get('name')}) has no inputs to make an example of", field="run")
        inputs, outputs = run_example_io(run)
        trace_id = uuid.UUID(run["trace_id"]) if run.get("trace_id") else None
        examples.append(
            NewExample(inputs=inputs, outputs=outputs, source_run_id=uuid.UUID(run["id"]), trace_id=trace_id)
        )
    found = store.datasets.list_datasets(ws.id, name=name, limit=1)
    dataset = found[0] if found else store.datasets.create_dataset(ws.id, name)
    _, version = store.examples.add(ws.id, dataset["id"], examples)
    return {**version, "name": dataset["name"]}
