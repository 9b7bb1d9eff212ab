"""Routing benchmark: does a tune learn the *decision* (which team, which priority), not just the call's format?

Support tickets from ``tracetune.demo.tickets`` (a fixed generator): ``--traced`` of them are split by trace into
training and validation records (as ``tracetune export`` splits), and ``--heldout`` new tickets (products and details
no traced ticket names) are the test. The LoRA recipe trains SmolLM2 with the job defaults (``"auto"``
hyperparameters, validation-driven: best epoch kept, early stopping), then the base model and the tune answer every
held-out ticket greedily, scored as ``tracetune eval`` scores (exact arguments of the call). Prints one JSON line:
``tuned_args_exact`` vs ``base_args_exact`` (the baseline, same run), the per-epoch validation metrics, the answers'
distribution (a collapse shows as one answer) and the training time. Target (issue 21): tuned ≥ 0.85.

    .venv/bin/python bench/routing.py                 # 60 traced (45 train / 15 validation), 30 held out: ~6-10 min
    .venv/bin/python bench/routing.py --seed 1 --json-out /tmp/routing.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traced", type=int, default=60)
    parser.add_argument("--heldout", type=int, default=30)
    parser.add_argument("--valid-share", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=JSON", help="a TrainConfig field")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from tracetune.config import load_settings
    from tracetune.demo.tickets import make_tickets
    from tracetune.models.compat import peft_wrapping
    from tracetune.models.registry import DEFAULT_MODEL_ID
    from tracetune.models.weights import load_base_model
    from tracetune.train.recipe import TrainConfig, run_training
    from tracetune.train.task_eval import TaskEvaluator

    home = load_settings().home
    traced, heldout = make_tickets(args.traced, args.heldout, seed=args.seed)
    n_valid = max(1, round(len(traced) * args.valid_share))
    train, valid = traced[n_valid:], traced[:n_valid]
    events: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tt-routing-") as tmp:
        for name, rows in (("train", train), ("valid", valid)):
            Path(tmp, f"{name}.jsonl").write_text("".join(json.dumps(t.record()) + "\n" for t in rows))
        overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
        config = TrainConfig(
            training_file=f"{tmp}/train.jsonl", validation_file=f"{tmp}/valid.jsonl", output_dir=f"{tmp}/out",
            home=str(home), seed=args.seed, **overrides,
        )  # fmt: skip
        started = time.perf_counter()
        result = run_training(config, events.append)
        train_s = time.perf_counter() - started

        model, tokenizer = load_base_model(home, DEFAULT_MODEL_ID)
        pad_id = tokenizer.eos_token_id or 0
        evaluator = TaskEvaluator([(i + 1, t.record()) for i, t in enumerate(heldout)], tokenizer, max_records=10**6)
        base = evaluator.run(model, pad_id)
        from peft import PeftModel

        with peft_wrapping():
            tuned_model = PeftModel.from_pretrained(model, str(result.adapter_dir))
        tuned = evaluator.run(tuned_model, pad_id)

    def answers(task) -> dict[str, int]:
        seen = collections.Counter(
            json.dumps(json.loads(r.reply["tool_calls"][0]["function"]["arguments"]), sort_keys=True)
            if r.reply.get("tool_calls")
            else "(text)"
            for r in task.replies
        )
        return dict(seen.most_common())

    epochs = [
        {k: v for k, v in e.items() if k in ("epoch", "train_loss", "valid_loss", "valid_tool_args_exact")}
        for e in events
        if e.get("type") == "metrics" and "valid_loss" in e
    ]
    setup = next(e for e in events if e["type"] == "setup")
    figures = {
        "bench": "routing",
        "traced": len(traced), "train": len(train), "valid": len(valid), "heldout": len(heldout), "seed": args.seed,
        "tuned_args_exact": tuned.metrics["valid_tool_args_exact"],
        "base_args_exact": base.metrics["valid_tool_args_exact"],
        "tuned_tool_name_accuracy": tuned.metrics["valid_tool_name_accuracy"],
        "base_tool_name_accuracy": base.metrics["valid_tool_name_accuracy"],
        "hyperparameters": setup["hyperparameters"], "overrides": overrides,
        "best_step": result.best_step, "stopped_early": result.stopped_early, "steps": result.steps,
        "epochs": epochs, "train_s": round(train_s, 1),
        "tuned_answers": answers(tuned), "base_answers": answers(base),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "python": sys.version.split()[0], "torch": torch.__version__},
    }  # fmt: skip
    line = json.dumps(figures)
    print(line)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
