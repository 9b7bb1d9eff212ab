"""POST /v1/chat/completions on a tiny random engine: shapes (the openai client validates them strictly), streaming,
forced calls and JSON formats under constraints, fine-tuned and aliased model ids, and every kind of bad input."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest

from tests.serve.support import WEATHER_TOOL
from tracetune.chat.format import render_prompt

UNIT_TOOL = {
    "type": "function",
    "function": {
        "name": "set_unit",
        "description": "Set the unit",
        "parameters": {
            "type": "object",
            "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "loud": {"type": "boolean"}},
            "required": ["unit", "loud"],
            "additionalProperties": False,
        },
    },
}
USER = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(tiny_server):
    from openai import OpenAI

    with OpenAI(base_url=f"{tiny_server.url}/v1", api_key="sk-test", _strict_response_validation=True) as c:
        yield c


def test_plain_chat_through_the_openai_client(client, tokenizer):
    r = client.chat.completions.create(model="gpt-4o-mini", messages=USER, max_tokens=6, temperature=0)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "gpt-4o-mini"
    (choice,) = r.choices
    assert choice.finish_reason == "length" and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.tool_calls is None
    prompt_tokens = len(tokenizer.encode(render_prompt(USER)))
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (
        prompt_tokens,
        6,
        prompt_tokens + 6,
    )


def test_seed_repeats_and_n_gives_several_choices(client):
    ask = {"model": "smollm2-135m-instruct", "messages": USER, "max_completion_tokens": 8, "seed": 11}
    one = client.chat.completions.create(**ask)
    assert client.chat.completions.create(**ask).choices[0].message.content == one.choices[0].message.content
    three = client.chat.completions.create(**ask, n=3)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert three.choices[0].message.content == one.choices[0].message.content
    assert three.usage.completion_tokens == 24


def test_stream_gives_the_same_text_and_usage(client):
    ask = {"model": "gpt-4o-mini", "messages": USER, "max_tokens": 10, "seed": 3}
    whole = client.chat.completions.create(**ask)
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_stream_ends_with_done(v1):
    body = {"model": "gpt-4o-mini", "messages": USER, "max_tokens": 3, "stream": True}
    with v1.stream("POST", "/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)
    assert len(events) >= 3


def test_forced_tool_call(client):
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER,
        tools=[WEATHER_TOOL, UNIT_TOOL],
        tool_choice={"type": "function", "function": {"name": "set_unit"}},
        max_tokens=40,
        temperature=0.7,
        seed=1,
    )
    (choice,) = r.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "set_unit"
    args = json.loads(call.function.arguments)
    assert (
        args["unit"] in ("celsius", "fahrenheit") and isinstance(args["loud"], bool) and set(args) == {"unit", "loud"}
    )


def test_forced_legacy_function_call(client):
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER,
        functions=[UNIT_TOOL["function"]],
        function_call={"name": "set_unit"},
        max_tokens=40,
    )
    (choice,) = r.choices
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    assert choice.message.function_call.name == "set_unit"
    assert json.loads(choice.message.function_call.arguments)["unit"] in ("celsius", "fahrenheit")


def test_required_tool_choice_streams_tool_call_deltas(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER,
        tools=[UNIT_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=40,
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    reasons = []
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or ():
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function.name or "") if delta.function else ""
            call["arguments"] += (delta.function.arguments or "") if delta.function else ""
        reasons.append(chunk.choices[0].finish_reason)
    assert list(calls) == [0] and calls[0]["name"] == "set_unit" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"])["unit"] in ("celsius", "fahrenheit")
    assert reasons[-1] == "tool_calls" and reasons[:-1] == [None] * (len(reasons) - 1)


def test_json_schema_response_format(client):
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "level": {"enum": ["low", "high"]}},
        "required": ["ok", "level"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER,
        max_tokens=30,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}},
    )
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"ok", "level"} and isinstance(value["ok"], bool) and value["level"] in ("low", "high")
    assert r.choices[0].finish_reason == "stop"


def test_tool_choice_none_answers_text_only(v1):
    body = {"model": "gpt-4o-mini", "messages": USER, "tools": [WEATHER_TOOL], "tool_choice": "none", "max_tokens": 4}
    r = v1.post("/chat/completions", json=body)
    assert r.status_code == 200 and "tool_calls" not in r.json()["choices"][0]["message"]


def test_a_fine_tuned_model_of_the_workspace_is_served_with_its_adapter(tiny_server, v1, engine, tmp_path):
    from peft import LoraConfig, get_peft_model

    from tests.train import tiny_llama

    adapter = tiny_server.settings.home / "adapters" / uuid.uuid4().hex
    lora = get_peft_model(
        tiny_llama(engine.tokenizer.vocab_size),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    lora.save_pretrained(str(adapter))
    model_id = f"ft:smollm2-135m-instruct:default:unit:{uuid.uuid4().hex[:8]}"
    store = tiny_server.store
    ws = store.workspaces.ensure("default")
    with store.db.write() as conn:
        store.models.add(
            conn,
            {
                "workspace_id": ws.id,
                "id": model_id,
                "base_model": "smollm2-135m-instruct",
                "job_id": None,
                "adapter_dir": str(adapter.relative_to(tiny_server.settings.home)),
                "created_at": int(time.time()),
            },
        )
    ask = {"messages": USER, "max_tokens": 8, "temperature": 0}
    tuned = v1.post("/chat/completions", json={"model": model_id, **ask})
    base = v1.post("/chat/completions", json={"model": "smollm2-135m-instruct", **ask})
    assert tuned.status_code == 200, tuned.text
    assert tuned.json()["model"] == model_id
    assert tuned.json()["choices"][0]["message"]["content"] != base.json()["choices"][0]["message"]["content"]
    assert str(adapter.resolve()) in engine.adapters.loaded
    other = f"ft:smollm2-135m-instruct:default:unit:{uuid.uuid4().hex[:8]}"
    missing = v1.post("/chat/completions", json={"model": other, **ask})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_inference_does_not_block_the_event_loop_and_a_gone_client_frees_its_row(tiny_server, engine):
    body = {"model": "gpt-4o-mini", "messages": USER, "max_tokens": 900, "stream": True}
    started, checked = threading.Event(), threading.Event()

    def long_stream() -> None:
        with httpx.Client(timeout=60) as c, c.stream("POST", f"{tiny_server.url}/v1/chat/completions", json=body) as r:
            for _ in r.iter_lines():
                started.set()
                if checked.is_set():
                    return  # hang up mid-stream

    worker = threading.Thread(target=long_stream)
    worker.start()
    try:
        assert started.wait(30)
        t0 = time.perf_counter()
        assert httpx.get(f"{tiny_server.url}/healthz").status_code == 200
        assert time.perf_counter() - t0 < 1.0
    finally:
        checked.set()
        worker.join(60)
    deadline = time.time() + 20
    while engine.running and time.time() < deadline:
        time.sleep(0.05)
    assert engine.running == 0  # aborted when the client went away, long before 900 tokens


BAD = [
    ({"model": "no-such-model"}, 404, "model", "model_not_found"),
    ({"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role", "invalid_role"),
    (
        {"messages": [*USER, {"role": "tool", "content": "18C", "tool_call_id": "call_1"}]},
        400,
        "messages[1].tool_call_id",
        "orphan_tool_call_id",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        400,
        "messages[0].content[0]",
        None,
    ),
    ({"messages": []}, 400, "messages", None),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
        400,
        "tools[0].function.parameters.type",
        "invalid_parameters",
    ),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, 400, "tools[0].function.name", None),
    (
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        400,
        "tool_choice",
        None,
    ),
    ({"response_format": {"type": "xml"}}, 400, "response_format.type", None),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": {"$ref": "#"}}}},
        400,
        "response_format.json_schema.schema",
        "invalid_value",
    ),
    (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "t",
                    "strict": True,
                    "schema": {"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]},
                },
            }
        },
        400,
        "response_format.json_schema.schema",
        "invalid_value",
    ),
    (
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {
                            "$defs": {
                                "A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "required": ["a"]}
                            },
                            "type": "object",
                            "properties": {"a": {"$ref": "#/$defs/A"}},
                            "required": ["a"],
                        },
                    },
                }
            ],
            "tool_choice": "required",
        },
        400,
        "tools[0].function.parameters",
        "invalid_value",
    ),
    ({"n": 1000}, 400, "n", None),
    ({"n": 0}, 400, "n", None),
    ({"max_tokens": -5}, 400, "max_tokens", None),
    ({"max_completion_tokens": 0}, 400, "max_completion_tokens", None),
    ({"max_tokens": 5000}, 400, "messages", "context_length_exceeded"),
    ({"temperature": 3}, 400, "temperature", None),
    ({"top_p": -0.1}, 400, "top_p", None),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None),
    ({"stop": 5}, 400, "stop", None),
    ({"logprobs": True}, 400, "logprobs", "unsupported_parameter"),
    ({"stream_options": {"include_usage": True}}, 400, "stream_options", None),
    ({"model": None}, 400, "model", None),
]


@pytest.mark.parametrize(("change", "status", "param", "code"), BAD)
def test_bad_input_is_a_4xx_naming_the_param(v1, change, status, param, code):
    body = {"model": "gpt-4o-mini", "messages": USER, "max_tokens": 2, **change}
    r = v1.post("/chat/completions", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"], error
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    if code:
        assert error["code"] == code
    assert param.split("[")[0].split(".")[0] in error["message"] or status == 404


def test_malformed_json_is_a_400(v1):
    r = v1.post("/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"


def test_engines_stop_when_the_app_shuts_down(tmp_path, tokenizer):
    from fastapi.testclient import TestClient

    from tests.serve.support import tiny_engine
    from tracetune.config import Settings
    from tracetune.serve.chat import ChatService
    from tracetune.serve.engine.manager import EngineManager
    from tracetune.serve.engine.protocol import EngineClosed, GenerationRequest, SamplingParams
    from tracetune.server.app import create_app
    from tracetune.server.openai.chat import install_chat_service
    from tracetune.store.blobs import Blobs

    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'tt.db'}", run_jobs=False)
    app = create_app(settings)
    engine = tiny_engine(tokenizer)
    service = ChatService(blobs=Blobs(tmp_path), store=app.state.tt.store, engines=EngineManager(lambda _: engine))
    install_chat_service(app, service)
    with TestClient(app) as http:
        r = http.post(
            "/v1/chat/completions", json={"model": "smollm2-135m-instruct", "messages": USER, "max_tokens": 2}
        )
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
    with pytest.raises(EngineClosed):
        engine.submit(GenerationRequest([1, 2], SamplingParams(max_tokens=1)), lambda e: None)
    app.state.tt.store.close()
