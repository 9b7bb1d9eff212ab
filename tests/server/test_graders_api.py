"""``/v1/fine_tuning/alpha/graders/run`` and ``/validate`` driven by the unmodified ``openai`` client (strict
response validation): rewards in OpenAI's shape, a bad grader a 400 naming its field, a grader fault while it runs
(a Python grader that loops or reaches for the network) a reward of 0 with the error flagged, the server unharmed."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.conftest import LiveServer

EXACT = {"type": "string_check", "name": "exact", "operation": "eq", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}"}  # fmt: skip


@pytest.fixture(scope="module")
def oai(live_server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=live_server.url + "/v1", api_key="x", max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


def test_run_gives_the_reward_in_openais_shape(oai):
    right = oai.fine_tuning.alpha.graders.run(grader=EXACT, model_sample="42", item={"answer": "42"})
    assert right.reward == 1.0 and right.metadata.name == "exact" and right.metadata.type == "string_check"
    assert not any(v for k, v in right.metadata.errors.model_dump().items() if not k.endswith(("details", "type")))
    assert right.metadata.execution_time >= 0
    wrong = oai.fine_tuning.alpha.graders.run(grader=EXACT, model_sample="41", item={"answer": "42"})
    assert wrong.reward == 0.0
    multi = {
        "type": "multi", "name": "both", "calculate_output": "(exact + close) / 2",
        "graders": {"exact": EXACT, "close": {"type": "text_similarity", "name": "close",
                    "evaluation_metric": "fuzzy_match", "input": "{{sample.output_text}}",
                    "reference": "{{item.answer}}"}},
    }  # fmt: skip
    both = oai.fine_tuning.alpha.graders.run(grader=multi, model_sample="42", item={"answer": "42"})
    assert both.reward == 1.0 and both.sub_rewards == {"exact": 1.0, "close": 1.0}


def test_python_graders_run_sandboxed(oai):
    source = "def grade(sample, item):\n    return 0.5 if sample['output_json'] == item['want'] else 0.0\n"
    graded = oai.fine_tuning.alpha.graders.run(
        grader={"type": "python", "name": "py", "source": source}, model_sample='{"a": 1}', item={"want": {"a": 1}}
    )
    assert graded.reward == 0.5
    network = "def grade(sample, item):\n    import socket\n    socket.create_connection(('127.0.0.1', 80))\n"
    refused = oai.fine_tuning.alpha.graders.run(
        grader={"type": "python", "name": "py", "source": network}, model_sample="x"
    )
    assert refused.reward == 0.0 and refused.metadata.errors.python_grader_runtime_error
    assert "may not use socket" in refused.metadata.errors.python_grader_runtime_error_details
    looping = "def grade(sample, item):\n    while True:\n        pass\n"
    stopped = oai.fine_tuning.alpha.graders.run(
        grader={"type": "python", "name": "py", "source": looping}, model_sample="x"
    )
    assert stopped.reward == 0.0 and stopped.metadata.errors.unresponsive_reward_error
    assert oai.fine_tuning.alpha.graders.run(grader=EXACT, model_sample="1", item={"answer": "1"}).reward == 1.0


def test_validate_echoes_a_good_grader_and_refuses_a_bad_one_naming_the_field(oai):
    assert oai.fine_tuning.alpha.graders.validate(grader=EXACT).grader.name == "exact"
    cases = [
        ({**EXACT, "input": "{{ secrets.key }}"}, "grader.input"),
        ({"type": "python", "name": "py", "source": "def grade(:"}, "grader.source"),
        ({**EXACT, "type": "telepathy"}, "grader.type"),
    ]
    for grader, field in cases:
        with pytest.raises(openai.BadRequestError) as exc:
            oai.fine_tuning.alpha.graders.validate(grader=grader)
        assert exc.value.body["param"] == field, exc.value.body
    with pytest.raises(openai.BadRequestError) as exc:
        oai.fine_tuning.alpha.graders.run(grader=EXACT, model_sample=None)  # type: ignore[arg-type]
    assert exc.value.body["param"] == "model_sample"
