"""Deterministic LangSmith LLM runs for the conversion benchmark (no I/O, no langchain import).

Shaped like the runs of the baseline (``reference/baselines`` §1) and like a LangSmith export of ``ChatOpenAI``
with functions: ``run_type`` "llm"; ``inputs.messages`` holds lc-serialized (``dumpd`` form) SystemMessage /
HumanMessage messages and, in half of the runs, earlier AIMessage(function_call) / FunctionMessage / AIMessage
turns; ``outputs.generations`` holds one ChatGeneration whose message is an AIMessage calling a function
(``additional_kwargs.function_call``) with response and usage metadata; ``extra.invocation_params.functions``
lists 3 functions; flat form (what a store returns and LangChain's loader reads). About 4.2 KB of JSON per run.
Each run is its own trace (a root LLM call), as in the baseline.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

CALCULATOR = {
    "name": "Calculator",
    "description": "Do one arithmetic operation on two numbers and return the result.",
    "parameters": {
        "type": "object",
        "properties": {
            "num1": {"type": "number", "description": "The first operand."},
            "num2": {"type": "number", "description": "The second operand."},
            "operation": {"type": "string", "enum": ["add", "subtract", "multiply", "divide"]},
        },
        "required": ["num1", "num2", "operation"],
    },
}
FUNCTIONS = [
    CALCULATOR,
    {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
    {
        "name": "search_web",
        "description": "Search the web and return the top results.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
            },
            "required": ["query"],
        },
    },
]
OPS = {
    "add": ["What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} + {b}."],
    "subtract": ["What is {a} minus {b}?", "Subtract {b} from {a}.", "Compute {a} - {b}."],
    "multiply": ["What is {a} times {b}?", "Multiply {a} by {b}.", "Compute {a} * {b}."],
    "divide": ["What is {a} divided by {b}?", "Divide {a} by {b}.", "What's {a}/{b}?"],
}
CITIES = ["Paris", "Tokyo", "Lagos", "Lima", "Oslo", "Pune", "Quito", "Seoul", "Cairo", "Perth"]
TOPICS = ["rust async runtimes", "sourdough hydration", "LoRA rank choice", "tide tables", "heat pump efficiency"]
SYSTEMS = [
    "You are a helpful assistant. Use the available functions when they help answer the user.",
    "You are an agent for ACME Corp. Always call a function when the user asks for a computation, "
    "the weather or something to look up. Be concise.",
    "You are a careful assistant. Think about which tool fits the request, then call it with exact arguments.",
]
MODEL = "gpt-4o-mini-2024-07-18"


def _lc(cls: str, kind: str, content: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", cls],
        "kwargs": {"content": content, "type": kind, **kwargs},
    }


def _ai_call(name: str, args: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    call = {"function_call": {"name": name, "arguments": json.dumps(args)}}
    return _lc("AIMessage", "ai", "", additional_kwargs=call, tool_calls=[], invalid_tool_calls=[], **kwargs)


def _pick_call(rng: random.Random) -> tuple[str, str, dict[str, Any], str]:
    k = rng.random()
    if k < 0.6:
        op = rng.choice(list(OPS))
        a, b = rng.randint(2, 9999), rng.randint(2, 999)
        result = {"add": a + b, "subtract": a - b, "multiply": a * b, "divide": round(a / b, 4)}[op]
        return rng.choice(OPS[op]).format(a=a, b=b), "Calculator", {"num1": a, "num2": b, "operation": op}, str(result)
    if k < 0.8:
        city = rng.choice(CITIES)
        weather = {"temp": rng.randint(-10, 35), "sky": rng.choice(["clear", "rain", "cloudy"])}
        args = {"city": city, "unit": rng.choice(["celsius", "fahrenheit"])}
        return f"What's the weather like in {city} right now?", "get_weather", args, json.dumps(weather)
    topic = rng.choice(TOPICS)
    results = [{"title": f"{topic} - result {j}", "url": f"https://example.com/{j}"} for j in range(3)]
    args = {"query": topic, "max_results": rng.randint(1, 10)}
    return f"Can you look up {topic} for me?", "search_web", args, json.dumps(results)


def make_run(i: int, rng: random.Random) -> dict[str, Any]:
    """Run number ``i`` (a JSON-able dict in the flat form of a LangSmith export)."""
    messages = [_lc("SystemMessage", "system", rng.choice(SYSTEMS))]
    for _ in range(rng.choice([0, 0, 1, 2])):  # earlier turns of the same conversation
        question, name, args, result = _pick_call(rng)
        messages += [
            _lc("HumanMessage", "human", question),
            _ai_call(name, args),
            _lc("FunctionMessage", "function", result, name=name),
            _lc("AIMessage", "ai", f"The result is {result[:60]}.", tool_calls=[], invalid_tool_calls=[]),
        ]
    question, name, args, _ = _pick_call(rng)
    messages.append(_lc("HumanMessage", "human", question))
    run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    prompt_tokens = 120 + 40 * len(messages)
    usage = {"input_tokens": prompt_tokens, "output_tokens": 24, "total_tokens": prompt_tokens + 24}
    metadata = {"finish_reason": "function_call", "model_name": MODEL, "system_fingerprint": "fp_0ba0d124f1"}
    answer = _ai_call(name, args, response_metadata=metadata, id=f"run-{run_id}-0", usage_metadata=usage)
    generation = {
        "text": "",
        "generation_info": {"finish_reason": "function_call", "logprobs": None},
        "type": "ChatGeneration",
        "message": answer,
    }
    start = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=i * 7)
    token_usage = {"completion_tokens": 24, "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + 24}
    return {
        "id": run_id,
        "name": "ChatOpenAI",
        "run_type": "llm",
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(milliseconds=rng.randint(300, 3000))).isoformat(),
        "extra": {
            "invocation_params": {
                "model": "gpt-4o-mini",
                "model_name": "gpt-4o-mini",
                "stream": False,
                "n": 1,
                "temperature": 0.0,
                "_type": "openai-chat",
                "stop": None,
                "functions": FUNCTIONS,
            },
            "options": {"stop": None},
            "batch_size": 1,
            "metadata": {"ls_provider": "openai", "ls_model_name": "gpt-4o-mini", "ls_model_type": "chat"},
            "runtime": {"sdk": "langsmith-py", "sdk_version": "0.14.17", "library": "langchain-core"},
        },
        "error": None,
        "serialized": None,
        "events": [{"name": "start", "time": start.isoformat()}],
        "inputs": {"messages": messages},
        "outputs": {
            "generations": [generation],
            "llm_output": {"token_usage": token_usage, "model_name": MODEL, "system_fingerprint": "fp_0ba0d124f1"},
            "run": None,
            "type": "LLMResult",
        },
        "reference_example_id": None,
        "parent_run_id": None,
        "tags": ["bench"],
        "session_id": None,
        "trace_id": run_id,
        "dotted_order": start.strftime("%Y%m%dT%H%M%S%fZ") + run_id,
        "status": "success",
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 24,
        "total_tokens": prompt_tokens + 24,
    }


def make_runs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [make_run(i, rng) for i in range(n)]
