"""tracetune.chat.format: rendering, parsing back, and agreement with SmolLM2's own template and tokenizer."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from tests.models import shared_smollm2_tokenizer
from tracetune.chat.format import (
    CHATML,
    IM_END,
    IM_START,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    ChatTemplate,
    Segment,
    count_tokens,
    encode_segments,
    get_template,
    parse_assistant,
    render,
    render_prompt,
    split_turns,
    tool_call_to_block,
)
from tracetune.errors import InvalidInput
from tracetune.models import ModelTokenizer

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def call(name: str, arguments: Any, call_id: str = "call_x") -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def fn_tool(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": list(properties)}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


TOOLS = [
    fn_tool(
        "get_weather",
        "Current weather of a city",
        {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    ),
    fn_tool("get_time", "Local time in a city", {"city": {"type": "string"}}),
]
TOOL_LOOP = [
    {"role": "system", "content": "You are a travel assistant."},
    {"role": "user", "content": "What's the weather and the local time in Paris?"},
    {
        "role": "assistant",
        "content": "Let me check both.",
        "tool_calls": [
            call("get_weather", '{"city":"Paris","unit":"celsius"}', "call_1"),
            call("get_time", '{"city":"Paris"}', "call_2"),
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18, "sky": "cloudy"}'},
    {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
    {"role": "assistant", "content": "It is 18 °C and cloudy in Paris; the local time is 14:05."},
    {"role": "user", "content": "And in Tokyo?"},
]
TOOL_LOOP_PROMPT = """<|im_start|>system
You are a travel assistant.

# Tools
You may call one or more of these tools (one JSON schema per line):
{"name": "get_weather", "description": "Current weather of a city", "parameters": {"type": "object", \
"properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, \
"required": ["city", "unit"]}}
{"name": "get_time", "description": "Local time in a city", "parameters": {"type": "object", \
"properties": {"city": {"type": "string"}}, "required": ["city"]}}
To call a tool, write one block per call:
<tool_call>{"name": "<tool name>", "arguments": {<arguments as JSON>}}</tool_call>
The results come back in "tool" turns, in the order of the calls.<|im_end|>
<|im_start|>user
What's the weather and the local time in Paris?<|im_end|>
<|im_start|>assistant
Let me check both.
<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}</tool_call>
<tool_call>{"name": "get_time", "arguments": {"city": "Paris"}}</tool_call><|im_end|>
<|im_start|>tool
{"temp": 18, "sky": "cloudy"}<|im_end|>
<|im_start|>tool
14:05<|im_end|>
<|im_start|>assistant
It is 18 °C and cloudy in Paris; the local time is 14:05.<|im_end|>
<|im_start|>user
And in Tokyo?<|im_end|>
<|im_start|>assistant
"""


def text_of(segments: list[Segment]) -> str:
    return "".join(s.text for s in segments)


def trainable_texts(segments: list[Segment]) -> list[str]:
    return [s.text for s in segments if s.trainable]


# -- rendering -------------------------------------------------------------------------------------------------


def test_tool_loop_renders_to_the_documented_prompt():
    assert render_prompt(TOOL_LOOP, tools=TOOLS) == TOOL_LOOP_PROMPT


def test_tool_loop_segments_mark_exactly_the_assistant_turns_trainable():
    segments = render(TOOL_LOOP, tools=TOOLS)
    assert text_of(segments) + "<|im_start|>assistant\n" == TOOL_LOOP_PROMPT
    assert trainable_texts(segments) == [
        'Let me check both.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
        '</tool_call>\n<tool_call>{"name": "get_time", "arguments": {"city": "Paris"}}</tool_call><|im_end|>',
        "It is 18 °C and cloudy in Paris; the local time is 14:05.<|im_end|>",
    ]
    assert all(a.trainable != b.trainable for a, b in itertools.pairwise(segments))  # merged runs
    assert "call_1" not in text_of(segments)  # ids are not rendered


def test_plain_conversation_uses_the_default_system_prompt():
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert render_prompt(messages, add_generation_prompt=False) == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
    )
    assert render(messages) == [
        Segment(
            f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            False,
        ),
        Segment("Hello!<|im_end|>", True),
        Segment("\n", False),
    ]


def test_generation_prompt_and_empty_conversation():
    assert render_prompt([{"role": "system", "content": "S"}]) == "<|im_start|>system\nS<|im_end|>\n" + (
        "<|im_start|>assistant\n"
    )
    assert render([]) == []
    assert render_prompt([]) == "<|im_start|>assistant\n"


def test_tools_without_system_message_make_the_system_turn_alone():
    prompt = render_prompt([{"role": "user", "content": "time?"}], tools=TOOLS[1:])
    turns = split_turns(prompt)
    assert turns[0][0] == "system"
    assert turns[0][1].startswith("# Tools\n")
    assert DEFAULT_SYSTEM not in prompt
    assert '{"name": "get_time", "description": "Local time in a city", "parameters": ' in turns[0][1]


def test_legacy_functions_and_bare_function_tools_render_like_tools():
    function = TOOLS[1]["function"]
    messages = [{"role": "user", "content": "time?"}]
    expected = render_prompt(messages, tools=TOOLS[1:])
    assert render_prompt(messages, functions=[function]) == expected
    assert render_prompt(messages, tools=[function]) == expected
    reordered = {
        "parameters": function["parameters"],
        "strict": True,
        "name": "get_time",
        "description": "Local time in a city",
    }
    assert render_prompt(messages, functions=[reordered]) == expected  # fixed key order; `strict` dropped


def test_developer_is_system_and_function_messages_are_tool_turns():
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": None, "function_call": {"name": "get_time", "arguments": '{"city": "Oslo"}'}},
        {"role": "function", "name": "get_time", "content": "09:00"},
    ]
    assert split_turns(render_prompt(messages)) == [
        ("system", "Be brief."),
        ("user", "time?"),
        ("assistant", '<tool_call>{"name": "get_time", "arguments": {"city": "Oslo"}}</tool_call>'),
        ("tool", "09:00"),
        ("assistant", ""),
    ]


def test_tool_results_are_recoverable_from_the_prompt():
    turns = split_turns(render_prompt(TOOL_LOOP, tools=TOOLS, add_generation_prompt=False))
    results = [body for role, body in turns if role == "tool"]
    assert results == [m["content"] for m in TOOL_LOOP if m["role"] == "tool"]
    assert [role for role, _ in turns] == ["system", "user", "assistant", "tool", "tool", "assistant", "user"]


def test_content_parts_are_joined_and_non_text_parts_rejected():
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    assert split_turns(render_prompt([{"role": "user", "content": parts}]))[1] == ("user", "first\nsecond")
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(InvalidInput) as err:
        render([{"role": "user", "content": "x"}, {"role": "user", "content": [parts[0], image]}])
    assert err.value.field == "messages[1].content[1]"
    assert "image_url" in err.value.message


def test_weight_zero_assistant_turn_is_not_trainable():
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "bad answer", "weight": 0},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "good answer", "weight": 1},
    ]
    assert trainable_texts(render(messages)) == ["good answer<|im_end|>"]
    assert not any(s.trainable for s in render(messages[:2]))


@pytest.mark.parametrize(
    ("messages", "kwargs", "field"),
    [
        ([{"role": "narrator", "content": "x"}], {}, "messages[0].role"),
        ([{"content": "x"}], {}, "messages[0].role"),
        (["hello"], {}, "messages[0]"),
        ([{"role": "user", "content": 3}], {}, "messages[0].content"),
        ([{"role": "assistant", "content": "x", "weight": 2}], {}, "messages[0].weight"),
        (
            [{"role": "assistant", "tool_calls": [call("f", '{"a": ')]}],
            {},
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            [{"role": "assistant", "tool_calls": [call("f", "[1, 2]")]}],
            {},
            "messages[0].tool_calls[0].function.arguments",
        ),
        ([{"role": "assistant", "tool_calls": [call("", "{}")]}], {}, "messages[0].tool_calls[0].function.name"),
        (
            [{"role": "assistant", "tool_calls": [{"type": "custom", "custom": {}}]}],
            {},
            "messages[0].tool_calls[0].type",
        ),
        ([{"role": "assistant", "function_call": {"arguments": "{}"}}], {}, "messages[0].function_call.name"),
        ([], {"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ([], {"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].name"),
        ([], {"functions": ["get_time"]}, "functions[0].name"),
        ([], {"template": "llama3"}, "chat_template"),
    ],
)
def test_bad_input_names_the_field(messages, kwargs, field):
    with pytest.raises(InvalidInput) as err:
        render(messages, **kwargs)
    assert err.value.field == field


def test_missing_or_empty_arguments_render_as_empty_object():
    messages = [
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "ping"}}]},
        {"role": "assistant", "function_call": {"name": "ping", "arguments": ""}},
    ]
    assert trainable_texts(render(messages)) == [
        '<tool_call>{"name": "ping", "arguments": {}}</tool_call><|im_end|>',
        '<tool_call>{"name": "ping", "arguments": {}}</tool_call><|im_end|>',
    ]


def test_tool_call_block_is_canonical():
    block = '<tool_call>{"name": "f", "arguments": {"q": "café", "n": [1, 2]}}</tool_call>'
    assert tool_call_to_block("f", '{"q":"caf\\u00e9","n":[1,2]}') == block
    assert tool_call_to_block("f", {"q": "café", "n": [1, 2]}) == block
    assert block.startswith(TOOL_CALL_OPEN) and block.endswith(TOOL_CALL_CLOSE)
    with pytest.raises(InvalidInput):
        tool_call_to_block("f", "not json")


def test_template_is_data():
    assert get_template("chatml") is CHATML
    assert (CHATML.turn_start, CHATML.turn_end) == (IM_START, IM_END)
    other = ChatTemplate("plain", "[", "]: ", "</s>", "\n", default_system=None, tool_role="ipython")
    assert render_prompt([{"role": "user", "content": "hi"}, {"role": "tool", "content": "r"}], template=other) == (
        "[user]: hi</s>\n[ipython]: r</s>\n[assistant]: "
    )


# -- round trip: render an assistant turn, cut its text, parse it back ------------------------------------------

ASSISTANT_SHAPES = {
    "text": {"role": "assistant", "content": "Paris is the capital of France."},
    "one_call": {"role": "assistant", "content": None, "tool_calls": [call("get_time", {"city": "Paris"})]},
    "parallel_calls": {
        "role": "assistant",
        "tool_calls": [
            call("get_weather", {"city": "Paris", "unit": "celsius"}, "call_a"),
            call("get_weather", {"city": "Tōkyō", "unit": "celsius"}, "call_b"),
            call("get_time", {"city": "Paris"}, "call_c"),
        ],
    },
    "legacy_function_call": {
        "role": "assistant",
        "function_call": {"name": "get_time", "arguments": '{"city":"Rome"}'},
    },
    "text_and_call": {
        "role": "assistant",
        "content": "Let me look that up.\nOne moment.",
        "tool_calls": [call("search", {"query": 'a "quoted" </b> string', "filters": {"year": [2023, 2024]}})],
    },
    "nested_and_empty_arguments": {
        "role": "assistant",
        "content": "",
        "tool_calls": [call("noop", {}), call("deep", {"a": {"b": {"c": [None, True, 1.5, "\n"]}}})],
    },
}


def expected_calls(message: dict[str, Any]) -> list[tuple[str, Any]]:
    calls = [c["function"] for c in message.get("tool_calls") or []]
    if message.get("function_call"):
        calls.append(message["function_call"])
    return [(c["name"], json.loads(c["arguments"])) for c in calls]


@pytest.mark.parametrize("shape", list(ASSISTANT_SHAPES))
def test_round_trip_every_assistant_shape(shape):
    message = ASSISTANT_SHAPES[shape]
    segments = render([{"role": "user", "content": "q"}, message], tools=TOOLS)
    (assistant_text,) = trainable_texts(segments)  # the assistant's rendered text, cut from the prompt
    parsed = parse_assistant(assistant_text, id_seed="rt")
    assert parsed["errors"] == []
    assert parsed["content"] == (message.get("content") or None)
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed["tool_calls"]] == (
        expected_calls(message)
    )
    for c in parsed["tool_calls"]:
        assert c["type"] == "function" and c["id"].startswith("call_")
        compact = json.dumps(json.loads(c["function"]["arguments"]), ensure_ascii=False, separators=(",", ":"))
        assert c["function"]["arguments"] == compact  # compact JSON text, as OpenAI returns it
    # and rendering the parsed message gives the same text back
    again = render([{"role": "user", "content": "q"}, {"role": "assistant", **parsed}], tools=TOOLS)
    assert text_of(again) == text_of(segments)


# -- parsing model output --------------------------------------------------------------------------------------


def test_parse_tolerates_whitespace_lists_and_string_arguments():
    text = (
        'Checking.\n<tool_call>\n  {"name": "a", "arguments": {"x": 1}}\n</tool_call>\n\n'
        '<tool_call>[{"name": "b", "arguments": "{\\"y\\": 2}"}, {"name": "c"}]</tool_call>\n<|im_end|>'
    )
    parsed = parse_assistant(text, id_seed="s")
    assert parsed["content"] == "Checking."
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in parsed["tool_calls"]] == [
        ("a", '{"x":1}'),
        ("b", '{"y":2}'),
        ("c", "{}"),
    ]
    assert parsed["errors"] == []


def test_parse_keeps_bad_blocks_as_text_and_reports_them():
    text = 'Hi <tool_call>{"name": "a", "arguments": {</tool_call> then <tool_call>{"arguments": {}}</tool_call>'
    text += ' ok <tool_call>{"name": "good", "arguments": {"k": "v"}}</tool_call> tail <tool_call>{"name": "cut'
    parsed = parse_assistant(text)
    assert [c["function"]["name"] for c in parsed["tool_calls"]] == ["good"]
    assert parsed["content"] == (
        'Hi <tool_call>{"name": "a", "arguments": {</tool_call> then <tool_call>{"arguments": {}}</tool_call>'
        ' ok  tail <tool_call>{"name": "cut'
    )
    assert len(parsed["errors"]) == 3
    assert parsed["errors"][0].startswith("tool call block 1 at character 3: not valid JSON")
    assert "block 2" in parsed["errors"][1] and '"name"' in parsed["errors"][1]
    assert parsed["errors"][2].startswith("unclosed <tool_call>")


def test_parse_plain_text_and_empty():
    assert parse_assistant("  Just text.  ") == {"content": "Just text.", "tool_calls": [], "errors": []}
    assert parse_assistant("") == {"content": None, "tool_calls": [], "errors": []}


def test_call_ids_are_deterministic_with_a_seed_and_unique_without():
    text = tool_call_to_block("a", {}) + tool_call_to_block("b", {})
    first, second = parse_assistant(text, id_seed="req-1"), parse_assistant(text, id_seed="req-1")
    ids = [c["id"] for c in first["tool_calls"]]
    assert ids == [c["id"] for c in second["tool_calls"]]
    assert len(set(ids)) == 2 and all(len(i) == len("call_") + 24 for i in ids)
    assert ids != [c["id"] for c in parse_assistant(text, id_seed="req-2")["tool_calls"]]
    random_ids = [c["id"] for c in parse_assistant(text)["tool_calls"] + parse_assistant(text)["tool_calls"]]
    assert len(set(random_ids)) == 4


# -- with the real SmolLM2 tokenizer ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2_tokenizer(tmp_path_factory) -> ModelTokenizer:
    return shared_smollm2_tokenizer(tmp_path_factory)


PLAIN_CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?\n\nExplain."},
        {"role": "assistant", "content": "6, because 3+3=6."},
    ],
    [{"role": "system", "content": ""}, {"role": "user", "content": "ünïcödé 🚀 text"}],
]


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("messages", PLAIN_CONVERSATIONS)
def test_plain_conversation_matches_the_models_own_template(smollm2_tokenizer, messages, add_generation_prompt):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(smollm2_tokenizer.path))  # the template converted from the GGUF
    expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert render_prompt(messages, add_generation_prompt=add_generation_prompt) == expected


def test_encode_segments_tokenizes_the_whole_prompt_and_masks_assistant_tokens(smollm2_tokenizer):
    segments = render(TOOL_LOOP, tools=TOOLS)
    ids, mask = encode_segments(segments, smollm2_tokenizer)
    assert ids == smollm2_tokenizer.encode(text_of(segments))  # exactly what serving would feed
    trainable_ids = [i for i, m in zip(ids, mask, strict=True) if m]
    assert smollm2_tokenizer.decode(trainable_ids) == "".join(trainable_texts(segments))
    im_end = smollm2_tokenizer.token_id(IM_END)
    assert sum(1 for i, m in zip(ids, mask, strict=True) if m and i == im_end) == 2  # each assistant turn's end
    total, trainable = count_tokens(segments, smollm2_tokenizer)
    assert (total, trainable) == (len(ids), len(trainable_ids))
    # here every segment boundary is a token boundary, so segment-wise counting agrees
    assert total == sum(smollm2_tokenizer.count(s.text) for s in segments)
    assert trainable == sum(smollm2_tokenizer.count(s.text) for s in segments if s.trainable)


def test_token_spanning_a_boundary_goes_to_the_segment_it_starts_in(smollm2_tokenizer):
    # "assistant\n" + "\n\nHello": the header's newline merges with the content's first one into a "\n\n" token
    segments = render([{"role": "user", "content": "u"}, {"role": "assistant", "content": "\n\nHello"}])
    ids, mask = encode_segments(segments, smollm2_tokenizer)
    trainable = smollm2_tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert trainable == "\nHello<|im_end|>"
    assert count_tokens(segments, smollm2_tokenizer)[0] == len(smollm2_tokenizer.encode(text_of(segments)))
