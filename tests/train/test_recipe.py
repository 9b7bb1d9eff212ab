"""The LoRA recipe on a tiny random Llama (fast): what moves, what is saved, resume, events, the process entry."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.models import shared_smollm2_tokenizer
from tests.train import CALCULATOR_HELDOUT, CALCULATOR_TRAIN, make_tiny_home, tiny_llama
from tracetune.errors import InvalidInput
from tracetune.models import ModelTokenizer
from tracetune.train.data import load_examples
from tracetune.train.hyperparams import lr_factor
from tracetune.train.recipe import TARGET_MODULES, TrainConfig, run_training

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory) -> ModelTokenizer:
    return shared_smollm2_tokenizer(tmp_path_factory)


def config(tmp_path: Path, name: str = "run", **overrides) -> TrainConfig:
    settings = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 4, "seed": 1, **overrides}
    return TrainConfig(training_file=str(CALCULATOR_TRAIN), output_dir=str(tmp_path / name), **settings)


def train(tmp_path, tokenizer, name="run", model=None, events=None, **overrides):
    model = model if model is not None else tiny_llama(tokenizer.vocab_size)
    on_event = events.append if events is not None else None
    result = run_training(config(tmp_path, name, **overrides), on_event, base_model=model, tokenizer=tokenizer)
    return result, model


def adapter_weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


def test_lora_parameters_move_and_base_parameters_do_not(tmp_path, tokenizer):
    model = tiny_llama(tokenizer.vocab_size)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train(tmp_path, tokenizer, model=model)
    after = dict(model.named_parameters())
    lora = {n: p for n, p in after.items() if "lora_" in n}
    assert len(lora) == 2 * len(TARGET_MODULES) * 2  # A and B, 7 modules, 2 layers
    assert all(not p.detach().eq(0).all() for n, p in lora.items() if "lora_B" in n)  # B starts at zero
    base = {
        n.replace(".base_layer", "").removeprefix("base_model.model."): p for n, p in after.items() if "lora_" not in n
    }
    assert set(base) == set(before)
    assert all(torch.equal(base[n].detach(), before[n]) for n in before)
    assert not any(p.requires_grad for p in base.values())


def test_events_metrics_and_files(tmp_path, tokenizer):
    events: list[dict] = []
    result, _ = train(tmp_path, tokenizer, events=events, validation_file=str(CALCULATOR_HELDOUT))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "setup" and kinds[-1] == "done"
    setup = events[0]
    assert setup["total_steps"] == 10 and setup["steps_per_epoch"] == 5 and setup["n_valid_examples"] == 20
    assert setup["hyperparameters"] == {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 4.0,
                                        "learning_rate": pytest.approx(2e-3)}  # fmt: skip
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, 11))
    keys = {
        "step",
        "total_steps",
        "epoch",
        "train_loss",
        "train_mean_token_accuracy",
        "tokens",
        "tokens_per_s",
        "eta_s",
    }
    assert all(keys <= set(m) for m in metrics)
    assert metrics[-1]["eta_s"] == 0 and metrics[-1]["epoch"] == 2.0
    lengths = [len(e) for e in load_examples(CALCULATOR_TRAIN, tokenizer, context_length=8192)]
    assert metrics[-1]["tokens"] == result.tokens == 2 * sum(lengths)  # every non-padding token, once per epoch
    assert [m["step"] for m in metrics if "valid_loss" in m] == [5, 10]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert [(e["step"], Path(e["path"]).name) for e in events if e["type"] == "checkpoint"] == [
        (5, "step-5"),
        (10, "step-10"),
    ]
    out = tmp_path / "run"
    for directory in (out / "adapter", out / "checkpoints" / "step-5", out / "checkpoints" / "step-10"):
        assert (directory / "adapter_model.safetensors").is_file()
        adapter_config = json.loads((directory / "adapter_config.json").read_text())
        assert set(adapter_config["target_modules"]) == set(TARGET_MODULES)
        assert adapter_config["r"] == 16 and adapter_config["lora_alpha"] == 32
    assert (out / "checkpoints" / "step-5" / "training_state.pt").is_file()
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "step",
        "train_loss",
        "valid_loss",
        "train_mean_token_accuracy",
        "valid_mean_token_accuracy",
        "valid_accuracy",
        "valid_tool_name_accuracy",
        "valid_tool_args_exact",
        "valid_json_rate",
        "valid_text_exact",
    ]
    assert [r["step"] for r in rows if r["valid_tool_args_exact"]] == ["5", "10"]  # each epoch's task score
    assert [int(r["step"]) for r in rows] == list(range(1, 11))
    assert [r["step"] for r in rows if r["valid_loss"]] == ["5", "10"]
    assert float(rows[-1]["train_loss"]) == pytest.approx(metrics[-1]["train_loss"])
    assert not [p for p in out.rglob(".*")]  # no scratch directories left behind


def test_adapter_reloads_to_identical_logits(tmp_path, tokenizer):
    from peft import PeftModel

    result, trained = train(tmp_path, tokenizer)
    reloaded = PeftModel.from_pretrained(tiny_llama(tokenizer.vocab_size), str(result.adapter_dir))
    trained.eval()
    reloaded.eval()
    ids = torch.tensor([tokenizer.encode("<|im_start|>user\nWhat's 2+2?<|im_end|>\n<|im_start|>assistant\n")])
    with torch.no_grad():
        want, got = trained(input_ids=ids).logits, reloaded(input_ids=ids).logits
        plain = tiny_llama(tokenizer.vocab_size)(input_ids=ids).logits
    assert torch.equal(got, want)
    assert not torch.allclose(plain, want)  # the adapter does change the model


def test_resume_continues_the_steps_and_reaches_the_same_weights(tmp_path, tokenizer):
    full, _ = train(tmp_path, tokenizer, "full", n_epochs=3)

    class Crash(Exception):
        pass

    def crash_at_step_8(event):
        if event["type"] == "metrics" and event["step"] == 8:
            raise Crash

    with pytest.raises(Crash):
        run_training(config(tmp_path, "crashed", n_epochs=3), crash_at_step_8,
                     base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer)  # fmt: skip
    crashed = tmp_path / "crashed"
    assert (crashed / "checkpoints" / "step-5").is_dir() and not (crashed / "adapter").exists()
    events: list[dict] = []
    resumed = run_training(
        config(tmp_path, "crashed", n_epochs=3), events.append, resume_from=crashed / "checkpoints" / "step-5",
        base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer,
    )  # fmt: skip
    assert events[0]["resumed_from_step"] == 5
    assert [e["step"] for e in events if e["type"] == "metrics"] == list(range(6, 16))
    assert resumed.steps == full.steps == 15 and resumed.tokens == full.tokens
    want, got = adapter_weights(full.adapter_dir), adapter_weights(resumed.adapter_dir)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    with open(crashed / "metrics.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 16))
    with open(tmp_path / "full" / "metrics.csv", newline="") as f, open(crashed / "metrics.csv", newline="") as g:
        assert [r["train_loss"] for r in csv.DictReader(f)] == [r["train_loss"] for r in csv.DictReader(g)]


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, tokenizer):
    first, _ = train(tmp_path, tokenizer, "first")
    with pytest.raises(InvalidInput) as err:
        run_training(config(tmp_path, "second", batch_size=2), resume_from=first.checkpoints[0],
                     base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer)  # fmt: skip
    assert err.value.field == "resume_from"
    with pytest.raises(InvalidInput):
        run_training(config(tmp_path, "third"), resume_from=tmp_path, base_model=tiny_llama(tokenizer.vocab_size),
                     tokenizer=tokenizer)  # fmt: skip


def test_training_is_deterministic(tmp_path, tokenizer):
    a, _ = train(tmp_path, tokenizer, "a")
    b, _ = train(tmp_path, tokenizer, "b")
    c, _ = train(tmp_path, tokenizer, "c", seed=2)
    wa, wb, wc = (adapter_weights(r.adapter_dir) for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_learning_rate_schedule(kind):
    factors = [lr_factor(s, 100, 10, kind) for s in range(100)]
    assert factors[0] > 0 and factors[10] == 1.0  # warmup never starts at 0, reaches the peak
    assert all(a < b for a, b in itertools.pairwise(factors[:11]))
    assert all(a > b for a, b in itertools.pairwise(factors[10:]))
    assert 0 < factors[-1] < 0.05


def test_config_from_dict_refuses_unknown_settings():
    with pytest.raises(InvalidInput) as err:
        TrainConfig.from_dict({"training_file": "t", "output_dir": "o", "epochs": 3})
    assert err.value.field == "epochs"
    with pytest.raises(InvalidInput):
        TrainConfig.from_dict({"training_file": "t", "output_dir": "o", "lr_scheduler": "constant"})


# -- the recipe as its own process ----------------------------------------------------------------------------


@pytest.fixture
def tiny_home(tmp_path, tokenizer) -> Path:
    """A data home where "tiny" is a registered Hugging Face directory (random weights + the SmolLM2 tokenizer)."""
    return make_tiny_home(tmp_path, tokenizer)


def run_recipe_process(tmp_path: Path, settings: dict, *extra: str) -> tuple[int, list[dict]]:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(settings))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "tracetune.train.recipe", str(config_file), *extra],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # stdout holds JSON lines only
    return proc.returncode, events


def test_recipe_runs_as_its_own_process(tmp_path, tiny_home):
    settings = {
        "model": "tiny", "home": str(tiny_home), "training_file": str(CALCULATOR_TRAIN),
        "output_dir": str(tmp_path / "out"), "n_epochs": 1, "batch_size": 10,
    }  # fmt: skip
    code, events = run_recipe_process(tmp_path, settings)
    assert code == 0, events
    assert [e["type"] for e in events] == ["setup", "metrics", "metrics", "checkpoint", "diagnostics", "done"]
    assert events[-1]["adapter_dir"] == str(tmp_path / "out" / "adapter")
    adapter_config = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "tiny"

    code, events = run_recipe_process(
        tmp_path, settings, "--resume-from", str(tmp_path / "out" / "checkpoints" / "step-2")
    )
    resumed = [e["type"] for e in events]
    assert code == 0 and events[0]["resumed_from_step"] == 2 and resumed == ["setup", "diagnostics", "done"]


def test_recipe_process_reports_bad_input_as_an_error_event(tmp_path, tiny_home):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(CALCULATOR_TRAIN.read_text().splitlines()[0] + "\n{oops\n")
    settings = {"model": "tiny", "home": str(tiny_home), "training_file": str(bad), "output_dir": str(tmp_path / "o")}
    code, events = run_recipe_process(tmp_path, settings)
    assert code == 2
    assert events == [{"type": "error", "message": events[0]["message"], "field": "training_file", "line": 2}]
    code, events = run_recipe_process(tmp_path, {**settings, "n_epoch": 3})
    assert code == 2 and events[0]["field"] == "n_epoch"


def test_validation_scores_pick_the_served_epoch_and_stop_training_early(tmp_path, tokenizer, monkeypatch):
    """Scripted task scores per epoch (the real evaluator's replies, its score replaced): the best epoch's adapter
    is the result, and training stops once ``early_stopping_patience`` epochs in a row neither scored better nor
    lowered the (scripted) validation loss."""
    from tracetune.train import recipe, task_eval

    scores = iter([0.2, 0.6, 0.5, 0.4, 0.3, 0.9, 1.0])
    losses = iter([1.0, 0.9, 0.85, 0.95, 0.93, 0.5, 0.4])  # epoch 3 scores worse, but its loss is the lowest yet
    real_run, real_evaluate = task_eval.TaskEvaluator.run, recipe.LoRARecipe.evaluate

    def scripted(self, model, pad_id, **kwargs):
        result = real_run(self, model, pad_id, **kwargs)
        return task_eval.TaskResult({**result.metrics, "valid_accuracy": next(scores)}, result.replies)

    monkeypatch.setattr(task_eval.TaskEvaluator, "run", scripted)
    monkeypatch.setattr(recipe.LoRARecipe, "evaluate", lambda self, ex: (next(losses), real_evaluate(self, ex)[1]))
    events: list[dict] = []
    result, _ = train(
        tmp_path, tokenizer, events=events, n_epochs=7, validation_file=str(CALCULATOR_HELDOUT), task_eval_records=4
    )
    metrics = [e for e in events if e["type"] == "metrics" and "valid_loss" in e]
    assert [m["valid_accuracy"] for m in metrics] == [0.2, 0.6, 0.5, 0.4, 0.3]  # stopped after epoch 5 of 7
    assert {"valid_tool_args_exact", "valid_tool_name_accuracy", "valid_json_rate"} <= set(metrics[0])
    assert [e["step"] for e in events if e["type"] == "best"] == [5, 10]
    stop = next(e for e in events if e["type"] == "early_stop")
    assert (stop["epoch"], stop["n_epochs"], stop["best_step"]) == (5, 7, 10)
    assert stop["reason"] == "neither the validation score nor the validation loss has improved for 2 epochs"
    assert result.stopped_early and result.steps == 25 and result.best_step == 10
    assert result.best_metrics["valid_accuracy"] == 0.6
    best_checkpoint = adapter_weights(tmp_path / "run" / "checkpoints" / "step-10")
    served, last = adapter_weights(result.adapter_dir), adapter_weights(tmp_path / "run" / "checkpoints" / "step-25")
    assert all(torch.equal(served[k], best_checkpoint[k]) for k in served)
    assert not all(torch.equal(served[k], last[k]) for k in served)
    done = events[-1]
    assert done["best_step"] == 10 and done["stopped_early"] is True
    diagnostics = next(e for e in events if e["type"] == "diagnostics")
    assert sum(diagnostics["answers"].values()) == 4  # the served epoch's 4 validation answers
    assert all({"code", "message", "advice"} <= set(f) for f in diagnostics["findings"])


def test_no_early_stop_while_the_score_is_no_better_than_one_answer_for_every_prompt(tmp_path, tokenizer, monkeypatch):
    """On the plateau before a model learns the decision, it scores what one constant answer would (the most
    common expected answer's share): patience does not run out there, only once the score is above it."""
    from tracetune.train import recipe, task_eval

    scores = iter([0.25, 0.25, 0.25, 0.25, 0.75, 0.5, 0.5])  # the 4 calculator records: a constant answer gets 0.25
    real_run, real_evaluate = task_eval.TaskEvaluator.run, recipe.LoRARecipe.evaluate

    def scripted(self, model, pad_id, **kwargs):
        result = real_run(self, model, pad_id, **kwargs)
        return task_eval.TaskResult({**result.metrics, "valid_accuracy": next(scores)}, result.replies)

    monkeypatch.setattr(task_eval.TaskEvaluator, "run", scripted)
    monkeypatch.setattr(recipe.LoRARecipe, "evaluate", lambda self, ex: (1.0, real_evaluate(self, ex)[1]))
    events: list[dict] = []
    result, _ = train(
        tmp_path, tokenizer, events=events, n_epochs=8, validation_file=str(CALCULATOR_HELDOUT), task_eval_records=4
    )
    metrics = [e for e in events if e["type"] == "metrics" and "valid_loss" in e]
    assert [m["valid_accuracy"] for m in metrics] == [0.25, 0.25, 0.25, 0.25, 0.75, 0.5, 0.5]
    assert result.stopped_early and result.best_step == 25


def test_the_decision_weight_applies_when_validation_drives_the_run(tmp_path, tokenizer, monkeypatch):
    """With a validation set (task scores, best epoch kept) every batch carries the argument-value weights from
    the first step; without one nothing tells whether the format still holds, and no batch does."""
    from tracetune.train import recipe

    real_backward = recipe.token_loss_backward
    weighted: list[bool] = []

    def backward(lm, batch, *args):
        weighted.append("loss_weights" in batch)
        return real_backward(lm, batch, *args)

    monkeypatch.setattr(recipe, "token_loss_backward", backward)
    events: list[dict] = []
    train(tmp_path, tokenizer, events=events, n_epochs=1, validation_file=str(CALCULATOR_HELDOUT), task_eval_records=2)
    assert weighted == [True] * 5
    assert next(e for e in events if e["type"] == "setup")["decision_weight"] == 30.0

    weighted.clear()
    events.clear()
    train(tmp_path, tokenizer, name="plain", events=events, n_epochs=1)
    assert weighted == [False] * 5
    assert next(e for e in events if e["type"] == "setup")["decision_weight"] == 1.0


def test_constant_answer_score_is_the_most_common_answers_share():
    from tracetune.train.task_eval import constant_answer_score

    def call(team):
        arguments = f'{{"team": "{team}"}}'
        return {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "route_ticket", "arguments": arguments}}]}  # fmt: skip

    assert constant_answer_score([call("sales"), call("tech"), call("sales"), call("billing")]) == 0.5
    assert constant_answer_score([{"role": "assistant", "content": "4"}, call("tech")]) == 0.5
    assert constant_answer_score([]) == 0.0


def test_without_patience_every_epoch_runs_and_the_best_is_still_served(tmp_path, tokenizer, monkeypatch):
    from tracetune.train import task_eval

    scores = iter([0.5, 0.9, 0.1])
    real_run = task_eval.TaskEvaluator.run
    monkeypatch.setattr(
        task_eval.TaskEvaluator, "run",
        lambda self, model, pad_id, **kw: task_eval.TaskResult(
            {**real_run(self, model, pad_id, **kw).metrics, "valid_accuracy": next(scores)}, []
        ),
    )  # fmt: skip
    events: list[dict] = []
    result, _ = train(tmp_path, tokenizer, events=events, n_epochs=3, validation_file=str(CALCULATOR_HELDOUT),
                      task_eval_records=2, early_stopping_patience=None)  # fmt: skip
    assert not result.stopped_early and result.steps == 15 and result.best_step == 10
    assert not [e for e in events if e["type"] == "early_stop"]
