"""Preference and reward benchmark: do DPO on reviewers' corrections, and RFT with an exact grader, fix a mistake
that SFT on the liked runs leaves? (issue 16)

The task is the demo's accounting assistant (``tracetune.demo.questions``: arithmetic in varied phrasings, answered
with one Calculator call). Two phrasings name the operands in the reverse order of the call — "Subtract {b} from
{a}." and "How much is left if I take {b} away from {a}?" both mean ``num1=a, num2=b``. The traced app got those
wrong (it swapped the operands), so users thumbed them down and reviewers corrected them; the thumbs-up runs hold
every other phrasing. So:

* **SFT** trains SmolLM2 on ``--sft`` thumbs-up runs (no reversed phrasing among them): it learns the call's format
  and copies the operands in the order the question names them — the systematic mistake;
* **DPO** starts from that SFT model and trains on ``--pairs`` corrected runs: preferred = the reviewer's
  correction, non-preferred = the app's swapped call;
* **RFT** starts from the same SFT model and trains on the same ``--pairs`` questions as prompts, rewarded by an
  exact grader (a ``python`` grader: 1 when the call's arguments are the right ones, else 0).

Each answers ``--heldout`` new reversed-phrasing questions (operands no traced question uses) greedily, and as many
held-out questions in the other phrasings (what DPO must not break), scored as ``tracetune eval`` scores (exact
arguments). Prints one JSON line: ``sft_reversed_exact`` (the baseline, same run) and ``dpo_reversed_exact``,
``fixed_share`` = the share of SFT's remaining reversed-phrasing errors that DPO fixed (target: ≥ 0.5), the same
for RFT (``rft_fixed_share``; the issue's target: a held-out reward above the start model's), the other phrasings'
scores before and after, the DPO and RFT training figures and the training times.

    .venv/bin/python bench/preference.py                     # 48 SFT, 16 pairs, 24 + 24 held out: ~8 min
    .venv/bin/python bench/preference.py --seed 1 --json-out /tmp/preference.json
    .venv/bin/python bench/preference.py --dpo-set beta=0.2  # a TrainConfig field of the DPO stage
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sft", type=int, default=48, help="thumbs-up runs SFT trains on")
    parser.add_argument("--pairs", type=int, default=16, help="corrected runs DPO trains on")
    parser.add_argument("--heldout", type=int, default=24, help="held-out questions per group")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sft-set", action="append", default=[], metavar="NAME=JSON", help="a TrainConfig field")
    parser.add_argument("--dpo-set", action="append", default=[], metavar="NAME=JSON", help="a TrainConfig field")
    parser.add_argument("--rft-set", action="append", default=[], metavar="NAME=JSON", help="a TrainConfig field")
    parser.add_argument("--stages", default="sft,dpo,rft", help="which tunes after SFT (comma-separated)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from langchain_core.utils.function_calling import convert_to_openai_tool
    from peft import PeftModel

    from tracetune.config import load_settings
    from tracetune.demo.app import Calculator
    from tracetune.demo.pipeline import heldout_record
    from tracetune.demo.questions import PHRASINGS, Question, make_questions
    from tracetune.models.compat import peft_wrapping
    from tracetune.models.registry import DEFAULT_MODEL_ID
    from tracetune.models.weights import load_base_model
    from tracetune.train.recipe import TrainConfig, run_training
    from tracetune.train.task_eval import TaskEvaluator

    reversed_phrasings = (PHRASINGS["-"][1], PHRASINGS["-"][3])
    tools = [convert_to_openai_tool(Calculator)]

    def is_reversed(q: Question) -> bool:  # (equal operands: swapping them is no mistake)
        return q.num1 != q.num2 and any(q.text == p.format(a=q.num1, b=q.num2) for p in reversed_phrasings)

    # make_questions takes turns over 4 operations x 6 phrasings: 1 question in 12 has a reversed phrasing
    traced, heldout = make_questions(12 * args.pairs + args.sft, 12 * args.heldout, seed=args.seed)
    sft_questions = [q for q in traced if not is_reversed(q)][: args.sft]
    corrected = [q for q in traced if is_reversed(q)][: args.pairs]
    held_reversed = [q for q in heldout if is_reversed(q)][: args.heldout]
    held_other = [q for q in heldout if not is_reversed(q)][: args.heldout]

    def pair(q: Question) -> dict[str, Any]:
        *prompt, answer = heldout_record(q, tools)["messages"]
        swapped = Question(q.text, q.num2, q.num1, q.operation)  # what the app answered
        wrong = heldout_record(swapped, tools)["messages"][-1]
        return {"input": {"messages": prompt, "tools": tools}, "preferred_output": [answer],
                "non_preferred_output": [wrong]}  # fmt: skip

    def prompt(q: Question) -> dict[str, Any]:
        *messages, _ = heldout_record(q, tools)["messages"]
        return {"messages": messages, "tools": tools, "expected": q.call}

    def overrides(items: list[str]) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in (item.split("=", 1) for item in items)}

    home = load_settings().home
    wanted = ["sft", *[s for s in args.stages.split(",") if s in ("dpo", "rft")]]
    events: dict[str, list[dict[str, Any]]] = {stage: [] for stage in wanted}
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tt-preference-") as tmp:
        sft_file, pairs_file = Path(tmp, "thumbs_up.jsonl"), Path(tmp, "corrections.jsonl")
        prompts_file = Path(tmp, "prompts.jsonl")
        sft_file.write_text("".join(json.dumps(heldout_record(q, tools)) + "\n" for q in sft_questions))
        pairs_file.write_text("".join(json.dumps(pair(q)) + "\n" for q in corrected))
        prompts_file.write_text("".join(json.dumps(prompt(q)) + "\n" for q in corrected))
        every = {
            "sft": {"training_file": str(sft_file), **overrides(args.sft_set)},
            "dpo": {"training_file": str(pairs_file), "method": "dpo", **overrides(args.dpo_set)},
            "rft": {"training_file": str(prompts_file), "method": "reinforcement", "grader": EXACT_GRADER,
                    **overrides(args.rft_set)},
        }  # fmt: skip
        stages = {stage: every[stage] for stage in wanted}
        adapters: dict[str, str] = {}
        for stage, settings in stages.items():
            if stage != "sft":
                settings["start_adapter"] = adapters["sft"]
            config = TrainConfig(output_dir=f"{tmp}/{stage}", home=str(home), seed=args.seed, **settings)
            started = time.perf_counter()
            adapters[stage] = str(run_training(config, events[stage].append).adapter_dir)
            times[f"{stage}_train_s"] = round(time.perf_counter() - started, 1)

        model, tokenizer = load_base_model(home, DEFAULT_MODEL_ID)
        pad_id = tokenizer.eos_token_id or 0
        groups = {"reversed": held_reversed, "other": held_other}
        evaluators = {
            name: TaskEvaluator([(i + 1, heldout_record(q, tools)) for i, q in enumerate(qs)], tokenizer,
                                max_records=10**6)
            for name, qs in groups.items()
        }  # fmt: skip
        scores: dict[str, Any] = {}
        for stage in wanted:
            with peft_wrapping():
                tuned = PeftModel.from_pretrained(model, adapters[stage])
            for name, evaluator in evaluators.items():
                result = evaluator.run(tuned, pad_id)
                scores[f"{stage}_{name}_exact"] = result.metrics["valid_tool_args_exact"]
                swapped = sum(
                    1
                    for q, r in zip(groups[name], result.replies, strict=True)
                    if _call(r.reply) == {"num1": q.num2, "num2": q.num1, "operation": q.operation}
                )
                scores[f"{stage}_{name}_swapped"] = swapped / len(groups[name])
            model = tuned.unload()  # the base model again, for the next adapter

    sft_errors = 1.0 - scores["sft_reversed_exact"]

    def fixed(stage: str) -> float | None:
        gain = scores[f"{stage}_reversed_exact"] - scores["sft_reversed_exact"]
        return round(gain / sft_errors, 3) if sft_errors else None

    def setup(stage: str) -> dict[str, Any]:
        return next(e for e in events[stage] if e["type"] == "setup")

    def steps(stage: str) -> list[dict[str, Any]]:
        return [e for e in events[stage] if e["type"] == "metrics"]

    stage_figures: dict[str, Any] = {}
    if "dpo" in events:
        stage_figures |= {
            "fixed_share": fixed("dpo"), "dpo_hyperparameters": setup("dpo")["hyperparameters"],
            "dpo_first_loss": steps("dpo")[0]["train_loss"], "dpo_last_loss": steps("dpo")[-1]["train_loss"],
            "dpo_last_reward_margin": steps("dpo")[-1]["train_reward_margin"],
        }  # fmt: skip
    if "rft" in events:
        rewards = [m["train_mean_reward"] for m in steps("rft")]
        stage_figures |= {
            "rft_fixed_share": fixed("rft"), "rft_hyperparameters": setup("rft")["hyperparameters"],
            "rft_train_reward_first_last": [rewards[0], rewards[-1]],
            "rft_train_reward_by_step": [round(r, 3) for r in rewards],
        }  # fmt: skip
    figures = {
        "bench": "preference", "seed": args.seed,
        "sft_examples": len(sft_questions), "pairs": len(corrected),
        "heldout_reversed": len(held_reversed), "heldout_other": len(held_other),
        **scores, **stage_figures, "sft_hyperparameters": setup("sft")["hyperparameters"],
        **times, "overrides": {"sft": overrides(args.sft_set), "dpo": overrides(args.dpo_set),
                               "rft": overrides(args.rft_set)},
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "python": sys.version.split()[0], "torch": torch.__version__},
    }  # fmt: skip
    line = json.dumps(figures)
    print(line)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    return 0


# RFT's reward: 1 when the answer's first call has exactly the expected arguments (the item's "expected"), else 0
EXACT_GRADER = {
    "type": "python",
    "name": "exact_call",
    "source": (
        "import json\n"
        "def grade(sample, item):\n"
        "    calls = sample['output_tools']\n"
        "    if not calls:\n"
        "        return 0.0\n"
        "    try:\n"
        "        arguments = json.loads(calls[0]['function']['arguments'])\n"
        "    except ValueError:\n"
        "        return 0.0\n"
        "    return 1.0 if arguments == item['expected'] else 0.0\n"
    ),
}


def _call(reply: dict[str, Any]) -> dict[str, Any] | None:
    """The arguments of a reply's first tool call (None for prose or arguments that are not JSON)."""
    calls = reply.get("tool_calls") or []
    try:
        return json.loads(calls[0]["function"]["arguments"]) if calls else None
    except (ValueError, KeyError, TypeError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
