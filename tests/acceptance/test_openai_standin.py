"""The OpenAI stand-in answers in shapes the real openai client accepts under strict validation, so the
acceptance traces are made of genuine client responses (functions, tools, text, and each one streamed)."""

from __future__ import annotations

import json

import pytest

WEATHER = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    },
}
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def strict_openai(openai_standin):
    from openai import OpenAI

    return OpenAI(
        base_url=openai_standin.base_url, api_key="sk-standin", max_retries=0, _strict_response_validation=True
    )


def test_functions_tools_and_text(strict_openai):
    fn = strict_openai.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, functions=[WEATHER], function_call={"name": "get_weather"}
    )
    assert fn.choices[0].finish_reason == "function_call"
    assert fn.choices[0].message.function_call.name == "get_weather"
    assert json.loads(fn.choices[0].message.function_call.arguments) == {"location": "Paris", "unit": "celsius"}

    tools = strict_openai.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=[{"type": "function", "function": WEATHER}]
    )
    (call,) = tools.choices[0].message.tool_calls
    assert tools.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris", "unit": "celsius"}

    text = strict_openai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert text.choices[0].message.content == "Echo: What is the weather in Paris?"
    assert text.usage.total_tokens == text.usage.prompt_tokens + text.usage.completion_tokens


def test_streams(strict_openai):
    chunks = list(
        strict_openai.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: What is the weather in Paris?"
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0

    chunks = list(
        strict_openai.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, tools=[{"type": "function", "function": WEATHER}]
        )
    )
    calls = [t for c in chunks for t in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "get_weather"
    arguments = "".join(t.function.arguments or "" for t in calls)
    assert json.loads(arguments) == {"location": "Paris", "unit": "celsius"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
