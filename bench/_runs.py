"""Deterministic, realistic LangChain-style runs for the benchmarks (no I/O).

An LLM run looks like what ``ChatOpenAI`` under ``LangChainTracer`` sends (wire-protocols §2.6-§2.7): a post
with lc-serialized chat messages in ``inputs.messages`` (one batch), ``serialized``, ``extra`` with metadata and
``invocation_params`` (one tool schema) and tags; then a patch with ``outputs.generations`` holding an AIMessage
with a tool call, ``llm_output.token_usage`` and ``extra.metadata.usage_metadata``. About 3 KB of JSON per run
(post + patch), which is what the issue calls a realistic LLM-run size.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

CITIES = ["Paris", "Berlin", "Lagos", "Osaka", "Lima", "Oslo", "Quito", "Hanoi", "Perth", "Tunis"]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city, in the requested unit.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SYSTEM = (
    "You are a helpful weather assistant. Answer briefly. When the user asks about the weather, call the "
    "get_weather tool with the city they name; never invent a temperature yourself."
)


def _msg(cls: str, content: str, kind: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", cls],
        "kwargs": {"content": content, "type": kind, **kwargs},
    }


def dotted(start: datetime, run_id: uuid.UUID) -> str:
    return start.strftime("%Y%m%dT%H%M%S%fZ") + str(run_id)


def uuid7ish(rng: random.Random, start: datetime) -> uuid.UUID:
    """A time-ordered id shaped like LangChain's UUIDv7 ids (ms timestamp in the top 48 bits)."""
    ms = int(start.timestamp() * 1000)
    rand = rng.getrandbits(80)
    value = (ms << 80) | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


def llm_run(
    rng: random.Random,
    start: datetime,
    *,
    project: str,
    run_id: uuid.UUID | None = None,
    trace_id: uuid.UUID | None = None,
    parent: tuple[uuid.UUID, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(post fields, patch fields) of one chat-model run, as ``Client.create_run``/``update_run`` kwargs."""
    run_id = run_id or uuid7ish(rng, start)
    order = dotted(start, run_id) if parent is None else f"{parent[1]}.{dotted(start, run_id)}"
    city = rng.choice(CITIES)
    ticket = rng.randint(1, 99999)
    question = f"What is the weather like in {city} today, and should I take an umbrella? (ticket #{ticket})"
    prompt_tokens = rng.randint(40, 400)
    completion_tokens = rng.randint(5, 120)
    total = prompt_tokens + completion_tokens
    end = start + timedelta(milliseconds=rng.randint(200, 4000))
    invocation = {
        "model": "gpt-4o-mini",
        "model_name": "gpt-4o-mini",
        "stream": False,
        "temperature": 0.2,
        "_type": "openai-chat",
        "stop": None,
        "tools": [TOOL],
        "tool_choice": "auto",
    }
    metadata = {
        "user_id": f"user-{rng.randint(1, 500)}",
        "session_id": f"sess-{rng.randint(1, 5000)}",
        "ls_provider": "openai",
        "ls_model_name": "gpt-4o-mini",
        "ls_model_type": "chat",
        "ls_temperature": 0.2,
        "ls_integration": "langchain_chat_model",
        "LANGSMITH_PROJECT": project,
    }
    post = {
        "id": run_id,
        "trace_id": trace_id or run_id,
        "parent_run_id": parent[0] if parent else None,
        "dotted_order": order,
        "name": "ChatOpenAI",
        "run_type": "llm",
        "start_time": start,
        "project_name": project,
        "inputs": {"messages": [[_msg("SystemMessage", SYSTEM, "system"), _msg("HumanMessage", question, "human")]]},
        "serialized": {
            "lc": 1,
            "type": "constructor",
            "id": ["langchain", "chat_models", "openai", "ChatOpenAI"],
            "kwargs": {
                "model_name": "gpt-4o-mini",
                "temperature": 0.2,
                "openai_api_key": {"lc": 1, "type": "secret", "id": ["OPENAI_API_KEY"]},
            },
            "name": "ChatOpenAI",
        },
        "extra": {
            "metadata": dict(metadata),
            "invocation_params": invocation,
            "options": {"stop": None},
            "batch_size": 1,
        },
        "tags": ["bench", f"seq:step:{rng.randint(1, 3)}", rng.choice(["prod", "staging"])],
        "events": [{"name": "start", "time": start.isoformat()}],
    }
    call_id = f"call_{rng.getrandbits(64):016x}"
    usage = {
        "input_tokens": prompt_tokens,
        "output_tokens": completion_tokens,
        "total_tokens": total,
        "input_token_details": {"cache_read": 0},
        "output_token_details": {"reasoning": 0},
    }
    ai = _msg(
        "AIMessage",
        "",
        "ai",
        additional_kwargs={"refusal": None},
        response_metadata={
            "token_usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": total,
            },
            "model_name": "gpt-4o-mini-2024-07-18",
            "finish_reason": "tool_calls",
        },
        id=f"lc_run--{run_id}-0",
        tool_calls=[
            {"name": "get_weather", "args": {"city": city, "unit": "celsius"}, "id": call_id, "type": "tool_call"}
        ],
        invalid_tool_calls=[],
        usage_metadata=usage,
    )
    patch = {
        "run_id": run_id,
        "trace_id": trace_id or run_id,
        "parent_run_id": parent[0] if parent else None,
        "dotted_order": order,
        "end_time": end,
        "outputs": {
            "generations": [
                [
                    {
                        "text": "",
                        "type": "ChatGeneration",
                        "generation_info": {"finish_reason": "tool_calls", "logprobs": None},
                        "message": ai,
                    }
                ]
            ],
            "llm_output": {
                "token_usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": total,
                },
                "model_name": "gpt-4o-mini-2024-07-18",
                "system_fingerprint": "fp_0ba0d124f1",
                "id": f"chatcmpl-{rng.getrandbits(48):012x}",
            },
            "run": None,
            "type": "LLMResult",
        },
        "extra": {
            "metadata": {**metadata, "usage_metadata": usage},
            "invocation_params": invocation,
            "options": {"stop": None},
            "batch_size": 1,
        },
        "events": [{"name": "start", "time": start.isoformat()}, {"name": "end", "time": end.isoformat()}],
    }
    return post, patch


def sdk_runs(n: int, *, seed: int, project: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``n`` independent LLM runs (each the root of its own trace), starting now, 1 ms apart."""
    rng = random.Random(seed)
    t0 = datetime.now(UTC)
    return [llm_run(rng, t0 + timedelta(milliseconds=i), project=project) for i in range(n)]


def _as_wire(fields: dict[str, Any]) -> dict[str, Any]:
    """kwargs of create_run/update_run → the run object the SDK would send (ISO times, str ids)."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "run_id":
            key = "id"
        if key == "project_name":
            key = "session_name"
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        if value is not None:
            out[key] = value
    return out


def store_traces(n_runs: int, *, seed: int, project: str) -> tuple[list[dict], list[dict], list[dict]]:
    """Wire-shaped (posts, patches, feedback) for about ``n_runs`` runs in traces of 5: a ``chain`` root
    (agent), two ``llm`` runs, a ``tool`` run and a ``parser`` run. 40% of runs are LLM runs, whose
    total_tokens spread over 45-520; a fifth of the roots carry a ``correctness`` feedback score (0 or 1).
    Traces start 1 s apart, ending now."""
    rng = random.Random(seed)
    n_traces = max(1, n_runs // 5)
    now = datetime.now(UTC)
    posts: list[dict] = []
    patches: list[dict] = []
    feedback: list[dict] = []
    for t in range(n_traces):
        start = now - timedelta(seconds=n_traces - t)
        root_id = uuid7ish(rng, start)
        root_order = dotted(start, root_id)
        question = f"What is the weather in {rng.choice(CITIES)}?"
        root = {
            "id": str(root_id),
            "trace_id": str(root_id),
            "dotted_order": root_order,
            "name": "WeatherAgent",
            "run_type": "chain",
            "start_time": start.isoformat(),
            "end_time": (start + timedelta(seconds=3)).isoformat(),
            "session_name": project,
            "inputs": {"question": question},
            "outputs": {"answer": "It is 18 °C and dry; no umbrella needed."},
            "extra": {"metadata": {"user_id": f"user-{rng.randint(1, 500)}", "env": rng.choice(["prod", "dev"])}},
            "tags": ["bench", "agent"],
        }
        posts.append(root)
        for k, kind in enumerate(("llm", "tool", "llm", "parser")):
            child_start = start + timedelta(milliseconds=100 + 500 * k)
            if kind == "llm":
                post, patch = llm_run(rng, child_start, project=project, trace_id=root_id, parent=(root_id, root_order))
                posts.append(_as_wire(post))
                patches.append(_as_wire(patch))
                continue
            cid = uuid7ish(rng, child_start)
            posts.append(
                {
                    "id": str(cid),
                    "trace_id": str(root_id),
                    "parent_run_id": str(root_id),
                    "dotted_order": f"{root_order}.{dotted(child_start, cid)}",
                    "name": "get_weather" if kind == "tool" else "StrOutputParser",
                    "run_type": kind,
                    "start_time": child_start.isoformat(),
                    "end_time": (child_start + timedelta(milliseconds=50)).isoformat(),
                    "session_name": project,
                    "inputs": {"input": "{'city': 'Paris', 'unit': 'celsius'}"},
                    "outputs": {"output": "18 °C, dry"},
                    "extra": {"metadata": {"env": "prod"}},
                    "tags": ["bench", f"seq:step:{k + 2}"],
                }
            )
        if rng.random() < 0.2:
            feedback.append(
                {
                    "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "run_id": str(root_id),
                    "trace_id": str(root_id),
                    "key": "correctness",
                    "score": float(rng.random() < 0.5),
                    "created_at": start.isoformat(),
                    "modified_at": start.isoformat(),
                    "feedback_source": {"type": "api", "metadata": {}},
                }
            )
    return posts, patches, feedback
