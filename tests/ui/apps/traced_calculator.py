"""A user's app traced with the unmodified ``langsmith`` SDK (``@traceable``): a calculator agent whose model
calls an ``add`` tool, then answers. Configured by LANGSMITH_* only. Argument: the number of questions; the last
question carries HTML and script (a hostile input the UI must show as text). Prints ``{"traces": n}``."""

from __future__ import annotations

import json
import sys

from langsmith import traceable
from langsmith.run_trees import get_cached_client

HOSTILE = '<script>window.__pwned = 1; alert(1)</script><img src=x onerror="window.__pwned=2">'
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    }
]


@traceable(run_type="llm", name="calculator-model")
def model(messages: list[dict], tools: list[dict]) -> dict:
    """A deterministic stand-in for an LLM: calls add on the question's numbers, then states the tool's result."""
    last = messages[-1]
    if last["role"] == "tool":
        message = {"role": "assistant", "content": f"The answer is {last['content']}."}
    else:
        a, b = (int(x) for x in last["content"].split("What is ")[1].split("?")[0].split(" + "))
        call = {
            "id": "call_add",
            "type": "function",
            "function": {"name": "add", "arguments": json.dumps({"a": a, "b": b})},
        }
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


@traceable(run_type="tool", name="add")
def add(a: float, b: float) -> float:
    return a + b


@traceable(name="calculator-agent")
def agent(question: str) -> str:
    messages: list[dict] = [
        {"role": "system", "content": "You are a calculator. Use the add tool."},
        {"role": "user", "content": question},
    ]
    first = model(messages, TOOLS)["choices"][0]["message"]
    call = first["tool_calls"][0]
    result = add(**json.loads(call["function"]["arguments"]))
    messages += [first, {"role": "tool", "tool_call_id": call["id"], "content": str(result)}]
    return str(model(messages, TOOLS)["choices"][0]["message"]["content"])


def main(n: int) -> dict[str, int]:
    for i in range(n - 1):
        agent(f"What is {i + 2} + {i + 3}?")
    agent(f"What is 7 + 8? {HOSTILE}")
    get_cached_client().flush()
    return {"traces": n}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)))
