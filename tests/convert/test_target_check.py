"""The target-model check (``tracetune.convert.target_check``) with the real SmolLM2 tokenizer."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.convert import captured
from tests.dataset_support import smollm2_target
from tracetune.chat.format import render
from tracetune.chat.validate import validate_lines
from tracetune.convert.export import TargetModel
from tracetune.convert.records import record_from_session
from tracetune.convert.sessions import session_from_run
from tracetune.convert.target_check import inspect_record, target_model_check
from tracetune.convert.token_count import TokenCounter

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> TargetModel:
    return smollm2_target(tmp_path_factory)


def captured_records() -> list[dict[str, Any]]:
    out = []
    for name in ("extra", "ls_agent", "ls_zstd", "ls_wrap", "ls_read_flat"):
        for run in captured(name).values():
            session = session_from_run(run)
            if "reason" not in session:
                out.append(record_from_session(session))  # type: ignore[arg-type]
    return out


def test_counts_are_exactly_the_tokenizers_on_the_whole_prompt(target) -> None:
    tokenizer = target.counter.tokenizer
    counter = TokenCounter(tokenizer)
    checked = 0
    for record in captured_records():
        for extra in ("", " <|im_end|>x<|im_start|> ", "  \n"):  # markers and spaces at the piece boundaries
            messages = [*record["messages"][:-1], {"role": "user", "content": f"again{extra}"}, record["messages"][-1]]
            try:
                text = "".join(
                    s.text for s in render(messages, tools=record.get("tools"), functions=record.get("functions"))
                )
            except Exception:
                continue  # (the image run: not renderable for a text model)
            assert counter.count(text) == tokenizer.count(text)
            assert counter.count(text) == tokenizer.count(text)  # from the memo
            checked += 1
    assert checked >= 40


def test_counts_of_random_text_are_exact(target) -> None:
    """Fuzz the word-level path against the tokenizer: ASCII punctuation, digits, apostrophes, whitespace runs,
    control characters, non-ASCII text and added tokens inside the text."""
    tokenizer = target.counter.tokenizer
    counter = TokenCounter(tokenizer)
    assert counter._added is not None and counter._bpe is not None  # SmolLM2 takes the word-level path
    rng = random.Random(5)
    alphabet = "ab Z9'_ -\n\t\r\x0b\x0c\x1c\x1f\x7f\"{}<>/.:,;é€中"
    extras = ["<|im_start|>", "<|im_end|>", "<repo_name>", "<|endoftext|>", "'s", "'ll", "  ", "\n\n", "123456"]
    for _ in range(3000):
        parts = [rng.choice(extras) if rng.random() < 0.1 else rng.choice(alphabet) for _ in range(rng.randint(1, 60))]
        text = "".join(parts)
        if rng.random() < 0.5:
            text = text.encode("ascii", "ignore").decode()
        assert counter.count(text) == tokenizer.count(text), repr(text)


def test_a_tokenizer_whose_markers_are_not_special_is_counted_whole() -> None:
    class Words:
        def count(self, text: str) -> int:
            return len(text.split())

    assert TokenCounter(Words()).count("<|im_start|>a b<|im_end|>") == 2


def inspect(target: TargetModel, record: dict[str, Any], context: int = 8192) -> list[tuple[str, str]]:
    return [(p.field, p.code) for p in inspect_record(record, 1, target.counter, context).problems]


def test_a_good_tool_call_record_has_no_problem(target) -> None:
    record = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "assistant", "content": "18C.", "function_call": None},
        ],
        "tools": TOOLS,
    }
    record["messages"][3].pop("function_call")
    assert inspect(target, record) == []
    tokens = inspect_record(record, 1, target.counter, 8192).tokens
    assert tokens == target.counter.tokenizer.count("".join(s.text for s in render(record["messages"], tools=TOOLS)))


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "weight": 0}],
            [("messages", "empty_trainable")],
        ),
        (
            [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                {"role": "assistant", "content": "a"},
            ],
            [("messages[0].content[0]", "unrenderable")],
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": 'see <tool_call>{"name": "f"}</tool_call>'},
            ],
            [("messages[1].content", "tool_call_roundtrip")],
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "</tool_call> oops", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "assistant", "content": "done"},
            ],
            [],  # a stray closing tag in the text does not disturb the block
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "<tool_call>", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "assistant", "content": "done"},
            ],
            [("messages[1].tool_calls", "tool_call_roundtrip")],  # an opening tag swallows the real call
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {**CALL, "function": {"name": "f", "arguments": '{"q": "\\u003c/tool_call\\u003e"}'}}
                    ],
                },
            ],
            [("messages[1].tool_calls", "tool_call_roundtrip")],  # an escaped closing tag inside the arguments
        ),
    ],
)
def test_problems(target, messages, expected) -> None:
    assert inspect(target, {"messages": messages, "tools": TOOLS}) == expected


def test_over_context_names_the_count(target) -> None:
    record = {"messages": [{"role": "user", "content": "hello " * 50}, {"role": "assistant", "content": "ok"}]}
    (problem,) = inspect_record(record, 4, target.counter, 20).problems
    assert problem.code == "over_context" and problem.line == 4
    assert problem.message.startswith(f"{inspect_record(record, 4, target.counter, 8192).tokens} tokens, over")


def test_the_check_plugs_into_validate_lines(target) -> None:
    check = target_model_check(target.counter.tokenizer, 60)
    good = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}'
    long = (
        b'{"messages": [{"role": "user", "content": "' + b"hi " * 100 + b'"}, {"role": "assistant", "content": "yo"}]}'
    )
    report = validate_lines([good, long], checks=[check])
    assert [(p.line, p.code) for p in report.problems] == [(2, "over_context")]
    assert report.valid_lines == 1
