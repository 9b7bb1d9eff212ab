"""``tracetune eval`` over a LangSmith dataset, its results kept as LangSmith experiments (one per model).

``dataset_records`` reads a dataset's examples through the LangSmith API (``/api/v1``) of the server being
evaluated and turns each into the held-out record it holds (``tracetune.convert.examples.record_from_example``).
``record_experiments`` then writes, for every model, what ``langsmith.evaluate()`` writes: a project with the
dataset as its ``reference_dataset_id``, one LLM run per example (the prompt in, the model's reply out, the
``reference_example_id`` set, the request's latency as its duration) and one feedback per score (``correct``,
``name_correct``, ``args_exact``, ``valid_json``, ``text_exact``, ``text_fuzzy``: 1 or 0, where the score applies).
So ``list_projects(reference_dataset_id=…)``, the UI and a LangSmith user's scripts read tracetune's evaluations
the way they read their own. Everything goes through the HTTP API, so it works against ``--url`` as well.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tracetune.chat.scoring import split_record
from tracetune.convert.examples import record_from_example
from tracetune.errors import InvalidInput, NotFound

SCORE_KEYS = ("correct", "name_correct", "args_exact", "valid_json", "text_exact", "text_fuzzy")
_PAGE = 100


def _checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        is_json = response.headers.get("content-type", "").startswith("application/json")
        detail = response.json().get("detail") if is_json else None
        raise InvalidInput(f"{response.request.method} {response.request.url.path}: {detail or response.text}")
    return response.json()


def dataset_records(
    http: httpx.Client, name: str, limit: int | None = None
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """The dataset named ``name`` and ``(example id, record)`` of its examples in order (at most ``limit``)."""
    found = _checked(http.get("/api/v1/datasets", params={"name": name}))
    if not found:
        raise NotFound(f"no dataset named {name!r} on this server (list them: GET /api/v1/datasets)", field="dataset")
    dataset = found[0]
    out: list[tuple[str, dict[str, Any]]] = []
    offset = 0
    while limit is None or len(out) < limit:
        params = {"dataset": dataset["id"], "offset": offset, "limit": _PAGE}
        page = _checked(http.get("/api/v1/examples", params=params))
        for example in page:
            record = record_from_example(example)
            split_record(record, len(out) + 1)  # a held-out record: an assistant turn to compare against
            out.append((example["id"], record))
        if len(page) < _PAGE:
            break
        offset += len(page)
    out = out[:limit] if limit is not None else out
    if not out:
        raise InvalidInput(f"dataset {name!r} has no examples", field="dataset")
    return dataset, out


def _dotted(start: datetime, run_id: uuid.UUID) -> str:
    return start.strftime("%Y%m%dT%H%M%S%fZ") + str(run_id)


def record_experiments(
    http: httpx.Client,
    dataset: Mapping[str, Any],
    examples: Sequence[tuple[str, Mapping[str, Any]]],
    results: Mapping[str, Any],
    *,
    started: datetime | None = None,
) -> dict[str, dict[str, str]]:
    """Write one experiment per model of ``results`` (``tracetune.evaluate.replay.evaluate``'s, over ``examples``
    in order); ``{model: {"id", "name"}}`` of the experiments made."""
    started = started or datetime.now(UTC)
    made: dict[str, dict[str, str]] = {}
    for model, result in results["models"].items():
        name = f"tracetune-eval-{model.replace(':', '-')}-{uuid.uuid4().hex[:6]}"
        metadata = {"model": model, "runner": "tracetune eval", "dataset_version": dataset.get("modified_at")}
        body = {"name": name, "reference_dataset_id": dataset["id"], "extra": {"metadata": metadata}}
        project = _checked(http.post("/api/v1/sessions", json=body))
        runs, scores = [], []
        at = started
        for (example_id, record), row in zip(examples, result["results"], strict=True):
            prompt, _ = split_record(record)
            run_id = uuid.uuid4()
            end = at + timedelta(seconds=row.get("latency_s") or 0)
            inputs: dict[str, Any] = {"messages": prompt}
            for key in ("tools", "functions"):
                if record.get(key):
                    inputs[key] = record[key]
            runs.append(
                {
                    "id": str(run_id),
                    "trace_id": str(run_id),
                    "dotted_order": _dotted(at, run_id),
                    "name": model,
                    "run_type": "llm",
                    "start_time": at.isoformat(),
                    "end_time": end.isoformat(),
                    "inputs": inputs,
                    "outputs": {"message": row["reply"]},
                    "session_name": name,
                    "reference_example_id": example_id,
                    "extra": {"metadata": {"ls_model_name": model, "runner": "tracetune eval"}},
                }
            )
            scores += [(run_id, key, row[key]) for key in SCORE_KEYS if row.get(key) is not None]
            at = end + timedelta(microseconds=1)
        _checked(http.post("/api/v1/runs/batch", json={"post": runs}))
        for run_id, key, value in scores:
            feedback = {"run_id": str(run_id), "key": key, "score": float(value), "feedback_source": {"type": "model"}}
            _checked(http.post("/api/v1/feedback", json=feedback))
        _checked(http.patch(f"/api/v1/sessions/{project['id']}", json={"end_time": datetime.now(UTC).isoformat()}))
        made[model] = {"id": project["id"], "name": name}
    return made
