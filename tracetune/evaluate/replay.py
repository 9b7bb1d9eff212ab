"""Replaying held-out conversations against models through an OpenAI-compatible chat API, and the report.

Each record of an OpenAI chat fine-tuning JSONL file is cut before its last assistant message; the messages
before it (and the record's ``tools`` / ``functions``) are sent to ``/v1/chat/completions`` with the model free
to answer or call (``tool_choice`` is not forced), greedily (``temperature=0``); the reply is scored against that
last assistant message (:mod:`tracetune.chat.scoring`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tracetune.chat.diagnose import diagnose_replies
from tracetune.chat.scoring import Score, score_reply, split_record, summarize
from tracetune.errors import InvalidInput
from tracetune.train.model_graders import ModelEndpoint

Progress = Callable[[str, int, int], None]  # (model, done, total)


def replay_one(
    client: Any, model: str, record: Mapping[str, Any], *, line: int = 0, max_tokens: int = 256
) -> tuple[dict[str, Any], float]:
    """The model's reply message to ``record``'s prompt, and the request's latency in seconds. ``client`` is an
    ``openai.OpenAI`` client, or a :class:`~tracetune.train.model_graders.ModelEndpoint` (no openai package)."""
    prompt, _ = split_record(record, line)
    request: dict[str, Any] = {"model": model, "messages": prompt, "temperature": 0, "max_tokens": max_tokens}
    if record.get("tools"):
        request["tools"] = record["tools"]
    elif record.get("functions"):
        request["functions"] = record["functions"]
    started = time.perf_counter()
    if isinstance(client, ModelEndpoint):  # tracetune's own calls (automations): httpx, no openai package needed
        body = client.complete(request)
        try:
            message = {k: v for k, v in body["choices"][0]["message"].items() if v is not None}
        except (KeyError, IndexError, TypeError, AttributeError):
            raise InvalidInput(f"{client.base_url} answered no chat completion: {str(body)[:300]}") from None
    else:
        message = client.chat.completions.create(**request).choices[0].message.model_dump(exclude_none=True)
    return message, time.perf_counter() - started


def evaluate(
    client: Any,
    models: Sequence[str],
    records: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    max_tokens: int = 256,
    concurrency: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay every ``(line, record)`` against every model, ``concurrency`` requests at a time across all the
    models (the server batches them, adapters mixed); per model its summary, per-example results in record order,
    and ``diagnostics`` (:func:`tracetune.chat.diagnose.diagnose_replies`: one answer for every input, echoed
    input), each a finding with what to do."""
    from concurrent.futures import ThreadPoolExecutor

    def one(model: str, line: int, record: Mapping[str, Any]) -> tuple[Score, dict[str, Any]]:
        _, expected = split_record(record, line)
        reply, latency = replay_one(client, model, record, line=line, max_tokens=max_tokens)
        score = score_reply(expected, reply, latency_s=round(latency, 3))
        return score, {"line": line, "reply": reply, **score.as_dict()}

    done = dict.fromkeys(models, 0)
    results: dict[str, Any] = {"models": {}, "examples": len(records)}
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {m: [pool.submit(one, m, line, record) for line, record in records] for m in models}
        for model in models:
            scores: list[Score] = []
            rows: list[dict[str, Any]] = []
            for future in futures[model]:
                score, row = future.result()
                scores.append(score)
                rows.append(row)
                done[model] += 1
                if progress is not None:
                    progress(model, done[model], len(records))
            findings = diagnose_replies([r for _, r in records], [row["reply"] for row in rows], where="held-out")
            results["models"][model] = {
                "summary": summarize(scores),
                "results": rows,
                "diagnostics": [f.as_dict() for f in findings],
            }
    return results


def read_records(path: Path, limit: int | None = None) -> list[tuple[int, dict[str, Any]]]:
    """``(line, record)`` of a JSONL file (blank lines skipped), at most ``limit``."""
    out: list[tuple[int, dict[str, Any]]] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise InvalidInput(f"{path.name} line {number} is not JSON: {exc}", field="data", line=number) from None
        split_record(record, number)
        out.append((number, record))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise InvalidInput(f"{path} holds no records", field="data")
    return out


METRICS = (
    ("accuracy", "accuracy"),
    ("tool_name_accuracy", "tool name"),
    ("tool_args_exact", "exact args"),
    ("valid_json_rate", "valid JSON"),
    ("text_exact", "text exact"),
    ("text_fuzzy", "text fuzzy"),
    ("latency_p50_s", "p50 latency (s)"),
)


def table_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """``[metric label, value per model …]`` rows (percentages for rates, "-" where a metric does not apply)."""
    rows = []
    for key, label in METRICS:
        row = [label]
        for model in results["models"]:
            value = results["models"][model]["summary"][key]
            if value is None:
                row.append("-")
            elif key.startswith("latency"):
                row.append(f"{value:.2f}")
            else:
                row.append(f"{100 * value:.0f}%")
        rows.append(row)
    return rows


def write_chart(results: Mapping[str, Any], path: Path) -> Path:
    """A bar chart of the rates per model (PNG; needs matplotlib, in the ``demo`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [(k, label) for k, label in METRICS if not k.startswith("latency")]
    models = list(results["models"])
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        summary = results["models"][model]["summary"]
        xs = [x + i * width for x in range(len(keys))]
        values = [summary[k] for k, _ in keys]
        bars = ax.bar(xs, [100 * (v or 0) for v in values], width, label=model)
        for x, bar, value in zip(xs, bars, values, strict=True):  # 0% and "does not apply" must not look alike
            label = "N/A" if value is None else f"{100 * value:.0f}%"
            ax.text(x, bar.get_height() + 1, label, ha="center", va="bottom", fontsize=7,
                    color="grey" if value is None else "black")  # fmt: skip
    ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(keys))], [label for _, label in keys])
    ax.set_ylabel("%")
    ax.set_ylim(0, 112)
    ax.set_title(f"held-out evaluation ({results['examples']} examples)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
