"""Examples ↔ training records: exported records come back byte for byte; the shapes LangSmith's dataset helpers
write (chat, llm, a run's kv inputs/outputs) become OpenAI chat records; an example without a conversation is a
clear error naming it."""

from __future__ import annotations

import pytest

from tracetune.convert.examples import example_from_record, record_from_example
from tracetune.errors import InvalidInput

CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
RECORDS = [
    {
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "assistant", "content": "18C in Paris."},
        ],
        "tools": TOOLS,
        "parallel_tool_calls": False,
    },
    {"conversations": [{"from": "human", "value": "2+2"}, {"from": "gpt", "value": "4"}], "tools": "[]"},
]


@pytest.mark.parametrize("record", RECORDS, ids=["openai", "sharegpt"])
def test_an_exported_record_round_trips_through_its_example(record):
    inputs, outputs = example_from_record(record)
    assert outputs is not None and len(outputs) == 1
    turns = "messages" if "messages" in record else "conversations"
    assert inputs[turns] == record[turns][:-1] and inputs.get("tools") == record["tools"]
    assert record_from_example({"id": "e", "inputs": inputs, "outputs": outputs}) == record


def test_a_chat_dataset_example_keeps_its_tool_calls():
    example = {
        "id": "e1",
        "inputs": {"input": [{"type": "human", "data": {"content": "weather in Paris?"}}]},
        "outputs": {"output": {"role": "assistant", "content": None, "tool_calls": [CALL]}},
    }
    record = record_from_example(example)
    assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
    assert record["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_an_llm_dataset_example_is_a_prompt_and_its_answer():
    record = record_from_example({"id": "e2", "inputs": {"input": "2+2="}, "outputs": {"output": "4"}})
    assert record == {"messages": [{"role": "user", "content": "2+2="}, {"role": "assistant", "content": "4"}]}


def test_a_kv_example_holding_a_chat_runs_io_converts_like_the_run():
    lc_human = {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", "HumanMessage"],
        "kwargs": {"content": "hi"},
    }
    lc_ai = {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", "AIMessage"],
        "kwargs": {"content": "hello"},
    }
    example = {"id": "e3", "inputs": {"messages": [[lc_human]]}, "outputs": {"generations": [[{"message": lc_ai}]]}}
    assert record_from_example(example)["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]


def test_an_example_without_a_conversation_names_itself():
    with pytest.raises(InvalidInput, match="example e4 holds no conversation") as err:
        record_from_example({"id": "e4", "inputs": {"question": "?"}, "outputs": {"answer": "!"}})
    assert err.value.field == "examples"
