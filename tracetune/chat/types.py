"""The documented dict shapes that flow through conversion (pure data, no behaviour).

run (stored row, ``langsmith.schemas.Run`` or dict) ──session_from_run──▶ ChatSession | Skip
ChatSession ──record_from_session(format)──▶ one JSONL record (OpenAI chat / HF / ShareGPT)

Messages are in OpenAI chat format exactly as the fine-tuning API takes them.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class FunctionCall(TypedDict):
    name: str
    arguments: str  # a JSON text, as OpenAI sends it


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(TypedDict):
    role: Role
    content: NotRequired[str | list[dict[str, Any]] | None]  # text, or content parts (text / image_url …)
    name: NotRequired[str]  # function messages; optional on others
    tool_calls: NotRequired[list[ToolCall]]  # assistant
    function_call: NotRequired[FunctionCall]  # assistant, legacy functions API
    tool_call_id: NotRequired[str]  # tool
    weight: NotRequired[Literal[0, 1]]  # assistant: OpenAI's per-message training weight


class SessionSource(TypedDict):
    """Lineage of a session: which run(s) it came from."""

    run_ids: list[str]  # the LLM run(s); several when an agent trajectory was merged
    trace_id: str | None
    thread_id: NotRequired[str | None]
    project_id: NotRequired[str | None]
    group: NotRequired[str]  # what must not straddle the train/validation split, when not the thread or trace


class ChatSession(TypedDict):
    messages: list[ChatMessage]
    tools: NotRequired[list[dict[str, Any]]]  # [{"type": "function", "function": {name, description, parameters}}]
    functions: NotRequired[list[dict[str, Any]]]  # legacy: [{name, description, parameters}]
    parallel_tool_calls: NotRequired[bool]
    source: SessionSource


class Skip(TypedDict):
    """A run that yields no session, and why (counted by reason in export summaries)."""

    reason: str  # short stable slug: "error", "not_llm", "no_output", "malformed_message", "unknown_role", …
    detail: str  # human-readable, names the field
    run_id: str | None
