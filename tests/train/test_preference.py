"""DPO: the preference file format (validation, the two records of a pair, their labels) and the recipe's DPO
method on a tiny random Llama (the loss starts at log 2, the margin grows, the reference is the start model, resume,
SFT then DPO). The real model's DPO job through the openai client is in tests/acceptance/test_openai_dpo.py."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import pytest
import torch

from tests.models import shared_smollm2_tokenizer
from tests.train import (
    CALCULATOR_HELDOUT,
    CALCULATOR_TRAIN,
    preference_line,
    read_jsonl,
    tiny_llama,
    write_preference_file,
)
from tracetune.chat.preference import preference_records, validate_preference_record
from tracetune.chat.validate import validate_lines
from tracetune.errors import InvalidInput
from tracetune.models import ModelTokenizer
from tracetune.train.data import IGNORE_INDEX, encode_pairs, read_records
from tracetune.train.recipe import TrainConfig, run_training

LINE = preference_line(read_jsonl(CALCULATOR_TRAIN)[0])


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory) -> ModelTokenizer:
    return shared_smollm2_tokenizer(tmp_path_factory)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dpo")
    return (
        write_preference_file(CALCULATOR_TRAIN, root / "train.jsonl"),
        write_preference_file(CALCULATOR_HELDOUT, root / "valid.jsonl"),
    )


def problems(record) -> list[tuple[str, str]]:
    return [(p.field, p.code) for p in validate_preference_record(record, 7) if p.level == "error"]


def test_a_valid_line_has_no_problem():
    assert problems(LINE) == []


def test_each_problem_is_named_as_the_dpo_line_names_it():
    missing = {k: v for k, v in LINE.items() if k != "non_preferred_output"}
    assert problems(missing) == [("non_preferred_output", "missing_output")]
    assert problems({**LINE, "non_preferred_output": LINE["preferred_output"]}) == [
        ("non_preferred_output", "identical_outputs")
    ]
    bad_args = copy.deepcopy(LINE)
    bad_args["preferred_output"][0]["tool_calls"][0]["function"]["arguments"] = "{not json"
    assert problems(bad_args) == [("preferred_output[0].tool_calls[0].function.arguments", "arguments_not_json")]
    bad_input = copy.deepcopy(LINE)
    bad_input["input"]["messages"][1]["role"] = "robot"
    assert ("input.messages[1].role", "invalid_role") in problems(bad_input)
    assert len(problems(bad_input)) == 1  # found once, not once per output
    user_output = copy.deepcopy(LINE)
    user_output["non_preferred_output"] = [{"role": "user", "content": "hi"}]
    assert problems(user_output) == [("non_preferred_output[0]", "invalid_output")]
    assert problems({**LINE, "extra": 1}) == [("extra", "unknown_key")]
    assert problems({**LINE, "input": []}) == [("input", "invalid_input")]
    assert problems([]) == [("", "not_object")]


def test_the_file_reports_every_bad_line(tmp_path):
    lines = [json.dumps(LINE), json.dumps({**LINE, "non_preferred_output": []}), json.dumps(LINE), "{"]
    report = validate_lines(lines, validator=validate_preference_record)
    assert (report.lines, report.valid_lines) == (4, 2)
    assert [(p.line, p.field, p.code) for p in report.problems] == [
        (2, "non_preferred_output", "invalid_output"),
        (4, "", "invalid_json"),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput) as exc:
        read_records(path, method="dpo")
    assert exc.value.line == 2 and "not valid preference (DPO) data" in exc.value.message


def test_a_pair_trains_on_its_outputs_only(tokenizer):
    line = copy.deepcopy(LINE)  # an earlier assistant turn in the input is context, not a target
    line["input"]["messages"][1:1] = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hello! Ask me a sum."},
    ]
    chosen, rejected = preference_records(line)
    assert chosen["messages"][2] == {"role": "assistant", "content": "Hello! Ask me a sum.", "weight": 0}
    assert chosen["tools"] == rejected["tools"] == line["input"]["tools"]
    [(good, bad)] = encode_pairs([(1, line)], tokenizer, context_length=4096)
    trained = [tokenizer.decode([t for t in e.labels if t != IGNORE_INDEX]) for e in (good, bad)]
    assert '"num1": 45, "num2": 17' in trained[0] and '"num1": 17, "num2": 45' in trained[1]
    assert all("Hello!" not in text and "What's" not in text for text in trained)


def dpo_config(tmp_path: Path, files: tuple[Path, Path], name: str = "dpo", **overrides) -> TrainConfig:
    settings = {
        "method": "dpo", "n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 100, "seed": 3,
        "training_file": str(files[0]), "validation_file": str(files[1]), "output_dir": str(tmp_path / name),
        "task_eval_records": 4, **overrides,
    }  # fmt: skip
    return TrainConfig(**settings)  # type: ignore[arg-type]


def test_dpo_starts_at_log_2_and_widens_the_margin(tmp_path, tokenizer, files):
    # a tiny random model learns the 8 pairs it sees 8 times (it cannot generalise the operand order to new
    # questions: the validation pairs here are the training pairs; the real model's held-out gain is in bench/dpo.py)
    train = tmp_path / "train8.jsonl"
    train.write_text("".join(files[0].read_text(encoding="utf-8").splitlines(keepends=True)[:8]), encoding="utf-8")
    events: list[dict] = []
    config = dpo_config(tmp_path, (train, train), n_epochs=8)
    result = run_training(config, events.append, base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer)
    setup = events[0]
    assert setup["method"] == "dpo" and setup["n_train_examples"] == 8 and setup["n_valid_examples"] == 8
    assert setup["hyperparameters"]["beta"] == 0.1 and "beta" in setup["hyperparameter_reasons"]
    assert setup["hyperparameters"]["learning_rate"] == pytest.approx(100 * 5e-5)
    metrics = [e for e in events if e["type"] == "metrics"]
    # the policy is the reference before the first update: every reward is 0, the loss log 2
    assert metrics[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert metrics[0]["train_reward_margin"] == pytest.approx(0.0, abs=1e-5)
    last = metrics[-1]
    assert last["train_reward_margin"] > 0.04 and last["train_reward_accuracy"] == 1.0
    epochs = [m for m in metrics if "valid_loss" in m]
    assert len(epochs) == 8 and epochs[-1]["valid_loss"] < math.log(2) - 0.02
    assert epochs[-1]["valid_reward_margin"] > epochs[0]["valid_reward_margin"] > 0
    assert all("valid_tool_args_exact" in m for m in epochs)  # the preferred answers replayed, as for SFT
    out = tmp_path / "dpo"
    assert (out / "reference_logps.pt").is_file() and (result.adapter_dir / "adapter_model.safetensors").is_file()
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 and float(rows[-1]["train_reward_margin"]) == pytest.approx(last["train_reward_margin"])
    assert rows[-1]["valid_reward_accuracy"] != ""


def test_dpo_resume_reaches_the_same_weights(tmp_path, tokenizer, files):
    full = run_training(dpo_config(tmp_path, files, "full", validation_file=None), None,
                        base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer)  # fmt: skip

    class Crash(Exception):
        pass

    def crash_at_step_7(event):
        if event["type"] == "metrics" and event["step"] == 7:
            raise Crash

    crashed = dpo_config(tmp_path, files, "crashed", validation_file=None)
    with pytest.raises(Crash):
        run_training(crashed, crash_at_step_7, base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer)
    events: list[dict] = []
    resumed = run_training(
        crashed, events.append, resume_from=tmp_path / "crashed" / "checkpoints" / "step-5",
        base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer,
    )  # fmt: skip
    assert [e["step"] for e in events if e["type"] == "metrics"] == list(range(6, 16))
    from safetensors.torch import load_file

    want = load_file(str(full.adapter_dir / "adapter_model.safetensors"))
    got = load_file(str(resumed.adapter_dir / "adapter_model.safetensors"))
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_dpo_from_a_fine_tuned_adapter_starts_from_it(tmp_path, tokenizer, files):
    sft = run_training(
        TrainConfig(training_file=str(CALCULATOR_TRAIN), output_dir=str(tmp_path / "sft"), n_epochs=2, batch_size=4,
                    learning_rate_multiplier=4, seed=1),
        None, base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer,
    )  # fmt: skip
    events: list[dict] = []
    config = dpo_config(tmp_path, files, start_adapter=str(sft.adapter_dir), validation_file=None, n_epochs=1)
    run_training(config, events.append, base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer)
    reference = torch.load(tmp_path / "dpo" / "reference_logps.pt")["train"]
    # the reference is the SFT model, not the base: the SFT model prefers the right operands more than the base does
    base = run_training(dpo_config(tmp_path, files, "from-base", validation_file=None, n_epochs=1), None,
                        base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer)  # fmt: skip
    assert base.steps == 5
    base_reference = torch.load(tmp_path / "from-base" / "reference_logps.pt")["train"]
    assert (reference[:, 0] > base_reference[:, 0]).float().mean() > 0.8
    metrics = [e for e in events if e["type"] == "metrics"]
    assert metrics[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at the start
    saved = json.loads((tmp_path / "dpo" / "adapter" / "adapter_config.json").read_text())
    assert saved["r"] == 16


def test_the_recipe_refuses_an_unknown_method():
    with pytest.raises(InvalidInput) as exc:
        TrainConfig.from_dict({"training_file": "x", "output_dir": "y", "method": "kto"})
    assert exc.value.field == "method"
