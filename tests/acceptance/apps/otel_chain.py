"""A LangChain tool-calling chain traced by the langsmith SDK in OpenTelemetry mode (``LANGSMITH_TRACING_MODE=otel``,
or the legacy ``LANGSMITH_OTEL_ENABLED`` / ``LANGSMITH_OTEL_ONLY``): the SDK turns its runs into spans and its
OTLP exporter sends them to ``{LANGSMITH_ENDPOINT}/otel/v1/traces``. The model is the OpenAI stand-in.

Run as ``python otel_chain.py``; configured by LANGSMITH_*/OPENAI_* variables. Prints the answer.
"""

from __future__ import annotations

import json

from langchain_core.output_parsers.openai_tools import PydanticToolsParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tracers.langchain import wait_for_all_tracers
from langchain_openai import ChatOpenAI
from langsmith.run_trees import get_cached_client
from opentelemetry import trace
from pydantic import BaseModel, Field


class GetWeather(BaseModel):
    """Get the current weather for a location."""

    location: str = Field(description="the city")
    unit: str = Field(description="temperature unit", json_schema_extra={"enum": ["celsius", "fahrenheit"]})


def main() -> dict[str, object]:
    llm = ChatOpenAI(model="gpt-4o-mini", temperature=0.2, max_retries=0)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful weather bot."), ("human", "What is the weather in {city}?")]
    )
    chain = prompt | llm.bind_tools([GetWeather], tool_choice="GetWeather") | PydanticToolsParser(tools=[GetWeather])
    answer = chain.invoke({"city": "Rome"}, config={"run_name": "otel-tools-chain", "tags": ["otel"]})
    wait_for_all_tracers()
    get_cached_client().flush()
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()
    return {"answer": [a.model_dump() for a in answer]}


if __name__ == "__main__":
    print(json.dumps(main()))
