"""An automation's rule: which runs, how often, how to train, how to judge, which alias to move.

Everything a rule can get wrong is refused when it is created (:func:`check_rule`), each problem an
:class:`~tracetune.errors.InvalidInput` naming its field: the filter and trace filter (parsed by the filter
language), the gate (:func:`tracetune.evaluate.gates.parse_gate`: an unknown metric, a call, …), the evaluation
dataset (it must exist and hold conversations), the base model, the alias (a name, not a model id: an alias that
names itself through its own promotions would be a cycle), the trigger (exactly one of ``every_runs`` and
``every_s``), the sampling rate and the hyperparameters (the fine-tuning API's own checks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tracetune.errors import InvalidInput, invalid_input
from tracetune.evaluate.gates import parse_gate
from tracetune.models import DEFAULT_MODEL_ID

if TYPE_CHECKING:
    import uuid

    from tracetune.config import Settings
    from tracetune.store import Store

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
MIN_INTERVAL_S = 10.0


class Trigger(BaseModel):
    """When the automation fires: after ``every_runs`` new matching runs, or every ``every_s`` seconds (when there
    is at least one new run)."""

    model_config = ConfigDict(extra="forbid")

    every_runs: int | None = Field(default=None, ge=1, le=10_000_000)
    every_s: float | None = Field(default=None, ge=MIN_INTERVAL_S, le=366 * 86400)

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        if (self.every_runs is None) == (self.every_s is None):
            raise ValueError("give exactly one of every_runs (new matching runs) and every_s (a schedule)")
        return self

    def describe(self) -> str:
        return f"every {self.every_runs} new runs" if self.every_runs is not None else f"every {self.every_s:g} s"


class Rule(BaseModel):
    """The body of ``POST /tt/v1/automations`` (and of ``tracetune automations create``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    project: str = Field(min_length=1, max_length=500)
    run_type: str | None = Field(default="llm", max_length=32)
    filter: str | None = Field(default=None, max_length=10_000)
    trace_filter: str | None = Field(default=None, max_length=10_000)
    feedback_key: str | None = Field(default=None, max_length=200)
    min_score: float | None = None
    sample_rate: float = Field(default=1.0, gt=0.0, le=1.0)
    use_corrections: bool = True
    dedupe: bool = True
    method: Literal["supervised", "dpo"] = "supervised"
    base_model: str = Field(default=DEFAULT_MODEL_ID, min_length=1, max_length=300)
    start_from: Literal["base", "current"] = "base"
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)  # every firing's job trains with it (reproducible)
    trigger: Trigger
    eval_dataset: str = Field(min_length=1, max_length=200)
    gate: str = Field(min_length=1, max_length=2000)
    alias: str = Field(min_length=1, max_length=200)
    max_attempts: int = Field(default=2, ge=1, le=10)
    eval_max_tokens: int = Field(default=128, ge=1, le=4096)

    @property
    def dataset_name(self) -> str:
        """The dataset each firing writes the next version of."""
        return f"automation-{self.name}"

    def selection(self) -> dict[str, Any]:
        """The runs it picks, as ``tracetune.convert.dataset_builder.Selection`` fields."""
        return {
            "project": self.project, "run_type": self.run_type, "filter": self.filter,
            "trace_filter": self.trace_filter, "feedback_key": self.feedback_key, "min_score": self.min_score,
        }  # fmt: skip

    def job_request(self, model: str, firing_id: str) -> dict[str, Any]:
        """The fine-tuning job body (without files) a firing sends: the method and hyperparameters, and metadata
        naming the firing (how a resumed firing finds the job it already created)."""
        return {
            "model": model, "suffix": self.name[:64].replace(".", "-"),
            "method": {"type": self.method, self.method: {"hyperparameters": self.hyperparameters}},
            "metadata": {"automation": self.name, "firing_id": firing_id},
            **({"seed": self.seed} if self.seed is not None else {}),
        }  # fmt: skip


def parse_rule(body: Any) -> Rule:
    """``body`` as a :class:`Rule`; the first problem an :class:`InvalidInput` naming its field."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", field="body")
    try:
        return Rule.model_validate(body)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def check_rule(rule: Rule, store: Store, settings: Settings, workspace_id: uuid.UUID) -> None:
    """What needs the store: the filters compile, the gate parses, the evaluation dataset and the base model
    exist, the alias is no model's id, the hyperparameters are the fine-tuning API's."""
    from tracetune.models.registry import resolve
    from tracetune.query.filter_sql import filter_clause, trace_filter_clause
    from tracetune.store.schema import runs
    from tracetune.train.jobs import FineTuningJobCreate

    filter_clause(rule.filter, runs, param="filter")
    trace_filter_clause(rule.trace_filter, runs, param="trace_filter")
    if rule.min_score is not None and rule.feedback_key is None:
        raise InvalidInput("min_score needs a feedback_key", field="min_score")
    parse_gate(rule.gate, field="gate")
    if not store.datasets.list(workspace_id, name=rule.eval_dataset, limit=1):
        raise InvalidInput(
            f"no dataset named {rule.eval_dataset!r}: store the held-out conversations first "
            "(tracetune export --name, or the UI's dataset builder)",
            field="eval_dataset",
        )
    try:
        resolve(settings.home, rule.base_model)
    except Exception as exc:  # the registry's own message says which models exist
        raise InvalidInput(str(exc), field="base_model") from None
    if rule.alias.startswith("ft:") or rule.alias == rule.base_model:
        raise InvalidInput(
            f"the alias {rule.alias!r} is a model id: promotions would point it at itself; name it (e.g. support-bot)",
            field="alias",
        )
    FineTuningJobCreate.parse({**rule.job_request(rule.base_model, "check"), "training_file": "file-check"})
