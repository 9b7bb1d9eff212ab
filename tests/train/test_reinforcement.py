"""RFT's step (``tracetune.train.reinforcement``) and the recipe's ``reinforcement`` method on a tiny random Llama:
group-relative advantages, answers sampled and graded, the metrics and the validation reward reported; a missing
or bad grader refused before any weight loads. The real model's RFT is in bench/ and tests/acceptance/."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from tests.models import shared_smollm2_tokenizer
from tests.train import CALCULATOR_TRAIN, read_jsonl, tiny_llama
from tracetune.errors import InvalidInput
from tracetune.train.graders import GradeResult
from tracetune.train.recipe import TrainConfig, run_training
from tracetune.train.reinforcement import Answer, advantages

SIMILAR = {"type": "text_similarity", "name": "similar", "evaluation_metric": "fuzzy_match",
           "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}  # fmt: skip


def answer(prompt: int, reward: float) -> Answer:
    return Answer(prompt, [1], {"role": "assistant", "content": ""}, GradeResult(reward, "g", "string_check"))


def test_advantages_are_relative_to_each_prompts_group():
    answers = [answer(0, 1.0), answer(0, 0.0), answer(1, 0.5), answer(1, 0.5), answer(2, 0.2), answer(2, 0.8)]
    got = advantages(answers)
    assert got[0] == pytest.approx(1.0, abs=1e-3) and got[1] == pytest.approx(-1.0, abs=1e-3)
    assert got[2] == got[3] == 0.0  # every answer scored the same: nothing to learn from that prompt
    assert got[4] == pytest.approx(-1.0, abs=1e-3) and got[5] == pytest.approx(1.0, abs=1e-3)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return shared_smollm2_tokenizer(tmp_path_factory)


def rft_file(path: Path, n: int = 8) -> Path:
    lines = []
    for record in read_jsonl(CALCULATOR_TRAIN)[:n]:
        *prompt, reply = record["messages"]
        lines.append(
            {"messages": prompt, "tools": record["tools"], "answer": reply["tool_calls"][0]["function"]["arguments"]}
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_the_recipe_samples_grades_and_reports_rewards(tmp_path, tokenizer):
    data = rft_file(tmp_path / "rft.jsonl")
    config = TrainConfig(
        method="reinforcement", grader=SIMILAR, training_file=str(data), validation_file=str(data),
        output_dir=str(tmp_path / "out"), n_epochs=2, batch_size=4, samples_per_prompt=3, max_answer_tokens=8,
        learning_rate_multiplier=50, seed=1,
    )  # fmt: skip
    events: list[dict] = []
    result = run_training(config, events.append, base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer)
    setup = events[0]
    assert setup["method"] == "reinforcement" and setup["samples_per_prompt"] == 3 and setup["n_train_examples"] == 8
    assert 0.0 <= setup["valid_mean_reward_start"] <= 1.0
    metrics = [e for e in events if e["type"] == "metrics"]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    for m in metrics:
        assert 0.0 <= m["train_mean_reward"] <= 1.0 and m["train_reward_std"] >= 0 and m["train_grader_errors"] == 0
        assert math.isfinite(m["train_loss"]) and m["tokens"] > 0
    assert sum(m["train_groups_learned"] for m in metrics) > 0  # fuzzy rewards differ within a group
    assert [("valid_mean_reward" in m) for m in metrics] == [False, True, False, True]
    with open(tmp_path / "out" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["valid_mean_reward"]) == pytest.approx(metrics[-1]["valid_mean_reward"])
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(
    ("grader", "field"),
    [(None, "grader"), ({**SIMILAR, "input": "{{answer}}"}, "grader.input"), ({**SIMILAR, "type": "x"}, "grader.type")],
)
def test_a_missing_or_bad_grader_is_refused_before_training(tmp_path, tokenizer, grader, field):
    config = TrainConfig(method="reinforcement", grader=grader, training_file=str(rft_file(tmp_path / "r.jsonl")),
                         output_dir=str(tmp_path / "out"))  # fmt: skip
    with pytest.raises(InvalidInput) as exc:
        run_training(config, None, base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer)
    assert exc.value.field == field
