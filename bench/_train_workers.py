"""Processes the training benchmark starts (``bench/train.py``), each in its own interpreter so that its peak RSS
is its own. Each prints one JSON line on stdout.

  python bench/_train_workers.py warm  --home H                    load the base model twice (cold if not cached)
  python bench/_train_workers.py trl   --home H --out DIR [...]    TRL SFTTrainer + PEFT LoRA, adapter saved in DIR
  python bench/_train_workers.py trl-dpo --home H --out DIR --data PAIRS.jsonl [...]   TRL DPOTrainer, the same
  python bench/_train_workers.py eval  --home H --adapter DIR      warm base-model load, then held-out accuracy

The TRL side trains on exactly the tokens tracetune trains on: the records of the calculator fixture rendered by
``tracetune.chat.format`` and tokenized by ``tracetune.train.data.load_examples``, passed to ``SFTTrainer`` as a
pre-tokenized dataset (``input_ids`` + ``completion_mask``, the assistant tokens), so TRL builds the same labels
(loss on assistant tokens only). The model is the same float32 base, loaded by ``load_base_model`` from the
cached weights (the GGUF quantization marker is already removed there, else ``Trainer`` refuses to train it).

For DPO the same holds: the pairs file is read and tokenized by tracetune (``read_records(method="dpo")``,
``encode_pairs``) and handed to ``DPOTrainer`` as ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` (its
``_prepare_dataset``, which would tokenize text, is skipped: the dataset is already what it produces).
The pairs both sides train on: each calculator example's call preferred to the same call with its operands swapped
(``tests.train.write_preference_file``, the DPO acceptance test's pairs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.train import (  # noqa: E402 (the repository root goes on sys.path first)
    CALCULATOR_HELDOUT,
    CALCULATOR_TRAIN,
    expected_call,
    first_calls,
    read_jsonl,
    same_call,
)

MODEL_ID = "smollm2-135m-instruct"


def quiet() -> None:
    for key, value in {
        "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }.items():  # fmt: skip
        os.environ.setdefault(key, value)
    import warnings

    warnings.filterwarnings("ignore")


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def warm(args: argparse.Namespace) -> dict[str, Any]:
    """First ``load_base_model`` (de-quantizes the GGUF when the cache is cold), then a second one (warm)."""
    import torch  # noqa: F401 (imported before the clock starts, as in every process that trains)

    from tracetune.models.weights import load_base_model, weights_dir

    cold = not weights_dir(Path(args.home), MODEL_ID).exists()
    started = time.perf_counter()
    load_base_model(Path(args.home), MODEL_ID)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    load_base_model(Path(args.home), MODEL_ID)
    return {
        "cache_was_cold": cold,
        "first_load_s": round(first_s, 3),
        "warm_load_s": round(time.perf_counter() - started, 3),
    }


def trainer_settings(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """The TRL trainer settings both TRL sides share: tracetune's (epochs, batch, lr, linear schedule, no warmup or
    weight decay, clipping at 1), on the CPU in float32."""
    return {
        "output_dir": tempfile.mkdtemp(prefix=prefix), "num_train_epochs": args.epochs,
        "per_device_train_batch_size": args.batch_size, "gradient_accumulation_steps": 1, "learning_rate": args.lr,
        "lr_scheduler_type": "linear", "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": 1.0,
        "logging_steps": 1, "save_strategy": "no", "report_to": "none", "use_cpu": True, "seed": args.seed,
        "data_seed": args.seed, "max_length": 1024, "dataloader_num_workers": 0, "disable_tqdm": True,
        "gradient_checkpointing": False,  # TRL's defaults (True, bf16) are 3.4x slower on this CPU: baseline README §2
        "bf16": False, "fp16": False,
    }  # fmt: skip


def lora_config(args: argparse.Namespace) -> Any:
    from peft import LoraConfig

    from tracetune.train.recipe import TARGET_MODULES

    return LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        target_modules=list(TARGET_MODULES), task_type="CAUSAL_LM",
    )  # fmt: skip


def load_for_trl(args: argparse.Namespace) -> tuple[Any, Any, Any, float]:
    """The seeded base model, tracetune's tokenizer, the Hugging Face tokenizer TRL takes, and the load time."""
    import torch
    from transformers import AutoTokenizer

    from tracetune.models.weights import load_base_model

    torch.manual_seed(args.seed)
    started = time.perf_counter()
    model, tokenizer = load_base_model(Path(args.home), MODEL_ID)
    load_s = time.perf_counter() - started
    hf_tokenizer = AutoTokenizer.from_pretrained(str(tokenizer.path))
    if hf_tokenizer.pad_token is None:
        hf_tokenizer.pad_token = hf_tokenizer.eos_token
    return model, tokenizer, hf_tokenizer, load_s


def trained(
    args: argparse.Namespace, trainer: Any, out: Any, *, wall: float, tokens: int, load_s: float, rss_before: float
) -> dict[str, Any]:
    """A TRL side's figures once ``trainer.train()`` returned ``out`` after ``wall`` seconds; its adapter saved."""
    import torch

    logs = [h for h in trainer.state.log_history if "loss" in h]
    trainer.model.save_pretrained(args.out)
    return {
        "load_s": round(load_s, 3),
        "train_wall_s": round(wall, 3),
        "steps": trainer.state.global_step,
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
        "final_loss": logs[-1]["loss"] if logs else None,
        "mean_train_loss": round(out.training_loss, 5),
        "peak_rss_before_train_mib": rss_before,
        "torch_threads": torch.get_num_threads(),
    }


def train_trl(args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from tracetune.train.data import IGNORE_INDEX, load_examples

    model, tokenizer, hf_tokenizer, load_s = load_for_trl(args)
    examples = load_examples(CALCULATOR_TRAIN, tokenizer, context_length=int(model.config.max_position_embeddings))
    dataset = Dataset.from_list(
        [
            {"input_ids": e.input_ids, "completion_mask": [int(label != IGNORE_INDEX) for label in e.labels]}
            for e in examples
        ]
    )
    config = SFTConfig(**trainer_settings(args, "trl_out_"), completion_only_loss=True)
    lora = lora_config(args)
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=hf_tokenizer, peft_config=lora
    )
    rss_before_train = peak_rss_mib()
    started = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - started
    tokens = next(int(h["num_tokens"]) for h in reversed(trainer.state.log_history) if "num_tokens" in h)
    return trained(args, trainer, out, wall=wall, tokens=tokens, load_s=load_s, rss_before=rss_before_train)


def train_trl_dpo(args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from tracetune.train.data import IGNORE_INDEX, encode_pairs, read_records

    class PreTokenized(DPOTrainer):  # type: ignore[misc]
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # type: ignore[no-untyped-def]
            return dataset

    model, tokenizer, hf_tokenizer, load_s = load_for_trl(args)
    pairs = encode_pairs(
        read_records(Path(args.data), method="dpo"), tokenizer, context_length=int(model.config.max_position_embeddings)
    )
    rows = []
    for chosen, rejected in pairs:
        cut = next(i for i, label in enumerate(chosen.labels) if label != IGNORE_INDEX)
        assert chosen.input_ids[:cut] == rejected.input_ids[:cut], "a pair's two prompts differ"
        rows.append({"prompt_ids": chosen.input_ids[:cut], "chosen_ids": chosen.input_ids[cut:],
                     "rejected_ids": rejected.input_ids[cut:]})  # fmt: skip
    config = DPOConfig(
        **trainer_settings(args, "trl_dpo_out_"), beta=args.beta, loss_type=["sigmoid"],
        precompute_ref_log_probs=True,  # as tracetune: the start model's log-probabilities once, before step 1
    )  # fmt: skip
    lora = lora_config(args)
    started = time.perf_counter()
    trainer = PreTokenized(
        model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=hf_tokenizer,
        peft_config=lora,
    )  # fmt: skip
    reference_s = time.perf_counter() - started  # TRL computes the reference log-probabilities in its constructor
    rss_before_train = peak_rss_mib()
    started = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - started
    tokens = sum(len(r["prompt_ids"]) * 2 + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows) * args.epochs
    margins = [h["rewards/margins"] for h in trainer.state.log_history if "rewards/margins" in h]
    return {
        **trained(args, trainer, out, wall=wall, tokens=tokens, load_s=load_s, rss_before=rss_before_train),
        "reference_s": round(reference_s, 3),
        "final_reward_margin": margins[-1] if margins else None,
    }


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Warm ``load_base_model`` (timed), the adapter on top, greedy decoding of the 20 held-out questions."""
    import torch  # noqa: F401 (the import is not part of the load time)
    from peft import PeftModel

    from tracetune.models.weights import load_base_model

    started = time.perf_counter()
    model, tokenizer = load_base_model(Path(args.home), MODEL_ID)
    load_s = time.perf_counter() - started
    if args.adapter:
        model = PeftModel.from_pretrained(model, args.adapter)
    held_out = read_jsonl(CALCULATOR_HELDOUT)
    started = time.perf_counter()
    calls = first_calls(model, tokenizer, held_out)
    correct = [same_call(call, expected_call(r)) for (call, _), r in zip(calls, held_out, strict=True)]
    return {
        "warm_load_s": round(load_s, 3),
        "correct": sum(correct),
        "of": len(held_out),
        "eval_s": round(time.perf_counter() - started, 2),
        "misses": [text for (_, text), ok in zip(calls, correct, strict=True) if not ok][:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["warm", "trl", "trl-dpo", "eval"])
    parser.add_argument("--home", required=True)
    parser.add_argument("--out")
    parser.add_argument("--adapter")
    parser.add_argument("--data")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    args = parser.parse_args()
    quiet()
    result = {"warm": warm, "trl": train_trl, "trl-dpo": train_trl_dpo, "eval": evaluate}[args.command](args)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
