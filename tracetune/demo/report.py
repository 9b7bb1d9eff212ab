"""The demo's results: one table of rows (printed by the CLI, written in the markdown report) and a chart."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def result_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(label, value)`` rows: stage timings, runs traced / selected / exported, loss, held-out accuracy."""
    rows = [(f"stage: {stage}", f"{seconds:.1f} s") for stage, seconds in summary["stages_s"].items()]
    rows.append(("total", f"{summary['total_s']:.1f} s"))
    runs = summary["runs"]
    rows += [
        ("runs traced (failed)", f"{runs.get('traced', 0)} ({runs.get('failed', 0)})"),
        ("rated right by the user", str(runs.get("rated_up", 0))),
        ("wrong, corrected by a reviewer", str(runs.get("corrected", 0))),
        ("LLM runs selected", str(runs.get("selected", 0))),
        ("conversations exported", str(runs.get("exported", 0))),
    ]
    loss = summary["loss"]
    if loss["first"] is not None:
        rows.append(("training loss first → last", f"{loss['first']:.3f} → {loss['last']:.3f}"))
    acc = summary["accuracy"]
    if acc:
        rows.append((f"held-out accuracy ({summary['heldout']} questions)",
                     f"base {acc.get('base', 0):.0%}, tuned {acc.get('tuned', 0):.0%}"))  # fmt: skip
    return rows


def write_report(summary: Mapping[str, Any], evaluation: Mapping[str, Any], out: Path) -> dict[str, str]:
    """``out/report.md`` and, when matplotlib is installed (the ``demo`` extra), ``out/demo.png``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    with contextlib.suppress(ImportError):  # no matplotlib: no chart
        files["chart"] = str(write_chart(summary, out / "demo.png"))
    report = out / "report.md"
    report.write_text(markdown(summary, evaluation, chart="demo.png" if "chart" in files else None), encoding="utf-8")
    files["report"] = str(report)
    return files


def markdown(summary: Mapping[str, Any], evaluation: Mapping[str, Any], chart: str | None = None) -> str:
    job = summary["job"]
    lines = [
        "# tracetune demo",
        "",
        f"An accounting assistant (LangChain + a Calculator tool) was traced into tracetune; the LLM runs of its "
        "successful traces that users rated right or a reviewer corrected became a dataset; "
        f" `{summary['model']}` was fine-tuned on it "
        f"(job `{job.get('id')}`) into `{job.get('fine_tuned_model')}`; both answered held-out questions with the "
        "tool offered, not forced.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {label} | {value} |" for label, value in result_rows(summary)),
        "",
    ]
    if chart:
        lines += [f"![loss and accuracy]({chart})", ""]
    models = evaluation.get("models", {})
    if len(models) == 2:
        (base, base_res), (_, tuned_res) = models.items()
        heldout = _heldout_questions(summary)
        lines += ["## Held-out answers", "", f"| question | base (`{base}`) | tuned |", "|---|---|---|"]
        for i, (b, t) in enumerate(zip(base_res["results"], tuned_res["results"], strict=True)):
            question = heldout[i] if i < len(heldout) else f"#{b['line']}"
            lines.append(f"| {question} | {_mark(b)} {_reply(b['reply'])} | {_mark(t)} {_reply(t['reply'])} |")
        lines.append("")
    lines += [
        "## What is seeded, what still varies",
        "",
        f"The questions, the dataset split, the LoRA initialisation and dropout and the batch order are seeded (seed "
        f"{summary.get('seed', 0)}): a rerun trains to the same losses. The held-out answers are greedy, but the "
        "server batches concurrent requests as they arrive, and a different batch make-up (padding, row order) "
        "changes the float rounding of the logits: an answer the model is nearly undecided about can flip between "
        "runs (typically one question in twenty).",
        "",
        "## Look around",
        "",
        f"Everything is in `{summary['home']}`: `tracetune serve --home {summary['home']}` serves the traces, "
        "feedback, dataset, job and both models.",
        "",
    ]
    return "\n".join(lines)


def _heldout_questions(summary: Mapping[str, Any]) -> list[str]:
    path = summary["files"].get("heldout")
    if not path or not Path(path).exists():
        return []
    return [json.loads(line)["messages"][1]["content"] for line in Path(path).read_text().splitlines() if line]


def _mark(result: Mapping[str, Any]) -> str:
    return "✅" if result.get("correct") else "❌"


def _reply(reply: Mapping[str, Any]) -> str:
    calls = reply.get("tool_calls") or []
    if calls:
        text = f"`{calls[0]['function']['name']}({calls[0]['function']['arguments']})`"
    else:
        text = json.dumps(reply.get("content") or "")[:80]
    return text.replace("|", "\\|").replace("\n", " ")


def write_chart(summary: Mapping[str, Any], path: Path) -> Path:
    """Training loss per step, and held-out accuracy of base vs tuned (PNG; needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    steps = summary["loss"]["steps"]
    loss_ax.plot([s for s, _ in steps], [loss for _, loss in steps], marker="o", markersize=3)
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss")
    loss_ax.set_title("fine-tuning")
    loss_ax.grid(alpha=0.3)
    acc = summary["accuracy"]
    labels = [label for label in ("base", "tuned") if label in acc]
    values = [100 * acc[label] for label in labels]
    bars = acc_ax.bar(labels, values, color=["#999999", "#2a7ab9"][: len(labels)])
    acc_ax.bar_label(bars, labels=[f"{v:.0f}%" for v in values])
    acc_ax.set_ylim(0, 110)
    acc_ax.set_ylabel("% exact Calculator call")
    acc_ax.set_title(f"held-out ({summary['heldout']} questions)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
