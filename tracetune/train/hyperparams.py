"""Hyperparameters of a fine-tuning job: numbers, or ``"auto"`` resolved from the size of the training set.

The three knobs are OpenAI's (``n_epochs``, ``batch_size``, ``learning_rate_multiplier``); each may be a number
or ``"auto"``, and the resolved values are what a job records. The ``"auto"`` rules:

* ``n_epochs``: OpenAI's documented rule (their fine-tuning data-preparation cookbook) — aim for the model to
  see between 100 and 25,000 examples in all, at 3 epochs when that already holds:
  ``3`` if ``100 <= 3·n <= 25,000``; ``min(25, 100 // n)`` below (tiny sets get more passes, e.g. 5 epochs
  for 20 examples); ``max(1, 25,000 // n)`` above.
* ``batch_size``: ``max(1, min(8, n // 5))`` — about five optimizer steps per epoch on small sets, at most 8
  sequences per step. Big batches are cheap here: the rows of a batch share their system prompt and tool
  schemas, which the recipe runs once per batch, so on the CPU a batch of 8 costs ~1.6x one row.
* ``learning_rate_multiplier``: ``batch_size / 2``, between 1 and 3 (with the batch size as resolved, given or
  auto): fewer, bigger steps take a larger rate. The learning rate is ``BASE_LEARNING_RATE * multiplier`` with
  ``BASE_LEARNING_RATE = 5e-4`` (LoRA r=16, alpha=32). OpenAI's multipliers (0.05 to 0.2) scale the rate of a
  full fine-tune and do not carry over. Chosen on the calculator set (20 tool-call examples, 20 held out, exact
  call after greedy decoding): 3 epochs at batch 2 score 11/20 at 2e-4 and 19/20 at 5e-4 and 1e-3; at batch 4,
  10/20 at 2e-4 and 19/20 at 1e-3 (62.6 s of training instead of ~120 s at batch 2); the demo's data (30-37
  examples) scores 92-100% at batch 8 and 1.5e-3. LoRA wants a rate about ten times a full fine-tune's.

With a validation set (``validated``: the job keeps its best epoch and stops early when two epochs in a row do
no better, :mod:`tracetune.train.recipe`), an epoch too many costs little, while too few steps leave a model that
learned the call's format but not the decision behind it: on the routing task (``bench/routing.py``, 36 training
tickets) the validation score sits at chance for the first ~50 optimizer steps, then climbs. So there, ``"auto"``
takes batches of at most :data:`VALIDATED_MAX_BATCH_SIZE` and enough epochs for at least
:data:`VALIDATED_MIN_STEPS` optimizer steps (at most :data:`MAX_AUTO_EPOCHS`), and early stopping ends it when the
score stops improving. Each resolved value comes with its reason (``Hyperparameters.reasons``), which the job
reports.

The schedule (:func:`lr_factor`): linear warmup over the first ``warmup_ratio`` of the steps, then linear (or
cosine) decay towards 0; a pure function of the step, so resuming needs no scheduler state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

from tracetune.errors import InvalidInput

BASE_LEARNING_RATE = 5e-4
AUTO: Final = "auto"
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MAX_AUTO_EPOCHS = 25
MAX_AUTO_BATCH_SIZE = 8
MAX_AUTO_LR_MULTIPLIER = 3.0
# optimizer steps "auto" aims for when a validation set drives best epoch + early stop: 100 left the routing
# bench's seed 0 at 0.833 held-out (its best epoch the last); 150 gives 0.867 / 0.933 (seeds 0 / 1, bench/README.md)
VALIDATED_MIN_STEPS = 150
VALIDATED_MAX_BATCH_SIZE = 4
LIMITS: dict[str, tuple[float, float]] = {  # inclusive bounds of an explicit value (OpenAI's, where it has some)
    "n_epochs": (1, 50),
    "batch_size": (1, 256),
    "learning_rate_multiplier": (1e-6, 100.0),
    "beta": (1e-4, 10.0),
    "compute_multiplier": (0.5, 4.0),  # RFT: x4 answers sampled per prompt (2 to 16)
    "eval_interval": (1, 1000),
    "eval_samples": (1, 16),
}
# DPO: beta "auto" is the value of the DPO paper and TRL's default; the learning rate is a tenth of supervised
# tuning's (a preference step moves the model away from a start it must stay near: the loss only compares)
DPO_BETA = 0.1
DPO_BASE_LEARNING_RATE = BASE_LEARNING_RATE / 10


@dataclass(frozen=True)
class Hyperparameters:
    """Resolved values: what the recipe uses and the job records."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    learning_rate: float
    reasons: dict[str, str] = field(default_factory=dict, compare=False)  # why each "auto" value is what it is

    def as_dict(self) -> dict[str, Any]:
        """The four numbers (the reasons apart)."""
        return {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
            "learning_rate": self.learning_rate,
        }


def auto_n_epochs(n_examples: int) -> int:
    """OpenAI's rule: 3 epochs, more for tiny sets (≥ 100 examples seen), fewer for huge ones (≤ 25,000)."""
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_AUTO_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(1, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def auto_batch_size(n_examples: int) -> int:
    """About five steps per epoch on small sets, at most :data:`MAX_AUTO_BATCH_SIZE` sequences per step."""
    return max(1, min(MAX_AUTO_BATCH_SIZE, n_examples // 5))


def auto_learning_rate_multiplier(batch_size: int) -> float:
    """Half the batch size, between 1 and :data:`MAX_AUTO_LR_MULTIPLIER`: bigger steps, a larger rate."""
    return max(1.0, min(MAX_AUTO_LR_MULTIPLIER, batch_size / 2))


def resolve_hyperparameters(
    n_examples: int,
    n_epochs: int | str = AUTO,
    batch_size: int | str = AUTO,
    learning_rate_multiplier: float | str = AUTO,
    *,
    base_learning_rate: float = BASE_LEARNING_RATE,
    validated: bool = False,
) -> Hyperparameters:
    """Resolve each value (a number, or ``"auto"``) for a training set of ``n_examples`` examples; ``validated``:
    a validation set picks the best epoch and stops training early (see the module docstring).

    Raises :class:`InvalidInput` (field ``hyperparameters.<name>``) for a value that is neither.
    """
    if n_examples < 1:
        raise InvalidInput("the training file holds no examples", field="training_file")
    reasons: dict[str, str] = {}
    auto_size = auto_batch_size(n_examples)
    if validated and auto_size > VALIDATED_MAX_BATCH_SIZE:
        auto_size = VALIDATED_MAX_BATCH_SIZE
        reasons["batch_size"] = f"at most {auto_size} with a validation set: more, smaller steps"
    else:
        reasons["batch_size"] = f"about five steps per epoch for {n_examples} examples, at most {MAX_AUTO_BATCH_SIZE}"
    size = min(_integer("batch_size", batch_size, auto_size), n_examples)
    auto_epochs = auto_n_epochs(n_examples)
    reasons["n_epochs"] = f"{n_examples} examples: the model sees 100 to 25,000 examples in all"
    steps_per_epoch = math.ceil(n_examples / size)
    if validated and auto_epochs * steps_per_epoch < VALIDATED_MIN_STEPS:
        auto_epochs = min(MAX_AUTO_EPOCHS, math.ceil(VALIDATED_MIN_STEPS / steps_per_epoch))
        reasons["n_epochs"] = (
            f"at least {VALIDATED_MIN_STEPS} steps ({steps_per_epoch} per epoch): a small set needs them to learn the "
            "decision, not just the format; the best epoch is kept and training stops early when it stops improving"
        )
    epochs = _integer("n_epochs", n_epochs, auto_epochs)
    multiplier = _number("learning_rate_multiplier", learning_rate_multiplier, auto_learning_rate_multiplier(size))
    reasons["learning_rate_multiplier"] = f"half the batch size of {size}, between 1 and {MAX_AUTO_LR_MULTIPLIER:g}"
    explained = {
        name: reason
        for name, reason in reasons.items()
        if {"n_epochs": n_epochs, "batch_size": batch_size, "learning_rate_multiplier": learning_rate_multiplier}[name]
        in (AUTO, None)
    }
    return Hyperparameters(epochs, size, multiplier, base_learning_rate * multiplier, explained)


def _requested(name: str) -> BeforeValidator:
    """A requested value: ``"auto"`` (or absent), or a number checked as :func:`resolve_hyperparameters` checks it."""
    convert = _number if name in ("learning_rate_multiplier", "beta", "compute_multiplier") else _integer

    def check(value: Any) -> Any:
        if value is None or value == AUTO:
            return AUTO
        try:
            return convert(name, value, 0)
        except InvalidInput as exc:
            raise PydanticCustomError("invalid_value", exc.message) from None

    return BeforeValidator(check)


class RequestedHyperparameters(BaseModel):
    """The ``hyperparameters`` object of a job request: each a number in range or ``"auto"`` (resolved by the recipe
    once the training set's size is known); an unknown name is refused."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: Annotated[int | Literal["auto"], _requested("n_epochs")] = AUTO
    batch_size: Annotated[int | Literal["auto"], _requested("batch_size")] = AUTO
    learning_rate_multiplier: Annotated[float | Literal["auto"], _requested("learning_rate_multiplier")] = AUTO


class RequestedDpoHyperparameters(RequestedHyperparameters):
    """``method.dpo.hyperparameters``: the supervised three and ``beta`` (how far the model may move from the
    start model: a larger beta keeps it closer)."""

    beta: Annotated[float | Literal["auto"], _requested("beta")] = AUTO


class RequestedReinforcementHyperparameters(RequestedHyperparameters):
    """``method.reinforcement.hyperparameters``: the supervised three, ``compute_multiplier`` (answers sampled per
    prompt: 4 x it, 2 to 16) and OpenAI's ``eval_interval``, ``eval_samples``, ``reasoning_effort`` (accepted and
    echoed; tracetune evaluates each epoch's greedy answers, and its models do not reason)."""

    compute_multiplier: Annotated[float | Literal["auto"], _requested("compute_multiplier")] = AUTO
    eval_interval: Annotated[int | Literal["auto"], _requested("eval_interval")] = AUTO
    eval_samples: Annotated[int | Literal["auto"], _requested("eval_samples")] = AUTO
    reasoning_effort: Literal["default", "low", "medium", "high"] = "default"


def samples_per_prompt(compute_multiplier: float | str = AUTO) -> int:
    """RFT's group size: 4 answers per prompt, times ``compute_multiplier`` (2 to 16)."""
    factor = 1.0 if compute_multiplier in (AUTO, None) else _number("compute_multiplier", compute_multiplier, 1.0)
    return max(2, min(16, round(4 * factor)))


def resolve_beta(value: float | str = AUTO) -> tuple[float, str | None]:
    """DPO's beta: the number given, or :data:`DPO_BETA` for ``"auto"`` (with the reason)."""
    if value in (AUTO, None):
        return DPO_BETA, f"{DPO_BETA:g}, the DPO paper's value"
    return _number("beta", value, DPO_BETA), None


def _integer(name: str, value: Any, auto: int) -> int:
    if value == AUTO or value is None:
        return auto
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f'{name} must be an integer or "auto", got {value!r}', field=f"hyperparameters.{name}")
    _check_range(name, value)
    return value


def _number(name: str, value: Any, auto: float) -> float:
    if value == AUTO or value is None:
        return auto
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidInput(f'{name} must be a number or "auto", got {value!r}', field=f"hyperparameters.{name}")
    _check_range(name, value)
    return float(value)


def _check_range(name: str, value: float) -> None:
    low, high = LIMITS[name]
    if not low <= value <= high:
        raise InvalidInput(
            f"{name} must be between {low:g} and {high:g}, got {value!r}", field=f"hyperparameters.{name}"
        )


def lr_factor(step: int, total: int, warmup: int, kind: str = "linear") -> float:
    """Learning-rate factor of 0-based step ``step`` of ``total``: a linear warmup over ``warmup`` steps (never 0),
    reaching 1 at step ``warmup``, then a ``"linear"`` or ``"cosine"`` decay towards 0 at ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)
