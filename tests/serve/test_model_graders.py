"""score_model and label_model graders on a real server: ``graders/run`` (the unmodified openai client) asks
tracetune's own chat API (its default grader endpoint) with the grader's messages rendered and the answer
constrained to JSON; the reward is the model's answer mapped onto [0, 1]; an endpoint that is down, or a model it
does not serve, is a reward of 0 with ``model_grader_server_error`` and its details, never a failed call."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.conftest import LiveServer
from tracetune.train.graders import run_grader, validate_grader
from tracetune.train.model_graders import ModelEndpoint

JUDGE_INPUT = [
    {"role": "system", "content": "Score the answer from 0 to 10 against the reference."},
    {"role": "user", "content": "Answer: {{sample.output_text}}\nReference: {{item.answer}}"},
]
SCORE = {"type": "score_model", "name": "judge", "model": "gpt-4o-mini", "input": JUDGE_INPUT, "range": [0, 10]}
LABEL = {
    "type": "label_model", "name": "verdict", "model": "gpt-4o-mini", "labels": ["right", "wrong"],
    "passing_labels": ["right"],
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "Is {{sample.output_text}} right?"}]}],
}  # fmt: skip


@pytest.fixture(scope="module")
def oai(tiny_server: LiveServer) -> Iterator[openai.OpenAI]:
    tiny_server.settings.port = tiny_server.port  # the default grader endpoint is this server's own /v1
    with openai.OpenAI(
        base_url=tiny_server.url + "/v1", api_key="x", max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


def _asked(v1, messages, result_schema, max_tokens=32):
    """What the grading model answers to ``messages`` (the same request the grader sends)."""
    schema = {"type": "object", "properties": {"result": result_schema}, "required": ["result"],
              "additionalProperties": False}  # fmt: skip
    body = {"model": "gpt-4o-mini", "messages": messages, "temperature": 0.0, "max_tokens": max_tokens,
            "response_format": {"type": "json_schema", "json_schema": {"name": "grade", "strict": True,
                                                                      "schema": schema}}}  # fmt: skip
    response = v1.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_score_model_reward_is_the_models_score_over_its_range(oai, v1):
    graded = oai.fine_tuning.alpha.graders.run(grader=SCORE, model_sample="-2", item={"answer": "-2"})
    rendered = [JUDGE_INPUT[0], {"role": "user", "content": "Answer: -2\nReference: -2"}]
    direct = _asked(v1, rendered, {"type": "number"})
    assert graded.metadata.sampled_model_name == direct["model"]
    assert graded.metadata.token_usage == direct["usage"]["total_tokens"]
    try:
        score = json.loads(direct["choices"][0]["message"]["content"])["result"]
    except ValueError:  # a random model may run a number past the token limit: that is a parse error
        assert graded.reward == 0.0 and graded.metadata.errors.api_model_grader_parse_error
    else:
        assert graded.reward == pytest.approx(min(1.0, max(0.0, score / 10)))
        assert not graded.metadata.errors.api_model_grader_parse_error
    assert (
        graded.api_model_grader_token_usage_per_model[direct["model"]]["total_tokens"]
        == direct["usage"]["total_tokens"]
    )


def test_label_model_passes_on_a_passing_label(oai, v1):
    graded = oai.fine_tuning.alpha.graders.run(grader=LABEL, model_sample="4")
    direct = _asked(v1, [{"role": "user", "content": "Is 4 right?"}], {"type": "string", "enum": ["right", "wrong"]})
    label = json.loads(direct["choices"][0]["message"]["content"])["result"]  # the enum: always one of the labels
    assert graded.reward == (1.0 if label == "right" else 0.0)
    assert not any(v for k, v in graded.metadata.errors.model_dump().items() if not k.endswith(("details", "type")))


def test_a_model_grader_in_a_multi_grader(oai):
    multi = {"type": "multi", "name": "m", "graders": {"verdict": LABEL, "exact": {
        "type": "string_check", "name": "exact", "operation": "eq", "input": "{{sample.output_text}}",
        "reference": "4"}}, "calculate_output": "exact"}  # fmt: skip
    graded = oai.fine_tuning.alpha.graders.run(grader=multi, model_sample="4")
    assert graded.reward == 1.0 and set(graded.sub_rewards) == {"verdict", "exact"}


def test_an_endpoint_down_or_a_model_not_served_is_a_flagged_zero(oai, tiny_server):
    unknown = oai.fine_tuning.alpha.graders.run(grader={**SCORE, "model": "no-such-model"}, model_sample="1",
                                                item={"answer": "1"})  # fmt: skip
    assert unknown.reward == 0.0 and unknown.metadata.errors.api_model_grader_server_error
    assert "404" in unknown.metadata.errors.api_model_grader_server_error_details
    assert "no-such-model" in unknown.metadata.errors.api_model_grader_server_error_details
    down = run_grader(validate_grader(SCORE), "1", {"answer": "1"}, endpoint=ModelEndpoint("http://127.0.0.1:9/v1"))
    assert down.reward == 0.0 and down.errors["model_grader_server_error"]
    assert "127.0.0.1:9" in down.errors["model_grader_server_error_details"]
    alone = run_grader(validate_grader(SCORE), "1", {"answer": "1"})  # no endpoint at all: says what to set
    assert "TRACETUNE_GRADER_BASE_URL" in alone.errors["model_grader_server_error_details"]


def test_rft_training_grades_its_samples_with_a_model_grader(tiny_server, tmp_path, tokenizer):
    """The recipe's RFT step with a label_model grader: every sampled answer is graded by the model the endpoint
    serves (no grader errors), and the rewards are reported per step."""
    from tests.train import tiny_llama
    from tests.train.test_reinforcement import rft_file
    from tracetune.train.recipe import TrainConfig, run_training

    verdict = {**LABEL, "input": [{"role": "user", "content": "Is {{sample.output_text}} equal to {{item.answer}}?"}]}
    data = rft_file(tmp_path / "rft.jsonl", n=4)
    config = TrainConfig(
        method="reinforcement", grader=verdict, grader_base_url=tiny_server.url + "/v1", training_file=str(data),
        output_dir=str(tmp_path / "out"), n_epochs=1, batch_size=4, samples_per_prompt=2, max_answer_tokens=4, seed=1,
    )  # fmt: skip
    events: list[dict] = []
    run_training(config, events.append, base_model=tiny_llama(tokenizer.vocab_size), tokenizer=tokenizer)
    (metrics,) = [e for e in events if e["type"] == "metrics"]
    assert metrics["train_grader_errors"] == 0 and metrics["train_mean_reward"] in {k / 8 for k in range(9)}
