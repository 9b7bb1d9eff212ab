"""The LoRA supervised fine-tuning recipe: one readable lifecycle, setup → train → checkpoint → cleanup.

``run_training(config, on_event)`` loads the base model (:mod:`tracetune.models.weights`), tokenizes the chat
JSONL (:mod:`tracetune.train.data`), resolves the hyperparameters (:mod:`tracetune.train.hyperparams`), wraps
the model with a PEFT LoRA adapter on the attention and MLP projections, and trains it with AdamW under a
linear-warmup + linear/cosine-decay schedule. The loss is the mean cross-entropy over the assistant tokens of a
batch, computed by :mod:`tracetune.train.loss` (logits only where a label is; a prefix the rows share, such as
the system prompt and tool schemas, run once per batch). LoRA dropout draws its masks cheaply on the CPU. Where
memory is short, ``rows_per_pass`` runs the rows of a batch a few at a time after that prefix and
``recompute_prefix`` keeps none of the prefix's activations until its backward pass (SmolLM2 then trains in
~1.3 GiB at any batch size, at about half the speed: see bench/README.md).

Progress has ONE source, the ``on_event`` callback, which the job runner, the CLI progress bar and the UI all
consume (``python -m tracetune.train.recipe CONFIG.json`` writes the same events as JSON lines to stdout):

* ``{"type": "setup", "hyperparameters": {...}, "hyperparameter_reasons" (why each "auto" value), "total_steps",
  "steps_per_epoch", "n_train_examples", "n_valid_examples", "trainable_parameters", "resumed_from_step",
  "decision_weight" (1 unless validation drives the run)}``;
* per optimizer step ``{"type": "metrics", "step", "total_steps", "epoch" (epochs done, fractional),
  "train_loss", "train_mean_token_accuracy", "learning_rate", "tokens" (non-padding tokens so far),
  "tokens_per_s", "eta_s"}``, plus ``valid_loss`` / ``valid_mean_token_accuracy`` at an epoch's last step
  when a validation file is given, and the task metrics there (``valid_accuracy``, ``valid_tool_args_exact``,
  ``valid_tool_name_accuracy``, ``valid_json_rate``, ``valid_text_exact``: greedy replies to up to
  ``task_eval_records`` validation prompts, scored as ``tracetune eval`` does — :mod:`tracetune.train.task_eval`);
* ``{"type": "best", "step", "epoch", "metrics"}`` when an epoch scores better than every earlier one (its adapter
  is then written to ``adapter/``: the job's result is the best epoch, not the last);
* ``{"type": "checkpoint", "step", "epoch", "path"}`` after each epoch;
* ``{"type": "early_stop", "step", "epoch", "n_epochs", "best_step", "reason"}`` when ``early_stopping_patience``
  epochs in a row neither scored better than the best nor lowered the validation loss;
* ``{"type": "diagnostics", "stage": "data", "findings": [{"code", "message", "advice", "level"}], "answers": {},
  "value_distribution"}`` before the first step when the data give cause (:mod:`tracetune.chat.diagnose`: rare or
  unseen argument values, leakage, calls of undeclared tools), and ``{"type": "diagnostics", "stage": "answers",
  "findings", "answers" (the best epoch's validation answers and how often each was given)}`` once training ends
  (a collapse to one answer, echoed input);
* ``{"type": "done", "adapter_dir", "steps", "tokens", "train_wall_s", "tokens_per_s", "train_loss",
  "best_step", "best_metrics", "stopped_early"}``.

Outputs under ``output_dir``: ``checkpoints/step-<n>/`` per epoch (the PEFT adapter as saved —
``adapter_model.safetensors`` + ``adapter_config.json``, loadable by ``PeftModel.from_pretrained`` and vLLM —
plus ``training_state.pt``: optimizer state, RNG state, step, and ``trainer_state.json``), the result adapter in
``adapter/`` (the best epoch's when there is a task score, else the last), and ``metrics.csv``.
``resume_from=<checkpoint dir>`` continues from a checkpoint: the step count carries on (so does the record of the
best epoch), and on CPU the result is the same, bit for bit, as an uninterrupted run (data order is a function of
seed and epoch; the learning rate a function of the step, so the step is the whole scheduler state).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tracetune.chat.diagnose import answer_key, diagnose_data, diagnose_replies, value_distribution
from tracetune.chat.preference import preference_records
from tracetune.config import load_settings
from tracetune.errors import InvalidInput, TracetuneError
from tracetune.models.compat import peft_wrapping
from tracetune.models.registry import DEFAULT_MODEL_ID, resolve
from tracetune.models.tokenizer import ModelTokenizer, load_tokenizer
from tracetune.models.weights import load_base_model
from tracetune.train.checkpoint import (
    METRICS_COLUMNS,
    PREFERENCE_METRICS,
    REWARD_METRICS,
    MetricsLog,
    read_checkpoint_info,
    restore_checkpoint,
    save_adapter,
    save_checkpoint,
)
from tracetune.train.data import (
    Example,
    collate,
    encode_examples,
    encode_pairs,
    length_grouped_batches,
    read_records,
    sorted_batches,
)
from tracetune.train.dpo import collate_pairs, pair_logps, pairs_loss, reference_logps
from tracetune.train.graders import validate_grader
from tracetune.train.hyperparams import (
    BASE_LEARNING_RATE,
    DPO_BASE_LEARNING_RATE,
    Hyperparameters,
    lr_factor,
    resolve_beta,
    resolve_hyperparameters,
)
from tracetune.train.loss import (
    CausalLM,
    sequence_logps,
    token_loss,
    token_loss_backward,
    use_cheap_dropout,
)
from tracetune.train.model_graders import API_KEY_ENV, ModelEndpoint
from tracetune.train.reinforcement import Rollout, advantages, policy_loss_backward
from tracetune.train.task_eval import MAX_RECORDS, PRIMARY, TaskEvaluator, TaskResult

METHODS = ("supervised", "dpo", "reinforcement")
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
Event = dict[str, Any]


@dataclass
class TrainConfig:
    """Everything one training run needs; JSON-serializable (the job runner writes it for the recipe process)."""

    training_file: str
    output_dir: str
    model: str = DEFAULT_MODEL_ID
    validation_file: str | None = None
    home: str | None = None  # TRACETUNE_HOME (model registry and caches); None: from the settings
    n_epochs: int | str = "auto"
    batch_size: int | str = "auto"
    learning_rate_multiplier: float | str = "auto"
    seed: int = 42
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(TARGET_MODULES))
    lr_scheduler: str = "linear"  # or "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    checkpoint_every_epoch: bool = True
    share_prefix: bool = True  # run a prefix all rows of a batch share once (see tracetune.train.loss)
    # rows of a batch whose forward + backward run together (the step still covers the whole batch: the same loss
    # and gradients); fewer rows keep fewer activations alive. None: the whole batch
    rows_per_pass: int | None = None
    # keep no activations of the shared prefix between its forward and backward pass: recompute them there, a layer
    # at a time (an extra forward pass of the prefix buys a peak memory that no longer grows with the prefix)
    recompute_prefix: bool = False
    device: str | None = None  # None: CUDA (bf16) when available, else CPU (fp32)
    # validation records replayed greedily at each epoch's end and scored (exact call or text: see
    # tracetune.train.task_eval); the best epoch's adapter is the result. 0: none (validation loss only)
    task_eval_records: int = MAX_RECORDS
    # epochs in a row without a better validation score before training stops (None: train every epoch)
    early_stopping_patience: int | None = 2
    # loss weight of the tokens of a trained tool call's argument values that are not copied from the user's
    # messages (the decision: which team, which priority) against 1 for every other trained token (the call's
    # format); see tracetune.train.loss. Applied when validation drives the run (a validation file, task scores:
    # best epoch kept), where the score shows whether the format still holds; 1: never. On bench/routing.py 30
    # reaches 0.83-0.87 held-out where 1 collapses to one answer (0.13); from the second epoch on instead of the
    # first it reached only 0.20-0.57 (bench/README.md)
    decision_weight: float = 30.0
    # "supervised" (the chat format: learn the assistant's turns) or "dpo" (the preference format, pairs of outputs:
    # raise the preferred output's likelihood over the non-preferred one's, relative to the start model)
    # or "reinforcement" (RFT: prompts; sample answers, grade them with `grader`, raise the better ones' likelihood;
    # tracetune.train.reinforcement)
    method: str = "supervised"
    beta: float | str = "auto"  # DPO's beta ("auto": hyperparams.DPO_BETA)
    grader: dict[str, Any] | None = None  # RFT's grader (tracetune.train.graders)
    # the OpenAI-compatible API model graders call (the key: $TRACETUNE_GRADER_API_KEY, never in this file)
    grader_base_url: str | None = None
    samples_per_prompt: int = 4  # RFT: answers sampled per prompt and step (a group, for GRPO's advantages)
    max_answer_tokens: int = 64  # RFT: an answer is cut after this many tokens
    # an adapter to start from (a fine-tuned model: SFT then DPO) instead of a new one; trained further, same rank
    start_adapter: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown training setting {unknown[0]!r}", field=unknown[0])
        if data.get("method", "supervised") not in METHODS:
            raise InvalidInput(f"method must be one of {', '.join(METHODS)}", field="method")
        if data.get("lr_scheduler", "linear") not in ("linear", "cosine"):
            raise InvalidInput('lr_scheduler must be "linear" or "cosine"', field="lr_scheduler")
        weight = data.get("decision_weight", 1.0)
        if not isinstance(weight, int | float) or isinstance(weight, bool) or not 0 < weight <= 100:
            raise InvalidInput("decision_weight must be a number above 0 and at most 100", field="decision_weight")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    adapter_dir: Path
    hyperparameters: Hyperparameters
    steps: int
    checkpoints: list[Path]
    train_loss: float | None
    tokens: int
    train_wall_s: float
    tokens_per_s: float
    best_step: int | None = None  # the step whose adapter is adapter_dir (the best validation score); None: the last
    best_metrics: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False


class LoRARecipe:
    """The lifecycle, one method per phase. :func:`run_training` drives it."""

    def __init__(self, config: TrainConfig, on_event: Callable[[Event], None] | None = None) -> None:
        self.config = config
        self.emit = on_event or (lambda event: None)
        self.output_dir = Path(config.output_dir)
        self.step = 0
        self.tokens = 0
        self.checkpoints: list[Path] = []
        self.last_loss: float | None = None
        self._metrics: MetricsLog | None = None
        self.task: TaskEvaluator | None = None
        self.best: dict[str, Any] | None = None  # {"step", "key", "metrics"} of the best epoch so far
        self.epochs_since_best = 0  # epochs since the score or the validation loss last improved
        self.lowest_valid_loss: float | None = None
        self.stopped_early = False
        self.last_task: TaskResult | None = None

    # -- setup ---------------------------------------------------------------------------------------------------

    def setup(
        self, *, resume_from: Path | None = None, base_model: Any = None, tokenizer: ModelTokenizer | None = None
    ) -> None:
        """Load the model and data, resolve hyperparameters, add LoRA, build the optimizer; restore a checkpoint."""
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model

        cfg = self.config
        if base_model is None:  # the data is checked before the weights load: bad input fails in a second
            home = Path(cfg.home) if cfg.home else load_settings().home
            spec = resolve(home, cfg.model)
            tokenizer, context_length, template = (
                load_tokenizer(home, cfg.model),
                spec.context_length,
                spec.chat_template,
            )
        elif tokenizer is None:
            raise ValueError("a base_model needs its tokenizer")
        else:
            context_length, template = int(base_model.config.max_position_embeddings), "chatml"
        self.preference = preference = cfg.method == "dpo"
        self.reinforce = cfg.method == "reinforcement"
        endpoint = None
        if self.reinforce:
            validate_grader(cfg.grader, "grader")
            if cfg.grader_base_url:
                endpoint = ModelEndpoint(cfg.grader_base_url, os.environ.get(API_KEY_ENV))
        # each file read and validated once
        train_lines = read_records(Path(cfg.training_file), method=cfg.method)
        # the chat records the data stand for (a DPO pair: its preferred answer), for diagnostics and task scores
        self.train_records = [preference_records(r)[0] if preference else r for _, r in train_lines]
        if self.reinforce:  # prompts without answers: no answer diagnostics, no task replay (the grader scores)
            self.train_records = []
            self.rollout = Rollout(
                train_lines, tokenizer, cfg.grader or {}, template=template, max_answer_tokens=cfg.max_answer_tokens,
                endpoint=endpoint,
            )  # fmt: skip
        self.valid_rollout: Rollout | None = None
        self.valid_set: list[Example] = []
        self.valid_pairs: list[tuple[Example, Example]] = []
        self.valid_records: list[dict[str, Any]] = []
        if cfg.validation_file:
            valid_lines = read_records(Path(cfg.validation_file), field="validation_file", method=cfg.method)
            name = Path(cfg.validation_file).name
            if self.reinforce:
                self.valid_rollout = Rollout(
                    valid_lines, tokenizer, cfg.grader or {}, template=template,
                    max_answer_tokens=cfg.max_answer_tokens, endpoint=endpoint,
                )  # fmt: skip
            elif preference:
                self.valid_pairs = encode_pairs(
                    valid_lines,
                    tokenizer,
                    context_length=context_length,
                    template=template,
                    field="validation_file",
                    name=name,
                )
            else:
                self.valid_set = encode_examples(
                    valid_lines,
                    tokenizer,
                    context_length=context_length,
                    template=template,
                    field="validation_file",
                    name=name,
                )
            self.valid_records = [preference_records(r)[0] if preference else r for _, r in valid_lines]
            if self.reinforce:
                self.valid_records = []
            if cfg.task_eval_records > 0 and not self.reinforce:
                self.task = TaskEvaluator(
                    list(enumerate(self.valid_records, 1)), tokenizer, template=template,
                    max_records=cfg.task_eval_records,
                )  # fmt: skip
        validated = self.task is not None and bool(cfg.early_stopping_patience)  # best epoch kept, early stop
        self.decision_weight = cfg.decision_weight if self.task is not None and not preference else 1.0
        self.train_set: list[Example] = []
        self.train_pairs: list[tuple[Example, Example]] = []
        if self.reinforce:
            pass  # the rollout holds the prompts
        elif preference:
            self.train_pairs = encode_pairs(
                train_lines, tokenizer, context_length=context_length, template=template,
                name=Path(cfg.training_file).name,
            )  # fmt: skip
        else:
            self.train_set = encode_examples(
                train_lines, tokenizer, context_length=context_length, template=template,
                decision_weight=self.decision_weight, name=Path(cfg.training_file).name,
            )  # fmt: skip
        self.n_train = (
            len(self.train_pairs) if preference else len(self.rollout) if self.reinforce else len(self.train_set)
        )
        self.hp = resolve_hyperparameters(
            self.n_train, cfg.n_epochs, cfg.batch_size, cfg.learning_rate_multiplier, validated=validated,
            base_learning_rate=DPO_BASE_LEARNING_RATE if preference or self.reinforce else BASE_LEARNING_RATE,
        )  # fmt: skip
        self.beta, beta_reason = resolve_beta(cfg.beta) if preference else (0.0, None)
        if beta_reason:
            self.hp.reasons["beta"] = beta_reason
        if base_model is None:
            base_model, _ = load_base_model(home, cfg.model, cfg.device)
        self.device = next(base_model.parameters()).device
        self.steps_per_epoch = math.ceil(self.n_train / self.hp.batch_size)
        self.total_steps = self.steps_per_epoch * self.hp.n_epochs
        self.warmup_steps = round(cfg.warmup_ratio * self.total_steps)
        self.pad_id = _pad_id(base_model, tokenizer)

        torch.manual_seed(cfg.seed)
        # DPO trains without dropout (as TRL's DPOTrainer does by default): the policy's log-probabilities must be
        # the reference's at the start, and the reward margin is not noise from dropout masks
        dropout = 0.0 if preference else cfg.lora_dropout
        if cfg.start_adapter:  # a fine-tuned model trained further: its adapter (same rank), trainable
            start = LoraConfig.from_pretrained(cfg.start_adapter)
            start.lora_dropout = dropout
            with peft_wrapping():
                self.model = PeftModel.from_pretrained(base_model, cfg.start_adapter, is_trainable=True, config=start)
        else:
            lora = LoraConfig(
                r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=dropout,
                target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM",
            )  # fmt: skip
            with peft_wrapping():
                self.model = get_peft_model(base_model, lora)
        self.model.peft_config["default"].base_model_name_or_path = cfg.model
        if self.device.type == "cpu":
            use_cheap_dropout(self.model)
        self.lm = CausalLM.of(self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=self.hp.learning_rate, weight_decay=cfg.weight_decay)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if preference:  # before any step (and before a checkpoint is restored): the start model's
            started = time.perf_counter()
            self.reference = reference_logps(
                self.output_dir / "reference_logps.pt", {"train": self.train_pairs, "valid": self.valid_pairs},
                self._pair_logps,
            )  # fmt: skip
            self.reference_s = time.perf_counter() - started
        start_reward = None
        if self.valid_rollout is not None and resume_from is None:  # the start model's held-out reward
            start_reward = self._valid_reward()
        if resume_from is not None:
            self._restore(Path(resume_from))
        columns = METRICS_COLUMNS + (PREFERENCE_METRICS if preference else REWARD_METRICS if self.reinforce else ())
        self._metrics = MetricsLog(self.output_dir / "metrics.csv", self.step, columns)
        self.emit(
            {
                "type": "setup",
                "method": cfg.method,
                "hyperparameters": {**self.hp.as_dict(), **({"beta": self.beta} if preference else {})},
                "hyperparameter_reasons": self.hp.reasons,
                "total_steps": self.total_steps,
                "steps_per_epoch": self.steps_per_epoch,
                "n_train_examples": self.n_train,
                "n_valid_examples": len(self.valid_pairs)
                if preference
                else len(self.valid_rollout or [])
                if self.reinforce
                else len(self.valid_set),
                **(
                    {"valid_mean_reward_start": start_reward, "samples_per_prompt": cfg.samples_per_prompt}
                    if self.reinforce
                    else {}
                ),
                "trainable_parameters": sum(p.numel() for p in self.params),
                "resumed_from_step": self.step if resume_from is not None else None,
                "task_eval_records": len(self.task) if self.task else 0,
                "early_stopping_patience": cfg.early_stopping_patience if self.task else None,
                "decision_weight": self.decision_weight,
            }
        )

    # -- train ---------------------------------------------------------------------------------------------------

    def train(self) -> None:
        """Run the remaining optimizer steps, with validation and a checkpoint at every epoch's end."""
        import torch

        if self.preference:
            lengths = [max(len(chosen), len(rejected)) for chosen, rejected in self.train_pairs]
        elif self.reinforce:
            lengths = [len(p) for p in self.rollout.prompts]
        else:
            lengths = [len(e) for e in self.train_set]
        started, done_here, tokens_here = time.perf_counter(), 0, 0
        self.model.train()
        for epoch in range(self.step // self.steps_per_epoch, self.hp.n_epochs):
            batches = length_grouped_batches(lengths, self.hp.batch_size, seed=self.config.seed, epoch=epoch)
            for index, batch_ids in enumerate(batches):
                step = epoch * self.steps_per_epoch + index + 1
                if step <= self.step:  # done before the checkpoint we resumed from
                    continue
                lr = self.hp.learning_rate * lr_factor(
                    step - 1, self.total_steps, self.warmup_steps, self.config.lr_scheduler
                )
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                if self.reinforce:
                    step_metrics, n_tokens = self._reinforcement_step(batch_ids)
                elif self.preference:
                    step_metrics, n_tokens = self._preference_step(batch_ids)
                else:
                    batch = collate([self.train_set[i] for i in batch_ids], self.pad_id, self.device)
                    loss, correct, count = token_loss_backward(
                        self.lm, batch, self.config.share_prefix, self.config.rows_per_pass,
                        self.config.recompute_prefix,
                    )  # fmt: skip
                    step_metrics = {"train_loss": loss, "train_mean_token_accuracy": correct / count}
                    n_tokens = int(batch["attention_mask"].sum())
                torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step, self.tokens, self.last_loss = step, self.tokens + n_tokens, step_metrics["train_loss"]
                done_here, tokens_here = done_here + 1, tokens_here + n_tokens
                elapsed = time.perf_counter() - started
                event: Event = {
                    "type": "metrics",
                    "step": step,
                    "total_steps": self.total_steps,
                    "epoch": round(step / self.steps_per_epoch, 4),
                    **step_metrics,
                    "learning_rate": lr,
                    "tokens": self.tokens,
                    "tokens_per_s": round(tokens_here / elapsed, 1),
                    "eta_s": round(elapsed / done_here * (self.total_steps - step), 1),
                }
                end_of_epoch = index == len(batches) - 1
                if end_of_epoch and self.valid_set:
                    event["valid_loss"], event["valid_mean_token_accuracy"] = self.evaluate(self.valid_set)
                if end_of_epoch and self.valid_pairs:
                    event.update(self._evaluate_pairs())
                if end_of_epoch and self.valid_rollout is not None:
                    event["valid_mean_reward"] = self._valid_reward()
                if end_of_epoch and self.task is not None:
                    self.last_task = self.task.run(self.model, self.pad_id)
                    event.update(self.last_task.metrics)
                    self._track_best(event)
                assert self._metrics is not None
                self._metrics.write(event)
                self.emit(event)
                if end_of_epoch and self.config.checkpoint_every_epoch:
                    self.save_checkpoint()
                if end_of_epoch and self._should_stop(epoch):
                    break
            if self.stopped_early:
                break
        self.train_wall_s = time.perf_counter() - started
        self.tokens_here = tokens_here

    def _track_best(self, event: Event) -> None:
        """Keep the adapter of the best epoch so far in ``adapter/`` (the one the job serves): the best is the
        highest task score (:data:`~tracetune.train.task_eval.PRIMARY`), then the lowest validation loss."""
        score = event.get(PRIMARY)
        loss = float(event.get("valid_loss", 0.0))
        key = [score if score is not None else -1.0, -loss]
        loss_fell = self.lowest_valid_loss is None or loss < self.lowest_valid_loss
        self.lowest_valid_loss = loss if loss_fell else self.lowest_valid_loss
        if self.best is not None and key <= self.best["key"]:
            # a lucky early score on a small validation set must not stop a model that is still learning: an epoch
            # whose validation loss is the lowest yet is progress too (scores on a few examples move in big steps)
            self.epochs_since_best = 0 if loss_fell else self.epochs_since_best + 1
            return
        metrics = {k: v for k, v in event.items() if k.startswith("valid_")}
        replies = [r.reply for r in self.last_task.replies] if self.last_task else []
        self.best = {"step": self.step, "key": key, "metrics": metrics, "replies": replies}
        self.epochs_since_best = 0
        save_adapter(self.model, self.output_dir / "adapter")
        self.emit({"type": "best", "step": self.step, "epoch": event["epoch"], "metrics": metrics})

    def _should_stop(self, epoch: int) -> bool:
        """Early stopping: ``early_stopping_patience`` epochs in a row neither scored better than the best epoch
        nor lowered the validation loss."""
        patience = self.config.early_stopping_patience
        if self.best is None or not patience or epoch + 1 >= self.hp.n_epochs or self.epochs_since_best < patience:
            return False
        if self.task is not None and (self.best["key"][0] or 0.0) <= self.task.constant_score:
            return False  # no better than one answer for every prompt: still on the plateau before the decision
        self.stopped_early = True
        reason = (
            f"neither the validation score nor the validation loss has improved for {self.epochs_since_best} epochs"
        )
        self.emit(
            {
                "type": "early_stop", "step": self.step, "epoch": epoch + 1, "n_epochs": self.hp.n_epochs,
                "best_step": self.best["step"], "reason": reason,
            }
        )  # fmt: skip
        return True

    def diagnose_data(self) -> None:
        """What the training and validation data show, before training: a ``diagnostics`` event (``"stage":
        "data"``) when there is something to say (rare or unseen answer values, leakage, undeclared tools)."""
        findings = diagnose_data(self.train_records, self.valid_records)
        if findings:
            self.emit(
                {
                    "type": "diagnostics", "stage": "data", "findings": [f.as_dict() for f in findings],
                    "answers": {}, "value_distribution": value_distribution(self.train_records),
                }
            )  # fmt: skip

    def diagnose(self) -> None:
        """What the served (best) epoch's validation answers show: a ``diagnostics`` event (``"stage":
        "answers"``), always sent once training ends."""
        findings = []
        answers: dict[str, int] = {}
        if self.best is not None and self.task is not None:
            replies = self.best["replies"]
            replayed = self.valid_records[: len(replies)]
            findings = diagnose_replies(replayed, replies)
            answers = dict(collections.Counter(answer_key(r) for r in replies).most_common())
        self.emit(
            {
                "type": "diagnostics", "stage": "answers", "findings": [f.as_dict() for f in findings],
                "answers": answers,
            }
        )  # fmt: skip

    # -- reinforcement (RFT) ---------------------------------------------------------------------------------------

    def _reinforcement_step(self, batch_ids: list[int]) -> tuple[dict[str, float], int]:
        """Sample, grade, GRPO's loss, backward (:mod:`tracetune.train.reinforcement`); the step's metrics and the
        tokens trained on."""
        answers = self.rollout.sample(self.model, batch_ids, self.pad_id, self.config.samples_per_prompt)
        examples = self.rollout.examples(answers)
        weights = advantages(answers)
        loss = policy_loss_backward(self.lm, examples, weights, self.pad_id, self.device, self.config.share_prefix)
        rewards = [a.grade.reward for a in answers]
        mean = sum(rewards) / len(rewards)
        metrics = {
            "train_loss": loss,
            "train_mean_reward": mean,
            "train_reward_std": (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5,
            "train_grader_errors": float(sum(1 for a in answers if a.grade.errors)),
            "train_groups_learned": float(len({a.prompt for a, w in zip(answers, weights, strict=True) if w})),
        }
        return metrics, sum(len(e) for e in examples)

    def _valid_reward(self) -> float:
        """The mean reward of the greedy answers to the validation prompts."""
        assert self.valid_rollout is not None
        rewards: list[float] = []
        for ids in sorted_batches([len(p) for p in self.valid_rollout.prompts], self.hp.batch_size * 4):
            rewards += [a.grade.reward for a in self.valid_rollout.greedy(self.model, ids, self.pad_id)]
        return sum(rewards) / len(rewards)

    # -- preference (DPO): tracetune.train.dpo -------------------------------------------------------------------

    def _pair_logps(self, pairs: Sequence[tuple[Example, Example]]) -> Any:
        return pair_logps(self.lm, pairs, self.hp.batch_size, self.pad_id, self.device, self.config.share_prefix)

    def _preference_step(self, batch_ids: list[int]) -> tuple[dict[str, float], int]:
        """DPO's loss for the batch's pairs against the start model's log-probabilities, backward; the step's
        metrics and the tokens trained on."""
        batch = collate_pairs([self.train_pairs[i] for i in batch_ids], self.pad_id, self.device)
        result = pairs_loss(sequence_logps(self.lm, batch, self.config.share_prefix),
                            self.reference["train"][batch_ids], self.beta)  # fmt: skip
        result.loss.backward()
        return result.metrics("train"), int(batch["attention_mask"].sum())

    def _evaluate_pairs(self) -> dict[str, float]:
        """DPO's loss and rewards over the validation pairs (``valid_loss``, ``valid_reward_margin``…)."""
        return pairs_loss(self._pair_logps(self.valid_pairs), self.reference["valid"], self.beta).metrics("valid")

    def evaluate(self, examples: list[Example]) -> tuple[float, float]:
        """``(loss, mean token accuracy)`` over all trainable tokens of ``examples`` (no dropout, no gradients)."""
        import torch

        was_training = self.model.training
        self.model.eval()
        total_loss, total_correct, total_count = 0.0, 0, 0
        with torch.no_grad():
            for batch_ids in sorted_batches([len(e) for e in examples], self.hp.batch_size):
                batch = collate([examples[i] for i in batch_ids], self.pad_id, self.device)
                loss, correct, count = token_loss(self.lm, batch, self.config.share_prefix)
                total_loss += float(loss) * count
                total_correct, total_count = total_correct + correct, total_count + count
        self.model.train(was_training)
        return total_loss / total_count, total_correct / total_count

    # -- checkpoint ----------------------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """``checkpoints/step-<n>/``: the adapter as PEFT saves it, plus what resuming needs."""
        epoch = self.step / self.steps_per_epoch
        info = {
            "step": self.step, "epoch": epoch, "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
            "tokens": self.tokens, "seed": self.config.seed, "model": self.config.model,
            "hyperparameters": self.hp.as_dict(), "best": self.best, "epochs_since_best": self.epochs_since_best,
            "lowest_valid_loss": self.lowest_valid_loss,
        }  # fmt: skip
        target = save_checkpoint(
            self.output_dir / "checkpoints" / f"step-{self.step}", self.model, self.optimizer, info
        )
        self.checkpoints.append(target)
        self.emit({"type": "checkpoint", "step": self.step, "epoch": epoch, "path": str(target)})
        return target

    def _restore(self, checkpoint: Path) -> None:
        info = read_checkpoint_info(checkpoint)
        if (info.get("steps_per_epoch"), info.get("total_steps")) != (self.steps_per_epoch, self.total_steps):
            raise InvalidInput(
                f"{checkpoint} was made with {info.get('steps_per_epoch')} steps per epoch and "
                f"{info.get('total_steps')} in all; this run has {self.steps_per_epoch} and {self.total_steps} "
                "(other data or hyperparameters)",
                field="resume_from",
            )
        restore_checkpoint(checkpoint, self.model, self.optimizer, self.device)
        self.step, self.tokens = int(info["step"]), int(info.get("tokens", 0))
        self.best, self.epochs_since_best = info.get("best"), int(info.get("epochs_since_best", 0))
        self.lowest_valid_loss = info.get("lowest_valid_loss")

    # -- cleanup -------------------------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Close files and free the model (also after a failure)."""
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        for name in ("model", "lm", "optimizer", "params"):
            self.__dict__.pop(name, None)
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_training(
    config: TrainConfig,
    on_event: Callable[[Event], None] | None = None,
    *,
    resume_from: str | Path | None = None,
    base_model: Any = None,
    tokenizer: ModelTokenizer | None = None,
) -> TrainResult:
    """Train a LoRA adapter as ``config`` says, reporting progress through ``on_event`` (see the module doc).

    ``base_model`` + ``tokenizer`` replace loading ``config.model`` (tests pass a tiny model); the model is
    modified in place (LoRA layers are injected).
    """
    recipe = LoRARecipe(config, on_event)
    try:
        recipe.setup(resume_from=Path(resume_from) if resume_from else None, base_model=base_model, tokenizer=tokenizer)
        if resume_from is None:  # a resumed job said it when it started
            recipe.diagnose_data()
        recipe.train()
        recipe.diagnose()
        best = recipe.best
        if best is None:  # no task score to choose by: the last epoch's adapter
            adapter = save_adapter(recipe.model, recipe.output_dir / "adapter")
        else:  # written by _track_best when that epoch ended
            adapter = recipe.output_dir / "adapter"
        rate = round(recipe.tokens_here / recipe.train_wall_s, 1) if recipe.train_wall_s else 0.0
        result = TrainResult(
            adapter, recipe.hp, recipe.step, recipe.checkpoints, recipe.last_loss, recipe.tokens,
            round(recipe.train_wall_s, 3), rate, best["step"] if best else None, best["metrics"] if best else {},
            recipe.stopped_early,
        )  # fmt: skip
        recipe.emit(
            {
                "type": "done", "adapter_dir": str(adapter), "steps": result.steps, "tokens": result.tokens,
                "train_wall_s": result.train_wall_s, "tokens_per_s": rate, "train_loss": result.train_loss,
                "best_step": result.best_step, "best_metrics": result.best_metrics,
                "stopped_early": result.stopped_early,
                **({"reference_s": round(recipe.reference_s, 3)} if recipe.preference else {}),
            }
        )  # fmt: skip
        return result
    finally:
        recipe.cleanup()


def _pad_id(model: Any, tokenizer: Any) -> int:
    for value in (getattr(model.config, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            return value
    return 0


def _die_with_parent() -> None:
    """Be killed (SIGKILL) when the job runner that started this process dies, so that a dead worker never leaves
    training running that another worker is about to resume (Linux ``PR_SET_PDEATHSIG``; elsewhere a no-op: an
    orphan then dies at its next event write, on the closed pipe)."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the call
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    """``python -m tracetune.train.recipe CONFIG.json [--resume-from DIR]``: run the recipe in this process,
    writing every event as one JSON line to stdout (anything else that prints goes to stderr). Exit status 0 when
    done, 2 for bad input (an ``error`` event with ``message``/``field``/``line``), 1 for a failure."""
    parser = argparse.ArgumentParser(prog="python -m tracetune.train.recipe", description=main.__doc__)
    parser.add_argument("config", type=Path, help="JSON file of TrainConfig fields")
    parser.add_argument("--resume-from", type=Path, default=None, help="a checkpoint directory to continue from")
    parser.add_argument(
        "--die-with-parent", action="store_true", help="exit when the process that started this one dies (Linux)"
    )
    args = parser.parse_args(argv)
    if args.die_with_parent:
        _die_with_parent()
    sys.stdout.flush()
    events = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints (C libraries too) must not corrupt the stream
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def on_event(event: Event) -> None:
        events.write(json.dumps(event) + "\n")

    try:
        try:
            config = TrainConfig.from_dict(json.loads(args.config.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidInput(f"cannot read the training config {args.config}: {exc}", field="config") from None
        from transformers.utils import logging as hf_logging

        threads = load_settings().train_threads  # the job runner's share of the cores (tracetune.threads)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        hf_logging.disable_progress_bar()
        run_training(config, on_event, resume_from=args.resume_from)
        return 0
    except TracetuneError as exc:
        on_event({"type": "error", "message": exc.message, "field": exc.field, "line": exc.line})
        return 2
    except Exception as exc:
        on_event({"type": "error", "message": f"{type(exc).__name__}: {exc}", "field": None, "line": None})
        traceback.print_exc()
        return 1
    finally:
        events.close()


if __name__ == "__main__":
    raise SystemExit(main())
