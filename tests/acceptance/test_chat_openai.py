"""The unmodified openai client against tracetune's chat completions on the real SmolLM2 (greedy, so the answers are
fixed): plain chat, streaming, forced function and tool calls, json_schema — each answer checked for content."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.serve.support import WEATHER, WEATHER_FUNCTION, WEATHER_TOOL, smollm2_server, stop_shared

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="session")
def chat_server(tmp_path_factory) -> Iterator[object]:
    yield smollm2_server(tmp_path_factory)
    stop_shared()


@pytest.fixture(scope="module")
def client(chat_server):
    from openai import OpenAI

    with OpenAI(base_url=f"{chat_server.url}/v1", api_key="sk-local", _strict_response_validation=True) as c:
        yield c


def check_weather_arguments(arguments: str) -> None:
    args = json.loads(arguments)
    assert set(args) <= {"location", "unit"} and isinstance(args["location"], str)
    assert "paris" in args["location"].lower()
    assert args.get("unit", "celsius") in ("celsius", "fahrenheit")


def test_plain_chat_answers(client):
    r = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, temperature=0, max_tokens=20)
    assert "Paris" in r.choices[0].message.content and r.choices[0].finish_reason == "stop"
    assert r.model == "gpt-4o-mini" and r.usage.completion_tokens > 0


def test_stream_answers_the_same(client):
    whole = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=QUESTION, temperature=0, max_tokens=20
    )
    chunks = list(
        client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=QUESTION,
            temperature=0,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and "Paris" in text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_forced_function_call(client):
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=WEATHER,
        functions=[WEATHER_FUNCTION],
        function_call={"name": "get_weather"},
        temperature=0,
        max_tokens=60,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.function_call.name == "get_weather"
    check_weather_arguments(choice.message.function_call.arguments)


def test_forced_tool_call(client):
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=WEATHER,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=60,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    check_weather_arguments(call.function.arguments)


def test_json_schema_response_format(client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Give the capital of France as JSON with city and country."}],
        response_format={"type": "json_schema", "json_schema": {"name": "capital", "schema": schema, "strict": True}},
        temperature=0,
        max_tokens=40,
    )
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"city", "country"} and value["city"] == "Paris"


def test_tool_result_turn_is_answered_in_text(client):
    messages = [
        *WEATHER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_abc123",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris", "unit": "celsius"}'},
                }
            ],
        },
        {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_abc123"},
    ]  # as captured
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL], temperature=0, max_tokens=30
    )
    assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")


def test_the_app_builds_its_own_engine_from_the_settings(tmp_path_factory, chat_server):
    """No engine installed: the first chat request loads the base model from the data home (the cached weights)
    and the settings' aliases apply; shutting the app down stops the engine."""
    from fastapi.testclient import TestClient

    from tests.models import smollm2_home
    from tracetune.config import Settings
    from tracetune.server.app import create_app

    home = smollm2_home(tmp_path_factory)  # holds the de-quantized weights already (chat_server loaded them)
    db = tmp_path_factory.mktemp("wiring") / "tt.db"
    settings = Settings(
        home=home,
        database_url=f"sqlite:///{db}",
        run_jobs=False,
        model_aliases={"my-hosted-model": "smollm2-135m-instruct"},
    )
    app = create_app(settings)
    with TestClient(app) as http:
        body = {"model": "my-hosted-model", "messages": QUESTION, "temperature": 0, "max_tokens": 20}
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["model"] == "my-hosted-model" and "Paris" in r.json()["choices"][0]["message"]["content"]
        engines = app.state.chat_service.engines
        assert engines.loaded() == ["smollm2-135m-instruct"]
    assert engines.loaded() == []
    app.state.tt.store.close()


def test_model_graders_grade_with_smollm2(client, chat_server):
    """score_model and label_model graders asking the real SmolLM2 (tracetune's own /v1, the default grader
    endpoint): the constrained answer always parses, so a small local model can be the judge."""
    chat_server.settings.port = chat_server.port
    judge = [{"role": "user", "content": "Question: the capital of France. Answer: {{sample.output_text}}. "
                                         "Is the answer right?"}]  # fmt: skip
    label = {"type": "label_model", "name": "verdict", "model": "gpt-4o-mini", "input": judge,
             "labels": ["yes", "no"], "passing_labels": ["yes"]}  # fmt: skip
    score = {"type": "score_model", "name": "judge", "model": "gpt-4o-mini", "range": [0, 10],
             "input": [{"role": "system", "content": "Score the answer from 0 to 10."}, *judge]}  # fmt: skip
    for grader in (label, score):
        graded = client.fine_tuning.alpha.graders.run(grader=grader, model_sample="Paris")
        flags = {k: v for k, v in graded.metadata.errors.model_dump().items() if not k.endswith(("details", "type"))}
        assert not any(flags.values()), graded.metadata.errors
        assert graded.metadata.sampled_model_name == "gpt-4o-mini" and graded.metadata.token_usage > 0
        assert 0.0 <= graded.reward <= 1.0
