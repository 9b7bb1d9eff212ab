"""A user's LangChain app, traced to LangSmith (here: tracetune) as configured by its environment.

Run as ``python traced_chains.py <client>``:

* ``env``     the tracer LangChain builds from the environment alone (LANGSMITH_* or LANGCHAIN_* names);
* ``batch``   a ``langsmith.Client(info=…)`` told ``use_multipart_endpoint: false`` → ``POST /runs/batch``;
* ``nobatch`` a ``langsmith.Client(auto_batch_tracing=False)`` → ``POST /runs`` + ``PATCH /runs/{id}``.

ChatOpenAI reads ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``. The app runs four chains (functions, tools, one that
raises, one streamed), puts ``user_score`` feedback on two roots, flushes, and prints one JSON object: the
root run ids, the chains' results and every HTTP request the LangSmith client made (observed through a
``requests`` response hook on its session; the client itself is not changed).
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from typing import Any
from urllib.parse import urlsplit

from langchain_core.output_parsers import StrOutputParser
from langchain_core.output_parsers.openai_functions import PydanticOutputFunctionsParser
from langchain_core.output_parsers.openai_tools import PydanticToolsParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.context import collect_runs, tracing_v2_enabled
from langchain_core.tracers.langchain import get_client, wait_for_all_tracers
from langchain_core.utils.function_calling import convert_to_openai_function
from langchain_openai import ChatOpenAI
from langsmith import Client
from pydantic import BaseModel, Field

# What a LangSmith server answers on /info when it wants JSON batches instead of multipart (all six keys).
BATCH_INFO = {
    "version": "0.10.100",
    "batch_ingest_config": {
        "use_multipart_endpoint": False,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 16,
        "scale_down_nempty_trigger": 4,
    },
}


class GetWeather(BaseModel):
    """Get the current weather for a location."""

    location: str = Field(description="the city")
    unit: str = Field(description="temperature unit", json_schema_extra={"enum": ["celsius", "fahrenheit"]})


def explode(_: str) -> str:
    raise ValueError("weather station offline")


# Invoked from inside ``report``: traced one level deeper, as a child of the ``report`` run.
format_report = RunnableLambda(lambda d: f"{d['location']} in {d['unit']}").with_config(run_name="format_report")


def report(weather: GetWeather) -> dict[str, str]:
    return {"report": format_report.invoke({"location": weather.location, "unit": weather.unit})}


def main(client_kind: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def record(response: Any, *args: Any, **kwargs: Any) -> None:
        request = response.request
        seen.append(
            {
                "method": request.method,
                "path": urlsplit(request.url).path,
                "status": response.status_code,
                "content_encoding": request.headers.get("Content-Encoding"),
            }
        )

    if client_kind == "env":
        client = get_client()  # the client LangChain's tracer uses when configured by the environment
        tracing: Any = nullcontext()
    elif client_kind == "batch":
        client = Client(info=BATCH_INFO)
        tracing = tracing_v2_enabled(client=client)
    elif client_kind == "nobatch":
        client = Client(auto_batch_tracing=False)
        tracing = tracing_v2_enabled(client=client)
    else:
        raise SystemExit(f"unknown client kind {client_kind!r}")
    client.session.hooks["response"].append(record)

    llm = ChatOpenAI(model="gpt-4o-mini", temperature=0.2, max_retries=0)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful weather bot."), ("human", "What is the weather in {city}?")]
    )
    functions_chain = (
        prompt
        | llm.bind(functions=[convert_to_openai_function(GetWeather)], function_call={"name": "GetWeather"})
        | PydanticOutputFunctionsParser(pydantic_schema=GetWeather)
        | RunnableLambda(lambda w: {"report": f"{w.location} in {w.unit}"})
    )
    tools_chain = (
        prompt
        | llm.bind_tools([GetWeather], tool_choice="GetWeather")
        | PydanticToolsParser(tools=[GetWeather], first_tool_only=True)
        | RunnableLambda(report)
    )
    error_chain = prompt | llm | StrOutputParser() | RunnableLambda(explode)
    stream_chain = prompt | llm | StrOutputParser()

    out: dict[str, Any] = {"roots": {}, "results": {}}
    with tracing:
        with collect_runs() as cb:
            out["results"]["functions"] = functions_chain.invoke(
                {"city": "Paris"},
                config={
                    "run_name": "functions-chain",
                    "tags": ["acceptance", "chain:functions"],
                    "metadata": {"variant": "functions", "user": "u1"},
                },
            )
            out["roots"]["functions"] = cb.traced_runs[-1]
        with collect_runs() as cb:
            out["results"]["tools"] = tools_chain.invoke(
                {"city": "Rome"},
                config={
                    "run_name": "tools-chain",
                    "tags": ["acceptance", "chain:tools"],
                    "metadata": {"variant": "tools"},
                },
            )
            out["roots"]["tools"] = cb.traced_runs[-1]
        with collect_runs() as cb:
            try:
                error_chain.invoke({"city": "Oslo"}, config={"run_name": "error-chain", "tags": ["acceptance"]})
            except ValueError as exc:
                out["results"]["error"] = repr(exc)
            out["roots"]["error"] = cb.traced_runs[-1]
        with collect_runs() as cb:
            out["results"]["stream"] = "".join(
                stream_chain.stream({"city": "Lima"}, config={"run_name": "stream-chain", "tags": ["acceptance"]})
            )
            out["roots"]["stream"] = cb.traced_runs[-1]
    roots = out["roots"]
    for name, score in (("functions", 1), ("tools", 0)):
        fb = client.create_feedback(roots[name].id, key="user_score", score=score, trace_id=roots[name].trace_id)
        out.setdefault("feedback", {})[name] = str(fb.id)
    wait_for_all_tracers()
    client.flush()
    out["roots"] = {name: str(run.id) for name, run in roots.items()}
    out["requests"] = seen
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "env"), default=str))
