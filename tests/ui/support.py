"""Runs and apps for the UI tests: LLM runs in the shapes the SDK records, written through the ingest service."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 11, 21, 8, 0, 0, tzinfo=UTC)
HOSTILE = '<script>window.__pwned = 1; alert(1)</script><img src=x onerror="window.__pwned=2">'
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers",
            "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}},
        },
    }
]


def dotted(start: datetime, rid: str) -> str:
    return start.strftime("%Y%m%dT%H%M%S%fZ") + rid


def llm_trace(project: str, i: int = 0, *, question: str = "What is 2 + 3?", answer: str | None = None) -> list[dict]:
    """A chain root with one LLM child that calls a tool, then the tool, then a second LLM call answering: the
    runs of one agent trace as the SDK posts them (complete, with end times)."""
    start = T0 + timedelta(seconds=i)
    root_id, llm1, tool, llm2 = (str(uuid.uuid4()) for _ in range(4))
    root_order = dotted(start, root_id)
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
    first = [{"role": "system", "content": "You add numbers."}, {"role": "user", "content": question}]
    second = [*first, {"role": "assistant", "content": None, "tool_calls": [call]},
              {"role": "tool", "tool_call_id": "call_1", "content": "5"}]  # fmt: skip

    def run(rid: str, offset_ms: int, dur_ms: int, parent: str | None, **fields: Any) -> dict[str, Any]:
        s = start + timedelta(milliseconds=offset_ms)
        return {
            "id": rid, "trace_id": root_id, "parent_run_id": parent,
            "dotted_order": root_order if parent is None else f"{root_order}.{dotted(s, rid)}",
            "start_time": s.isoformat(), "end_time": (s + timedelta(milliseconds=dur_ms)).isoformat(),
            "session_name": project, **fields,
        }  # fmt: skip

    return [
        run(root_id, 0, 900, None, name="agent", run_type="chain", inputs={"question": question},
            outputs={"answer": answer or "5"}),
        run(llm1, 10, 300, root_id, name="ChatOpenAI", run_type="llm",
            inputs={"messages": first, "tools": TOOLS},
            outputs={"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [call]}}]},
            extra={"metadata": {"ls_model_name": "gpt-4o-mini"}}, prompt_tokens=20, completion_tokens=5,
            total_tokens=25),
        run(tool, 320, 50, root_id, name="add", run_type="tool", inputs={"a": 2, "b": 3}, outputs={"output": 5}),
        run(llm2, 380, 400, root_id, name="ChatOpenAI", run_type="llm", inputs={"messages": second, "tools": TOOLS},
            outputs={"choices": [{"message": {"role": "assistant", "content": answer or "2 + 3 = 5"}}]},
            prompt_tokens=30, completion_tokens=7, total_tokens=37),
    ]  # fmt: skip


def hostile_trace(project: str) -> list[dict]:
    """One LLM run whose name, inputs, outputs, error and tags carry HTML and script."""
    rid = str(uuid.uuid4())
    return [
        {
            "id": rid, "trace_id": rid, "dotted_order": dotted(T0, rid), "start_time": T0.isoformat(),
            "end_time": (T0 + timedelta(seconds=1)).isoformat(), "session_name": project, "run_type": "llm",
            "name": f"evil {HOSTILE}", "tags": [HOSTILE],
            "inputs": {"messages": [{"role": "user", "content": f"hi {HOSTILE}"}],
                       "tools": [{"type": "function", "function": {"name": "t", "description": HOSTILE,
                                                                   "parameters": {"type": "object"}}}]},
            "outputs": {"choices": [{"message": {"role": "assistant", "content": f"answer {HOSTILE}",
                                                 "tool_calls": [{"id": "c1", "type": "function", "function": {
                                                     "name": "t", "arguments": json.dumps({"x": HOSTILE})}}]}}]},
        }
    ]  # fmt: skip
