"""Expectations shared by the acceptance modules: the run trees the traced apps produce."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC
from typing import Any

# Every run of each chain of apps/traced_chains.py, as (name, run_type): the exact multiset per trace.
EXPECTED_TREES: dict[str, list[tuple[str, str]]] = {
    "functions": [
        ("functions-chain", "chain"),
        ("ChatPromptTemplate", "prompt"),
        ("ChatOpenAI", "llm"),
        ("PydanticOutputFunctionsParser", "parser"),
        ("RunnableLambda", "chain"),
    ],
    "tools": [
        ("tools-chain", "chain"),
        ("ChatPromptTemplate", "prompt"),
        ("ChatOpenAI", "llm"),
        ("PydanticToolsParser", "parser"),
        ("report", "chain"),
        ("format_report", "chain"),  # a child of "report"
    ],
    "error": [
        ("error-chain", "chain"),
        ("ChatPromptTemplate", "prompt"),
        ("ChatOpenAI", "llm"),
        ("StrOutputParser", "parser"),
        ("explode", "chain"),
    ],
    "stream": [
        ("stream-chain", "chain"),
        ("ChatPromptTemplate", "prompt"),
        ("ChatOpenAI", "llm"),
        ("StrOutputParser", "parser"),
    ],
}
CITIES = {"functions": "Paris", "tools": "Rome", "error": "Oslo", "stream": "Lima"}
SYSTEM_PROMPT = "You are a helpful weather bot."


def by_trace(runs: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        out[str(run.trace_id)].append(run)
    return out


def trace_of(runs: list[Any], root_id: str) -> list[Any]:
    return by_trace(runs)[root_id]


def named(trace: list[Any], name: str) -> Any:
    found = [r for r in trace if r.name == name]
    assert len(found) == 1, f"expected one {name!r} run, found {[r.name for r in trace]}"
    return found[0]


def stamp(run: Any) -> str:
    """The dotted-order segment stamp of a run: its start time (UTC) as ``YYYYMMDDTHHMMSSffffffZ``."""
    start = run.start_time
    if start.tzinfo is not None:
        start = start.astimezone(UTC).replace(tzinfo=None)
    return start.strftime("%Y%m%dT%H%M%S%fZ")


def lc_kwargs(message: dict[str, Any]) -> dict[str, Any]:
    """The fields of an lc-serialized message (``{"lc": 1, "type": "constructor", "kwargs": …}``)."""
    assert message.get("lc") == 1 and message.get("type") == "constructor", message
    return message["kwargs"]


def only_generation_message(llm_run: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(generation, message kwargs) of a single-generation LLM run, as returned (flat) by the server."""
    generations = llm_run.outputs["generations"]
    assert isinstance(generations, list) and len(generations) == 1, generations
    generation = generations[0]
    return generation, lc_kwargs(generation["message"])


# Warnings the official clients print about their own deprecations (list_runs/read_run, feedback without
# session_id, lc `load` without allowed_objects); not about tracetune.
KNOWN_CLIENT_WARNINGS = (
    "ignore::langsmith._internal._beta_decorator.LangSmithDeprecationWarning",
    "ignore::langsmith.utils.LangSmithWarning",
    "ignore::langchain_core._api.deprecation.LangChainPendingDeprecationWarning",
    "ignore:`langchain-community` is being sunset:DeprecationWarning",
)
