"""A user's app that traces the raw openai client with ``langsmith.wrappers.wrap_openai`` (no LangChain).

Configured by LANGSMITH_* and OPENAI_BASE_URL / OPENAI_API_KEY. Makes one tool-calling request and one streamed
request, flushes, and prints what the openai client returned.
"""

from __future__ import annotations

import json

from langsmith.run_trees import get_cached_client
from langsmith.wrappers import wrap_openai
from openai import OpenAI

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


def main() -> dict[str, object]:
    client = wrap_openai(OpenAI(max_retries=0))
    tools = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        langsmith_extra={"metadata": {"call": "tools"}},
    )
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say hello to Lima"}],
        stream=True,
        stream_options={"include_usage": True},
        langsmith_extra={"metadata": {"call": "stream"}},
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    get_cached_client().flush()
    return {"tools": tools.model_dump(mode="json"), "stream_text": text}


if __name__ == "__main__":
    print(json.dumps(main()))
