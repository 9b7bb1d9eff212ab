"""What a training run writes to disk: checkpoints (save / restore), the final adapter, ``metrics.csv``.

A checkpoint directory ``checkpoints/step-<n>/`` holds:

* ``adapter_model.safetensors`` + ``adapter_config.json`` — the PEFT adapter exactly as ``save_pretrained``
  writes it, so ``PeftModel.from_pretrained`` and vLLM (``--enable-lora``) load a checkpoint like a final adapter;
* ``training_state.pt`` — the optimizer state and the RNG state(s) (``torch.load(weights_only=True)``-safe);
* ``trainer_state.json`` — step, epoch, total steps, steps per epoch, tokens seen, seed, model, hyperparameters.

The learning rate is a pure function of the step, so the step is the whole scheduler state. Every directory is
written to a scratch sibling and renamed into place: a reader (or a resume after a crash) never sees half of one.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracetune.errors import InvalidInput
from tracetune.train.task_eval import METRICS

if TYPE_CHECKING:
    import torch

STATE_FILE = "trainer_state.json"
TRAINING_STATE_FILE = "training_state.pt"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
METRICS_COLUMNS = (
    "step", "train_loss", "valid_loss", "train_mean_token_accuracy", "valid_mean_token_accuracy", *METRICS.values(),
)  # fmt: skip
PREFERENCE_METRICS = tuple(
    f"{split}_{name}"
    for split in ("train", "valid")
    for name in ("reward_margin", "reward_accuracy", "chosen_reward", "rejected_reward")
)  # a DPO run's columns beside the loss (tracetune.train.loss.PreferenceLoss)
REWARD_METRICS = (
    "train_mean_reward",
    "train_reward_std",
    "train_grader_errors",
    "train_groups_learned",
    "valid_mean_reward",
)  # an RFT run's columns beside the loss (tracetune.train.reinforcement)


def write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Fill a scratch directory next to ``target`` with ``write(scratch)``, then swap it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / f".{target.name}-{uuid.uuid4().hex[:8]}"
    try:
        write(scratch)
        if target.exists():
            old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def save_adapter(model: Any, target: Path) -> Path:
    """The PEFT adapter of ``model`` in ``target`` (replacing what was there)."""
    write_atomically(target, lambda scratch: _save_peft(model, scratch))
    return target


def save_checkpoint(target: Path, model: Any, optimizer: torch.optim.Optimizer, info: dict[str, Any]) -> Path:
    """Adapter + optimizer/RNG state + ``info`` (must hold ``step``) in ``target``."""
    import torch

    def write(scratch: Path) -> None:
        _save_peft(model, scratch)
        state: dict[str, Any] = {"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        torch.save(state, scratch / TRAINING_STATE_FILE)
        (scratch / STATE_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")

    write_atomically(target, write)
    return target


def read_checkpoint_info(checkpoint: Path) -> dict[str, Any]:
    """The ``trainer_state.json`` of a checkpoint; :class:`InvalidInput` (field ``resume_from``) if there is none."""
    try:
        info = json.loads((Path(checkpoint) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{checkpoint} is not a training checkpoint: {exc}", field="resume_from") from None
    if not isinstance(info, dict) or not isinstance(info.get("step"), int):
        raise InvalidInput(f"{checkpoint} is not a training checkpoint (no step)", field="resume_from")
    return info


def restore_checkpoint(
    checkpoint: Path, model: Any, optimizer: torch.optim.Optimizer, device: torch.device
) -> dict[str, Any]:
    """Load adapter weights, optimizer state and RNG state from ``checkpoint`` into a freshly set-up run."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    info = read_checkpoint_info(checkpoint)
    weights = load_file(str(Path(checkpoint) / ADAPTER_WEIGHTS), device=str(device))
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise InvalidInput(f"{checkpoint} holds weights this model lacks: {unexpected[:3]}", field="resume_from")
    # on the CPU: RNG states must be CPU tensors; load_state_dict moves the optimizer state to the parameters
    state = torch.load(Path(checkpoint) / TRAINING_STATE_FILE, weights_only=True, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return info


class MetricsLog:
    """``metrics.csv`` (one row per step, flushed as written). Opened at a resumed step, it keeps the rows up to
    that step and drops later ones (written by the run that crashed after the checkpoint)."""

    def __init__(self, path: Path, resumed_step: int = 0, columns: tuple[str, ...] = METRICS_COLUMNS) -> None:
        kept: list[dict[str, str]] = []
        if resumed_step and path.exists():
            with open(path, newline="", encoding="utf-8") as f:
                kept = [row for row in csv.DictReader(f) if int(row["step"]) <= resumed_step]
        self._file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._columns = columns
        self._writer = csv.DictWriter(self._file, columns, extrasaction="ignore")
        self._writer.writeheader()
        self._writer.writerows(kept)
        self._file.flush()

    def write(self, event: dict[str, Any]) -> None:
        self._writer.writerow({k: event.get(k, "") for k in self._columns})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _save_peft(model: Any, directory: Path) -> None:
    """PEFT's own format. Embeddings are never trained here, so PEFT need not look up the base model's config to
    decide whether to save them (it would, by the model id, and warn)."""
    model.save_pretrained(str(directory), save_embedding_layers=False)
