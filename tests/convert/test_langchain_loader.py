"""``TracetuneChatLoader`` against the official ``LangSmithRunChatLoader`` + ``convert_messages_for_finetuning``.

Runs are the store's flat answers from the captures (``ls_read_flat.json``: ``GET /runs/<id>``), as
``langsmith.schemas.Run`` objects: the input the official loader needs (wire-protocols §3.4, §4).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langsmith.schemas import Run

from tests.convert import captured, flat, run

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # langchain-community announces its sunset on import
    from langchain_community.adapters.openai import convert_messages_for_finetuning
    from langchain_community.chat_loaders.langsmith import LangSmithRunChatLoader

from tracetune.convert.langchain_loader import TracetuneChatLoader, to_langchain_session

ARGS = '{"location": "Paris", "unit": "celsius"}'
CALL = {"id": "call_abc123", "type": "function", "function": {"name": "get_weather", "arguments": ARGS}}


def official(runs: list[Run]) -> tuple[list[Any], list[list[dict[str, Any]]]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # load() warns about allowed_objects
        sessions = list(LangSmithRunChatLoader(runs, client=object()).lazy_load())  # type: ignore[arg-type]
    return sessions, convert_messages_for_finetuning(sessions)


def ours(runs: list[Any], **kwargs: Any) -> tuple[list[Any], list[list[dict[str, Any]]]]:
    sessions = list(TracetuneChatLoader(runs, **kwargs).lazy_load())
    return sessions, convert_messages_for_finetuning(sessions)


@pytest.mark.parametrize("label", ["plain", "functions", "stream"])
def test_same_as_official_where_official_is_right(label: str) -> None:
    runs = [Run(**run("ls_read_flat", label))]
    official_sessions, official_records = official(runs)
    our_sessions, our_records = ours(runs)
    assert our_records == official_records
    assert our_sessions[0].get("functions") == official_sessions[0].get("functions")


def test_functions_run_matches_official_exactly() -> None:
    runs = [Run(**run("ls_read_flat", "functions"))]
    _, records = ours(runs)
    assert records == [
        [
            {"role": "system", "content": "You are a helpful weather bot."},
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": ARGS}},
        ]
    ]
    assert records == official(runs)[1]


def test_tools_run_keeps_the_calls_the_official_loader_loses() -> None:
    runs = [Run(**run("ls_read_flat", "tools"))]
    official_sessions, official_records = official(runs)
    assert official_records[0][-1] == {"role": "assistant", "content": ""}  # §1.5: the call is gone
    assert "tools" not in official_sessions[0]

    our_sessions, our_records = ours(runs)
    assert our_records[0][-1] == {"role": "assistant", "content": None, "tool_calls": [CALL]}
    assert our_records[0][:-1] == official_records[0][:-1]
    answer = our_sessions[0]["messages"][-1]
    assert isinstance(answer, AIMessage)
    assert answer.tool_calls == [
        {
            "name": "get_weather",
            "args": {"location": "Paris", "unit": "celsius"},
            "id": "call_abc123",
            "type": "tool_call",
        }
    ]
    assert our_sessions[0]["tools"] == runs[0].extra["invocation_params"]["tools"]  # type: ignore[index]


def test_agent_loop_tool_call_ids_match() -> None:
    runs = [Run(**flat(run("ls_agent", "tools_2")))]
    official_records = official(runs)[1]
    our_sessions, our_records = ours(runs)
    assert official_records[0][1] == {"role": "assistant", "content": ""}  # the tool message answers nothing
    assert our_records[0][1] == {"role": "assistant", "content": None, "tool_calls": [CALL]}
    assert our_records[0][2] == {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_abc123"}
    assert isinstance(our_sessions[0]["messages"][2], ToolMessage)


def test_takes_what_the_official_loader_crashes_or_skips_on() -> None:
    """Nested runs (official: TypeError), wrap_openai runs (KeyError), completion runs (skipped), dicts."""
    runs = [run("ls_zstd", "tools"), run("ls_wrap", "raw_tools"), run("extra", "completion"), run("extra", "llm_error")]
    loader = TracetuneChatLoader(runs)
    records = convert_messages_for_finetuning(list(loader.lazy_load()))
    assert [r[-1] for r in records] == [
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "assistant", "content": "Paris: 18C and sunny."},
    ]
    assert [(s["reason"], s["run_id"]) for s in loader.skipped] == [("error", runs[3]["id"])]


def test_merge_folds_the_agent_loop() -> None:
    runs = captured("extra")
    (session,) = TracetuneChatLoader([runs["agent_1"], runs["agent_2"]], merge=True).load()
    assert [type(m).__name__ for m in session["messages"]] == [
        "SystemMessage",
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert session["tools"][0]["function"]["name"] == "get_weather"


def test_from_a_client_and_project_name() -> None:
    class Client:
        def __init__(self) -> None:
            self.calls: list[tuple[str, Any]] = []

        def list_runs(self, **kwargs: Any) -> Any:
            self.calls.append(("list_runs", kwargs))
            return iter([Run(**r) for r in captured("ls_read_flat").values()])

        def read_run(self, run_id: str) -> Any:
            self.calls.append(("read_run", run_id))
            return Run(**run("ls_read_flat", "tools"))

    client = Client()
    assert len(TracetuneChatLoader(client=client, project_name="tracetune-read").load()) == 4
    assert client.calls == [("list_runs", {"project_name": "tracetune-read", "run_type": "llm"})]
    (session,) = TracetuneChatLoader(["01a1fd4f-d5ea-76d6-94fc-734f222eb730"], client=client).load()
    assert session["tools"][0]["function"]["name"] == "get_weather"
    assert client.calls[-1] == ("read_run", "01a1fd4f-d5ea-76d6-94fc-734f222eb730")
    with pytest.raises(ValueError, match="project_name"):
        TracetuneChatLoader(client=client)


def test_session_roundtrip_keeps_names_and_developer_role() -> None:
    session = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "hi", "name": "alice"},
            {"role": "assistant", "content": "hello", "name": "bot"},
        ],
        "source": {"run_ids": ["r"], "trace_id": None},
    }
    assert convert_messages_for_finetuning([to_langchain_session(session)]) == [session["messages"]]  # type: ignore[arg-type]


def test_module_imports_without_langchain_core() -> None:
    code = (
        "import sys\n"
        "sys.modules['langchain_core'] = None\n"  # any import of it now raises ImportError
        "import tracetune.convert.langchain_loader as m\n"
        "import tracetune.convert.sessions, tracetune.convert.trajectories\n"
        "try:\n"
        "    m.TracetuneChatLoader\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ImportError: TracetuneChatLoader needs langchain-core: pip install langchain-core"
