"""Fine-tuning: ``jobs`` (``FineTuningJobCreate``, ``create_job``: a request checked and stored), ``runner``
(``JobRunner``: validate the files, run the recipe as its own process, record the outcome), the LoRA SFT recipe
(:mod:`.recipe`), its data pipeline (:mod:`.data`), the loss (:mod:`.loss`), hyperparameter resolution
(:mod:`.hyperparams`), checkpoint files (:mod:`.checkpoint`), the task score on the validation set each epoch
(:mod:`.task_eval`: ``TaskEvaluator``), DPO's pieces of a step (:mod:`.dpo`), reinforcement fine-tuning's step
(:mod:`.reinforcement`: sample, grade, group-relative advantages) and its graders (:mod:`.graders`; Python graders
run in :mod:`.grader_sandbox`; model graders call a model through :mod:`.model_graders`).

Importing this package imports neither torch nor the recipe module (``TrainConfig``, ``TrainResult`` and
``run_training`` load it on first use), so ``python -m tracetune.train.recipe CONFIG.json`` — the recipe run as
its own process, so that a crash or OOM in training never takes the API down — starts cleanly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracetune.train.hyperparams import Hyperparameters, resolve_hyperparameters

if TYPE_CHECKING:
    from tracetune.train.recipe import TrainConfig, TrainResult, run_training

__all__ = ["Hyperparameters", "TrainConfig", "TrainResult", "resolve_hyperparameters", "run_training"]


def __getattr__(name: str) -> Any:
    if name in ("TrainConfig", "TrainResult", "run_training"):
        from tracetune.train import recipe

        return getattr(recipe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
