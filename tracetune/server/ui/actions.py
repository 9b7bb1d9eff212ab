"""What the UI's buttons do, as plain functions over the store and the existing services (no web framework):
rate a run (the feedback model the API writes), start a fine-tune from a stored dataset (the dataset's JSONL
uploaded as files, then ``create_job`` exactly as ``POST /v1/fine_tuning/jobs`` calls it)."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from tracetune.convert.examples import iter_dataset_records
from tracetune.errors import InvalidInput
from tracetune.server.ui.views import CORRECTION_KEY, THUMBS_KEY
from tracetune.store.rows import FeedbackRow, JobRow

if TYPE_CHECKING:
    from tracetune.config import Settings
    from tracetune.ingest.service import IngestService
    from tracetune.store import Store
    from tracetune.store.workspaces import Workspace

UI_SOURCE = {"type": "app", "metadata": {"via": "tracetune-ui"}}


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
    store: Store, ingest: IngestService, ws: Workspace, run: dict[str, Any], kind: str, correction: str = ""
) -> FeedbackRow:
    """Thumbs ``up``/``down`` (key ``user_score``, score 1/0) or a ``correction`` on ``run`` (a ``run_view``).
    The UI keeps one of each per run: clicking again updates its earlier feedback rather than adding another."""
    if kind in ("up", "down"):
        key, changes = THUMBS_KEY, {"score": 1.0 if kind == "up" else 0.0}
    elif kind == "correction":
        key, changes = CORRECTION_KEY, {"correction": parse_correction(correction)}
    else:
        raise InvalidInput(f"unknown feedback kind {kind!r}; expected up, down or correction", field="kind")
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


def fine_tune_dataset(
    store: Store, settings: Settings, ws: Workspace, dataset_id: uuid.UUID, request: dict[str, Any]
) -> JobRow:
    """Start a fine-tuning job on a stored dataset: its train (and validation) records are uploaded as
    ``fine-tune`` files, then ``request`` (an OpenAI job body without the files) goes to ``create_job``. The
    job's metadata names the dataset, which is the lineage the models page follows (model → job → dataset)."""
    from tracetune.train.jobs import FineTuningJobCreate, create_job

    dataset = store.datasets.get(ws.id, dataset_id)
    if not dataset["train_count"]:
        raise InvalidInput("the dataset has no training records", field="dataset")
    files: dict[str, str] = {}
    for split in ("train", "validation"):
        if split == "validation" and not dataset["validation_count"]:
            continue
        data = b"".join(
            orjson.dumps(r["record"], option=orjson.OPT_APPEND_NEWLINE)
            for r in iter_dataset_records(store, ws.id, dataset_id, split=split)
        )
        row = store.files.create(
            ws.id,
            settings.home / "files",
            filename=f"{dataset['name']}-v{dataset['version']}-{split}.jsonl",
            purpose="fine-tune",
            data=data,
        )
        files[split] = row["id"]
    metadata = {
        **(request.get("metadata") or {}),
        "dataset_id": str(dataset_id),
        "dataset": f"{dataset['name']} v{dataset['version']}",
    }
    body = {**request, "training_file": files["train"], "metadata": metadata}
    if "validation" in files:
        body["validation_file"] = files["validation"]
    return create_job(store, settings, ws, FineTuningJobCreate.parse(body))
