"""Acceptance 3: LangChain's LangSmith chat loader and fine-tuning converter work on runs read from tracetune.

``LangSmithRunChatLoader`` revives ``inputs.messages`` and ``outputs.generations[0].message`` and only works
if LLM runs come back flat (wire-protocols §3.4); ``convert_messages_for_finetuning`` then makes OpenAI
training messages. Run for every transport mode, since each one stores the runs through a different path.
"""

from __future__ import annotations

import json

import pytest

from .conftest import MODES
from .helpers import KNOWN_CLIENT_WARNINGS, SYSTEM_PROMPT

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)


@pytest.mark.parametrize("mode", list(MODES))
def test_chat_loader_and_finetuning_conversion(traced, client, mode, caplog):
    from langchain_community.adapters.openai import convert_messages_for_finetuning
    from langchain_community.chat_loaders.langsmith import LangSmithRunChatLoader

    result = traced.result(mode)
    runs = list(client.list_runs(project_name=traced.project(mode), run_type="llm", error=False))
    assert len(runs) == 4
    with caplog.at_level("WARNING"):
        sessions = list(LangSmithRunChatLoader(runs=runs, client=client).lazy_load())
    assert not [r for r in caplog.records if "Could not load run" in r.getMessage()]  # nothing was skipped
    assert len(sessions) == 4
    with_functions = [s for s in sessions if "functions" in s]
    assert len(with_functions) == 1
    assert [f["name"] for f in with_functions[0]["functions"]] == ["GetWeather"]

    converted = convert_messages_for_finetuning(sessions)
    assert len(converted) == 4
    calls = [m for messages in converted for m in messages if m.get("function_call")]
    assert len(calls) == 1
    fn_messages = next(messages for messages in converted if calls[0] in messages)
    assert fn_messages[:2] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    assert fn_messages[2]["role"] == "assistant" and fn_messages[2]["content"] is None
    assert fn_messages[2]["function_call"]["name"] == "GetWeather"
    assert json.loads(fn_messages[2]["function_call"]["arguments"]) == {"location": "Paris", "unit": "celsius"}
    # The plain answers (stream and error chains) convert to their text.
    answers = sorted(m[-1]["content"] for m in converted if m[-1]["content"])
    assert answers == ["Echo: What is the weather in Lima?", "Echo: What is the weather in Oslo?"]

    # Given run ids instead of Run objects, the loader reads each run (GET /runs/{id}) itself.
    by_id = list(LangSmithRunChatLoader(runs=[str(r.id) for r in runs], client=client).lazy_load())
    assert convert_messages_for_finetuning(by_id) == converted
    assert result["roots"]  # the app finished
