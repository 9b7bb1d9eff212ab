"""``tracetune.convert.tool_recovery``: records whose converter dropped the tools get them back from the stored runs
(captured LangChain runs, stored through the real ingest path, on SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

from tests.convert import captured
from tests.dataset_support import ingest, reid
from tracetune.chat.diagnose import undeclared_calls
from tracetune.convert.tool_recovery import recover_tools


def call(name: str, *, legacy: bool = False) -> dict:
    arguments = '{"location": "Paris"}'
    if legacy:
        return {"role": "assistant", "content": None, "function_call": {"name": name, "arguments": arguments}}
    tool_call = {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [tool_call]}


def test_declarations_come_from_the_run_with_the_same_prompt_else_the_newest_offering_the_tool(store):
    runs = captured("ls_agent")
    tools_run, functions_run = reid([runs["tools_1"]])[0], reid([runs["functions_2"]])[0]  # functions_2 is newer
    workspace = store.workspaces.ensure("default").id
    ingest(store, workspace, [tools_run, functions_run], "agent")
    declared = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    records = [
        {"messages": [{"role": "user", "content": "Weather in Paris?"}, call("get_weather")]},  # tools_1's prompt
        {"messages": [{"role": "user", "content": "Weather in Lima?"}, call("get_weather", legacy=True)]},
        {"messages": [{"role": "user", "content": "Fly me to Rome"}, call("book_flight")]},  # offered by no run
        {"messages": [{"role": "user", "content": "Weather in Oslo?"}, call("get_weather")], "tools": [declared]},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    ]
    assert [undeclared_calls(r) for r in records] == [["get_weather"], ["get_weather"], ["book_flight"], [], []]

    recovery = recover_tools(store, workspace, records)
    first, second, third, fourth, fifth = recovery.records
    assert first["tools"] == tools_run["extra"]["invocation_params"]["tools"] and "functions" not in first
    assert second["functions"] == functions_run["extra"]["invocation_params"]["functions"] and "tools" not in second
    assert first["messages"] == records[0]["messages"] and second["messages"] == records[1]["messages"]
    assert third is records[2] and fourth is records[3] and fifth is records[4]  # left as they were
    assert (recovery.by_prompt, recovery.by_name, recovery.missing) == (1, 1, {"book_flight": 1})
    assert recovery.run_ids == sorted([tools_run["id"], functions_run["id"]])
    summary = recovery.summary()
    assert "2 records called tools without declaring them" in summary and "1 by their prompt, 1 by the" in summary
    assert "1 records call book_flight without declaring it and no stored run offered it" in summary

    other = recover_tools(store, uuid.uuid4(), records)  # another workspace's runs are not looked at
    assert (other.recovered, other.missing) == (0, {"get_weather": 2, "book_flight": 1})
