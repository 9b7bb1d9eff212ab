"""Streamed text → OpenAI deltas: content, tool-call deltas, legacy function_call; same result as the non-streamed
parse whatever the split of the text into pieces."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tracetune.chat.format import parse_assistant, tool_call_to_block
from tracetune.serve.chat_stream import DeltaBuilder

BLOCK = tool_call_to_block("get_weather", {"location": "Paris", "unit": "celsius"})
BLOCK2 = tool_call_to_block("get_time", {"tz": "Europe/Paris", "nested": {"a": [1, "}"]}})


def split_randomly(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(text):
        step = rng.randint(1, 7)
        pieces.append(text[pos : pos + step])
        pos += step
    return pieces


def run(text: str, seed: int = 0, **options: Any) -> tuple[list[dict[str, Any]], DeltaBuilder]:
    builder = DeltaBuilder(**options)
    deltas = [d for piece in split_randomly(text, seed) for d in builder.feed(piece)]
    return deltas + builder.finish(), builder


def assemble(deltas: list[dict[str, Any]]) -> dict[str, Any]:
    """What a client makes of the deltas (as ChatOpenAI merges tool_call_chunks)."""
    content = "".join(d.get("content") or "" for d in deltas) or None
    calls: dict[int, dict[str, Any]] = {}
    function_call: dict[str, str] | None = None
    for d in deltas:
        for tc in d.get("tool_calls") or ():
            call = calls.setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
            call["id"] = tc.get("id") or call["id"]
            call["name"] += tc.get("function", {}).get("name") or ""
            call["arguments"] += tc.get("function", {}).get("arguments") or ""
        if "function_call" in d:
            function_call = function_call or {"name": "", "arguments": ""}
            function_call["name"] += d["function_call"].get("name") or ""
            function_call["arguments"] += d["function_call"].get("arguments") or ""
    return {"content": content, "calls": [calls[i] for i in sorted(calls)], "function_call": function_call}


TEXTS = [
    "Just text, no call.",
    BLOCK,
    f"Let me check.\n{BLOCK}",
    f"{BLOCK}\n{BLOCK2}",
    f"  a <tool_ b\n{BLOCK}\n\ntrailing  ",
    "<tool_call>not json</tool_call> after",
    f"unclosed {BLOCK[: -len('</tool_call>')]}",
]


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("text", TEXTS)
def test_streamed_deltas_give_the_non_streamed_message(text, seed, progressive):
    deltas, builder = run(text, seed, parse_calls=True, progressive=progressive)
    got = assemble(deltas)
    want = parse_assistant(text)
    if progressive and text.startswith("unclosed"):
        # cut off (finish_reason "length") after its arguments were streamed: the call was sent already
        want = parse_assistant(text + "</tool_call>")
    assert got["content"] == want["content"]
    assert [(c["name"], json.loads(c["arguments"])) for c in got["calls"]] == [
        (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in want["tool_calls"]
    ]
    assert all(c["id"].startswith("call_") and len(c["id"]) == 29 for c in got["calls"])
    assert builder.calls == len(want["tool_calls"])
    assert builder.finish_reason("stop") == ("tool_calls" if want["tool_calls"] else "stop")


def test_progressive_arguments_come_in_fragments_as_generated():
    builder = DeltaBuilder(parse_calls=True, progressive=True)
    deltas = []
    pieces = ["<tool_call>", '{"name": "get_weather", ', '"arguments": {"loc', 'ation": "Par', 'is"}}', "</tool_call>"]
    for piece in pieces:
        deltas.append(builder.feed(piece))
    assert deltas[0] == [] and deltas[1] == []
    header = deltas[2][0]["tool_calls"][0]
    assert header["index"] == 0 and header["type"] == "function" and header["function"]["name"] == "get_weather"
    assert header["function"]["arguments"] == ""
    fragments = [d["tool_calls"][0]["function"]["arguments"] for step in deltas[2:] for d in step][1:]
    assert fragments == ['{"loc', 'ation": "Par', 'is"}']  # the closing } of the block is not an argument
    assert "id" not in deltas[3][0]["tool_calls"][0]


def test_one_call_only_without_parallel_calls():
    deltas, builder = run(f"{BLOCK}\n{BLOCK2}", parse_calls=True, parallel=False)
    assert [c["name"] for c in assemble(deltas)["calls"]] == ["get_weather"] and builder.calls == 1


def test_legacy_functions_stream_a_function_call():
    deltas, builder = run(f"{BLOCK}\n{BLOCK2}", parse_calls=True, legacy=True)
    assert deltas[0] == {"function_call": {"name": "get_weather", "arguments": ""}}
    assert all(set(d) == {"function_call"} for d in deltas)
    call = assemble(deltas)["function_call"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"location": "Paris", "unit": "celsius"}
    assert builder.finish_reason("stop") == "function_call" and builder.finish_reason("length") == "length"


def test_without_tools_the_text_passes_unchanged():
    deltas, _ = run(f"  {BLOCK} ", parse_calls=False)
    assert "".join(d["content"] for d in deltas) == f"  {BLOCK} "
