"""LangChain's ChatOpenAI, unmodified, against tracetune on the real SmolLM2: the legacy functions chain with its
parser, bind_tools, with_structured_output (json_schema, strict) and streaming."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import BaseModel, Field

from tests.serve.support import smollm2_server, stop_shared


class GetWeather(BaseModel):
    """Get the current weather for a location"""

    location: str = Field(description="The city")


class Capital(BaseModel):
    """A country's capital"""

    city: str
    country: str


WEATHER = [("system", "You are a helpful weather bot."), ("human", "What is the weather in Paris?")]


@pytest.fixture(scope="session")
def chat_server_lc(tmp_path_factory) -> Iterator[object]:
    yield smollm2_server(tmp_path_factory)
    stop_shared()


@pytest.fixture(scope="module")
def llm(chat_server_lc):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model="gpt-4o-mini", base_url=f"{chat_server_lc.url}/v1", api_key="sk-local", temperature=0, max_tokens=60
    )


def test_functions_chain_with_pydantic_parser(llm):
    from langchain_core.output_parsers.openai_functions import PydanticOutputFunctionsParser
    from langchain_core.utils.function_calling import convert_to_openai_function

    chain = llm.bind(functions=[convert_to_openai_function(GetWeather)], function_call={"name": "GetWeather"})
    result = (chain | PydanticOutputFunctionsParser(pydantic_schema=GetWeather)).invoke(WEATHER)
    assert isinstance(result, GetWeather) and "paris" in result.location.lower()


def test_bind_tools_gives_tool_calls(llm):
    message = llm.bind_tools([GetWeather], tool_choice="GetWeather").invoke(WEATHER)
    (call,) = message.tool_calls
    assert call["name"] == "GetWeather" and "paris" in call["args"]["location"].lower()
    assert call["id"].startswith("call_") and not message.invalid_tool_calls


def test_with_structured_output(llm):
    result = llm.with_structured_output(Capital).invoke("Give the capital of France as JSON with city and country.")
    assert isinstance(result, Capital) and result.city == "Paris"


def test_stream(llm):
    chunks = list(llm.stream("What is the capital of France? Answer in one word."))
    assert len(chunks) > 2 and "Paris" in "".join(str(c.content) for c in chunks)
    assert chunks[-1].response_metadata.get("finish_reason") in ("stop", "length") or any(
        c.response_metadata.get("finish_reason") for c in chunks
    )
