"""``merge_trajectories``: the LLM calls of a captured tool loop fold into one session; unrelated calls do not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from langsmith.schemas import Run

from tests.convert import captured, flat, run
from tracetune.chat.types import ChatSession
from tracetune.convert.sessions import session_from_run
from tracetune.convert.trajectories import merge_trajectories, run_position, trajectories_from_runs

ARGS = '{"location": "Paris", "unit": "celsius"}'
CALL = {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": ARGS}}


def sessions(*where: tuple[str, str]) -> list[ChatSession]:
    out = []
    for name, label in where:
        s = session_from_run(run(name, label))
        assert "messages" in s, s
        out.append(s)  # type: ignore[arg-type]
    return out


def tool_call_ids(session: ChatSession) -> tuple[list[str], list[str]]:
    """(ids of the calls the assistant made, ids the tool messages answer), in order."""
    made = [c["id"] for m in session["messages"] for c in m.get("tool_calls", [])]
    answered = [m["tool_call_id"] for m in session["messages"] if m["role"] == "tool"]
    return made, answered


def test_captured_agent_trace_is_one_session() -> None:
    """capture_extra.py: a tool loop inside one trace (two ChatOpenAI calls under the agent's chain run)."""
    runs = captured("extra")
    merged, skips = trajectories_from_runs([runs["agent_chain"], runs["agent_2"], runs["agent_1"]])
    assert [s["reason"] for s in skips] == ["not_llm"]
    assert len(merged) == 1
    (session,) = merged
    assert session["messages"] == [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_abc123"},
        {"role": "assistant", "content": "It is 18 degrees in Paris."},
    ]
    assert tool_call_ids(session) == (["call_abc123"], ["call_abc123"])
    assert [t["function"]["name"] for t in session["tools"]] == ["get_weather"]
    assert session["source"] == {
        "run_ids": ["01a1fd96-7e33-764b-a69e-c1564d445979", "01a1fd96-7e83-7704-9b4b-1a181529bb3b"],
        "trace_id": "01a1fd96-7e25-746b-935d-be500d22a64f",
        "thread_id": "thread-42",
        "project_id": None,
    }


def test_captured_wrap_openai_loop_is_one_session() -> None:
    """capture_extra.py: wrap_openai calls in one @traceable trace, the answer re-sent as ``model_dump()``."""
    runs = captured("extra")
    merged, _ = trajectories_from_runs([flat(runs["wrap_agent_1"]), flat(runs["wrap_agent_2"])])
    assert len(merged) == 1
    assert merged[0]["source"]["run_ids"] == [runs["wrap_agent_1"]["id"], runs["wrap_agent_2"]["id"]]
    assert tool_call_ids(merged[0]) == (["call_abc123"], ["call_abc123"])
    assert merged[0]["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("loop", "key"),
    [(("tools_1", "tools_2"), "tools"), (("functions_1", "functions_2"), "functions")],
    ids=["tools", "functions"],
)
def test_captured_ls_agent_loop(loop: tuple[str, str], key: str) -> None:
    """ls-agent.jsonl: each llm.invoke of the loop was its own root trace, so they merge by project, not by trace."""
    first, second = sessions(*(("ls_agent", label) for label in loop))
    positions = {
        s["source"]["run_ids"][0]: run_position(run("ls_agent", label))
        for s, label in zip((first, second), loop, strict=True)
    }

    by_trace = merge_trajectories([second, first], positions=positions)
    assert [s["source"]["run_ids"] for s in by_trace] == [second["source"]["run_ids"], first["source"]["run_ids"]]

    (merged,) = merge_trajectories([second, first], positions=positions, scope="project")
    assert merged["messages"] == second["messages"]
    assert merged["source"]["run_ids"] == first["source"]["run_ids"] + second["source"]["run_ids"]
    assert merged[key] == second[key]  # type: ignore[literal-required]
    if key == "tools":
        assert tool_call_ids(merged) == (["call_abc123"], ["call_abc123"])
    else:
        assert [m["role"] for m in merged["messages"]] == ["user", "assistant", "function", "assistant"]


def _session(run_id: str, messages: list[dict[str, Any]], tools: list[str] = (), trace: str = "t") -> ChatSession:  # type: ignore[assignment]
    s: ChatSession = {
        "messages": messages,
        "source": {"run_ids": [run_id], "trace_id": trace, "thread_id": None, "project_id": "p"},
    }  # type: ignore[typeddict-item]
    if tools:
        s["tools"] = [{"type": "function", "function": {"name": n}} for n in tools]
    return s


U1 = {"role": "user", "content": "one"}
A1 = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}],
}
T1 = {"role": "tool", "content": "r1", "tool_call_id": "c1"}
A2 = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}}],
}
T2 = {"role": "tool", "content": "r2", "tool_call_id": "c2"}
A3 = {"role": "assistant", "content": "done"}


def test_three_call_loop_unions_tools_in_run_order() -> None:
    calls = [
        _session("r3", [U1, A1, T1, A2, T2, A3], ["a"]),
        _session("r1", [U1, A1], ["a"]),
        _session("r2", [U1, A1, T1, A2], ["a", "b"]),
    ]
    (merged,) = merge_trajectories(calls, positions={"r1": "1", "r2": "2", "r3": "3"})
    assert merged["messages"] == [U1, A1, T1, A2, T2, A3]
    assert merged["source"]["run_ids"] == ["r1", "r2", "r3"]
    assert [t["function"]["name"] for t in merged["tools"]] == ["a", "b"]


def test_calls_that_do_not_extend_stay_separate() -> None:
    other = {"role": "user", "content": "two"}
    calls = [
        _session("r1", [U1, A1]),
        _session("r2", [other, A3]),  # another conversation in the same trace
        _session("r3", [U1, {"role": "assistant", "content": "different"}, T1, A3]),  # history was rewritten
        _session("r4", [U1, A1]),  # the same call again: equal, not an extension
        _session("r5", [U1, A1, T1, A3], trace="other"),  # extends r1, but in another trace
    ]
    merged = merge_trajectories(calls)
    assert [s["source"]["run_ids"] for s in merged] == [["r1"], ["r2"], ["r3"], ["r4"], ["r5"]]
    assert [s["source"]["run_ids"] for s in merge_trajectories(calls, scope="project")] == [
        ["r1", "r5"],
        ["r2"],
        ["r3"],
        ["r4"],
    ]


def test_thread_scope_merges_turns_of_a_conversation() -> None:
    turn1 = _session("r1", [U1, A3], trace="t1")
    turn2 = _session("r2", [U1, A3, {"role": "user", "content": "more"}, A3], trace="t2")
    for s in (turn1, turn2):
        s["source"]["thread_id"] = "th"
    (merged,) = merge_trajectories([turn1, turn2], scope="thread")
    assert merged["source"]["run_ids"] == ["r1", "r2"]
    assert len(merge_trajectories([turn1, turn2])) == 2


def test_run_position() -> None:
    r = run("extra", "agent_1")
    assert run_position(r) == r["dotted_order"]
    assert run_position(Run(**flat(r))) == r["dotted_order"]
    assert run_position({"start_time": "2026-11-21T10:11:00.787234+00:00"}) == "2026-11-21T10:11:00.787234+00:00"
    assert run_position({"start_time": datetime(2026, 11, 21, tzinfo=UTC)}) == "2026-11-21T00:00:00+00:00"
    assert run_position({}) is None


def test_unknown_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="scope"):
        merge_trajectories(sessions(("ls_zstd", "plain")), scope="tenant")  # type: ignore[arg-type]
