"""Deduper, PII scrubbing and human corrections over ChatSession dicts."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from tracetune.convert.hygiene import (
    PII_KINDS,
    Deduper,
    apply_correction,
    exact_key,
    luhn_ok,
    normalize_text,
    normalized_key,
    scrub_session,
)
from tracetune.errors import InvalidInput

from .test_records import mutated

SOURCE = {"run_ids": ["r1"], "trace_id": "t1"}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages), "source": SOURCE, **extra}


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: Any = None, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **extra}


def call(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# ── duplicates ────────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("  many\t\n spaces  ", "many spaces"),
        ("ÉCOLE straße", "école strasse"),
        ("don't stop...", "dont stop"),
        ("", ""),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


BASE = chat(user("What is the weather in Paris?"), assistant("It is sunny."))
WITH_CALL = chat(
    user("Weather in Paris?"),
    assistant(None, tool_calls=[call("get_weather", '{"city": "Paris", "unit": "c"}', "call_a")]),
    {"role": "tool", "content": "18C", "tool_call_id": "call_a"},
    assistant("18C."),
    tools=[TOOL],
)


def _replace_call(session: dict[str, Any], arguments: str, call_id: str) -> dict[str, Any]:
    out = copy.deepcopy(session)
    out["messages"][1]["tool_calls"][0]["id"] = call_id
    out["messages"][1]["tool_calls"][0]["function"]["arguments"] = arguments
    out["messages"][2]["tool_call_id"] = call_id
    return out


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (BASE, copy.deepcopy(BASE), "exact"),
        (BASE, {**BASE, "source": {"run_ids": ["other"], "trace_id": "t9"}}, "exact"),  # lineage is not content
        (BASE, chat(user("what is the weather in paris"), assistant("It is sunny.")), "normalized"),
        (BASE, chat(user("What  is the\nweather in Paris ?"), assistant("IT IS SUNNY!!")), "normalized"),
        (BASE, chat({"role": "developer", "content": "x"}, *BASE["messages"]), None),
        (
            chat({"role": "system", "content": "Be nice."}, *BASE["messages"]),
            chat({"role": "developer", "content": "be nice"}, *BASE["messages"]),
            "normalized",
        ),
        (BASE, chat(user("What is the weather in Rome?"), assistant("It is sunny.")), None),
        (BASE, chat(assistant("What is the weather in Paris?"), assistant("It is sunny.")), None),
        (
            BASE,
            chat(user([{"type": "text", "text": "what is the weather in Paris"}]), assistant("It is sunny")),
            "normalized",
        ),
        (WITH_CALL, _replace_call(WITH_CALL, '{"unit":"c","city":"Paris"}', "call_zz"), "normalized"),
        (WITH_CALL, _replace_call(WITH_CALL, '{"city": "Rome", "unit": "c"}', "call_a"), None),
        (WITH_CALL, _replace_call(WITH_CALL, '{"city": "paris", "unit": "c"}', "call_a"), None),  # values are exact
        (WITH_CALL, {**WITH_CALL, "tools": [TOOL, {**TOOL, "function": {"name": "other"}}]}, None),
        (WITH_CALL, {k: v for k, v in WITH_CALL.items() if k != "tools"}, None),
    ],
    ids=[
        "identical",
        "other-source",
        "case-punctuation",
        "whitespace",
        "extra-message",
        "developer-is-system",
        "other-text",
        "other-role",
        "text-parts",
        "call-ids-and-key-order",
        "other-arguments",
        "argument-case",
        "other-tools",
        "no-tools",
    ],
)
def test_deduper_pairs(first: dict[str, Any], second: dict[str, Any], expected: str | None) -> None:
    deduper = Deduper()
    assert deduper.seen(first) is None
    assert deduper.seen(second) == expected


def test_deduper_streams_with_one_digest_per_unique_key() -> None:
    deduper = Deduper()
    sessions = [chat(user(f"question {i % 50}"), assistant("answer")) for i in range(200)]
    sessions += [chat(user(f"QUESTION {i}!"), assistant("Answer.")) for i in range(50)]
    verdicts = [deduper.seen(s) for s in sessions]
    assert verdicts.count(None) == 50
    assert verdicts.count("exact") == 150
    assert verdicts.count("normalized") == 50
    assert deduper.counts == {"exact": 150, "normalized": 50}
    assert len(deduper) == 100  # distinct exact keys
    assert len(exact_key(BASE)) == len(normalized_key(BASE)) == 16


# ── PII ───────────────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("text", "expected", "found"),
    [
        # emails
        ("mail john.doe+tag@example.co.uk.", "mail <EMAIL>.", {"email": 1}),
        ("a@b.io and c_d@e-f.com", "<EMAIL> and <EMAIL>", {"email": 2}),
        ("not an email: user@localhost or @handle", "not an email: user@localhost or @handle", {}),
        # cards (Luhn)
        ("card 4111 1111 1111 1111 ok", "card <CARD_NUMBER> ok", {"card": 1}),
        ("card 4111-1111-1111-1111", "card <CARD_NUMBER>", {"card": 1}),
        ("card 5500005555555559", "card <CARD_NUMBER>", {"card": 1}),
        ("amex 3782 822463 10005", "amex <CARD_NUMBER>", {"card": 1}),
        ("bad luhn 4111111111111112", "bad luhn 4111111111111112", {}),
        ("timestamp 1718000000000", "timestamp 1718000000000", {}),  # starts with 1: no card network
        # IPv4 / IPv6
        ("from 192.168.1.10, then 8.8.8.8.", "from <IP_ADDRESS>, then <IP_ADDRESS>.", {"ip": 2}),
        ("version v1.2.3.4 and 10.0.19045.2965", "version v1.2.3.4 and 10.0.19045.2965", {}),
        ("not an ip 256.1.1.1", "not an ip 256.1.1.1", {}),
        ("v6 2001:db8::8a2e:370:7334 here", "v6 <IP_ADDRESS> here", {"ip": 1}),
        ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "full <IP_ADDRESS>", {"ip": 1}),
        ("mapped ::ffff:192.0.2.128", "mapped <IP_ADDRESS>", {"ip": 1}),
        ("loopback ::1, slice x[::2], std::vector", "loopback ::1, slice x[::2], std::vector", {}),
        ("time 12:30:45 mac 00:1a:2b:3c:4d:5e", "time 12:30:45 mac 00:1a:2b:3c:4d:5e", {}),
        # phones
        ("call +1 (555) 123-4567 now", "call <PHONE> now", {"phone": 1}),
        ("call 555-123-4567", "call <PHONE>", {"phone": 1}),
        ("call 555.123.4567", "call <PHONE>", {"phone": 1}),
        ("call (555) 123-4567", "call <PHONE>", {"phone": 1}),
        ("call 1-800-555-0199", "call <PHONE>", {"phone": 1}),
        ("uk +44 20 7946 0958", "uk <PHONE>", {"phone": 1}),
        ("uk 0044 20 7946 0958", "uk <PHONE>", {"phone": 1}),
        ("fr 06 12 34 56 78", "fr <PHONE>", {"phone": 1}),
        ("de 030 1234567", "de <PHONE>", {"phone": 1}),
        ("date 2024-01-15 10:30:00", "date 2024-01-15 10:30:00", {}),
        ("date 15.01.2024", "date 15.01.2024", {}),
        ("population 1 234 567 or 12.345.678", "population 1 234 567 or 12.345.678", {}),
        ("order 4155552671 id 12345678", "order 4155552671 id 12345678", {}),
        ("pi 3.14159265358979 range 2023-2024", "pi 3.14159265358979 range 2023-2024", {}),
        ("isbn 978-3-16-148410-0 price $1,234.56", "isbn 978-3-16-148410-0 price $1,234.56", {}),
        # mixed
        (
            "Jane (jane@x.org, +33 6 12 34 56 78) from 10.0.0.1 paid 4242 4242 4242 4242",
            "Jane (<EMAIL>, <PHONE>) from <IP_ADDRESS> paid <CARD_NUMBER>",
            {"email": 1, "phone": 1, "ip": 1, "card": 1},
        ),
        ("nothing here", "nothing here", {}),
    ],
)
def test_scrub_text(text: str, expected: str, found: dict[str, int]) -> None:
    session = chat(user(text), assistant("ok"))
    scrubbed, counts = scrub_session(session)
    assert scrubbed["messages"][0]["content"] == expected
    assert {k: v for k, v in counts.items() if v} == found
    assert set(counts) == set(PII_KINDS)


@pytest.mark.parametrize(
    ("digits", "ok"),
    [("4111111111111111", True), ("79927398713", True), ("4111111111111112", False), ("0", True), ("18", True)],
)
def test_luhn(digits: str, ok: bool) -> None:
    assert luhn_ok(digits) is ok


def test_scrub_tool_arguments_stay_valid_json() -> None:
    arguments = json.dumps({"to": ["bob@corp.com", "x"], "meta": {"ip": "10.1.2.3", "n": 5}, "a@b.co": True})
    untouched = '{"city":  "Paris"}'
    session = chat(
        user("email bob"),
        assistant(None, tool_calls=[call("send", arguments, "c1"), call("get_weather", untouched, "c2")]),
        {"role": "tool", "content": "sent to bob@corp.com", "tool_call_id": "c1"},
        assistant(None, function_call={"name": "notify", "arguments": '{"phone": "+1 555 123 4567"}'}),
        assistant("done"),
    )
    scrubbed, counts = scrub_session(session)
    msgs = scrubbed["messages"]
    args = json.loads(msgs[1]["tool_calls"][0]["function"]["arguments"])
    assert args == {"to": ["<EMAIL>", "x"], "meta": {"ip": "<IP_ADDRESS>", "n": 5}, "a@b.co": True}  # keys kept
    assert msgs[1]["tool_calls"][1]["function"]["arguments"] == untouched  # byte-exact when nothing matched
    assert msgs[1]["tool_calls"][0]["id"] == "c1"
    assert msgs[2]["content"] == "sent to <EMAIL>"
    assert json.loads(msgs[3]["function_call"]["arguments"]) == {"phone": "<PHONE>"}
    assert counts == {"email": 2, "card": 0, "ip": 1, "phone": 1}


def test_scrub_non_json_arguments_and_content_parts() -> None:
    session = chat(
        user([{"type": "text", "text": "I am a@b.io"}, {"type": "image_url", "image_url": {"url": "https://x/1.png"}}]),
        assistant(None, tool_calls=[call("f", "mail a@b.io {")]),
    )
    scrubbed, counts = scrub_session(session)
    assert scrubbed["messages"][0]["content"] == [
        {"type": "text", "text": "I am <EMAIL>"},
        {"type": "image_url", "image_url": {"url": "https://x/1.png"}},
    ]
    assert scrubbed["messages"][1]["tool_calls"][0]["function"]["arguments"] == "mail <EMAIL> {"
    assert counts["email"] == 2


def test_scrub_does_not_modify_input_and_shares_unchanged_parts() -> None:
    session = chat({"role": "system", "content": "Be nice."}, user("I am a@b.io"), assistant("Hi."))
    before = copy.deepcopy(session)
    scrubbed, _ = scrub_session(session)
    assert session == before
    assert scrubbed["messages"][0] is session["messages"][0]
    assert scrubbed["source"] is session["source"]
    clean = chat(user("hello"), assistant("hi"))
    assert scrub_session(clean)[0] is clean


def test_scrub_only_the_kinds_asked_for() -> None:
    session = chat(user("a@b.io +44 20 7946 0958"), assistant("ok"))
    scrubbed, counts = scrub_session(session, ["email"])
    assert scrubbed["messages"][0]["content"] == "<EMAIL> +44 20 7946 0958"
    assert counts == {"email": 1}
    with pytest.raises(InvalidInput) as err:
        scrub_session(session, ["email", "names"])
    assert err.value.field == "kinds"


# ── corrections ───────────────────────────────────────────────────────────────────────────────────────────

ANSWERED = chat(user("Weather in Paris?"), assistant("It is raining."))
LC_AI_MESSAGE = {
    "lc": 1,
    "type": "constructor",
    "id": ["langchain", "schema", "messages", "AIMessage"],
    "kwargs": {
        "content": "",
        "type": "ai",
        "tool_calls": [
            {"name": "get_weather", "args": {"location": "Paris"}, "id": "call_abc123", "type": "tool_call"}
        ],
        "invalid_tool_calls": [],
    },
}
WEATHER_CALL = call("get_weather", '{"location": "Paris"}', "call_abc123")
SUNNY = {"role": "assistant", "content": "It is sunny."}


@pytest.mark.parametrize(
    ("correction", "expected"),
    [
        ("It is sunny.", SUNNY),
        ({"role": "assistant", "content": "It is sunny."}, SUNNY),
        ({"content": "It is sunny."}, SUNNY),
        ({"outputs": "It is sunny."}, SUNNY),
        ({"outputs": {"content": "It is sunny."}}, SUNNY),
        ({"output": "It is sunny."}, SUNNY),
        ({"outputs": {"message": {"role": "assistant", "content": "It is sunny."}}}, SUNNY),
        ({"outputs": {"choices": [{"message": {"role": "assistant", "content": "It is sunny."}}]}}, SUNNY),
        ({"outputs": {"generations": [{"text": "It is sunny."}]}}, SUNNY),
        ({"role": "assistant", "content": "It is sunny.", "weight": 0}, SUNNY),
        ({"tool_calls": [WEATHER_CALL]}, {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]}),
        (
            {"tool_calls": [{"name": "get_weather", "args": {"location": "Paris"}}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("get_weather", '{"location": "Paris"}', "call_correction_0")],
            },
        ),
        (
            {
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"location": "Paris"}}}
                ]
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("get_weather", '{"location": "Paris"}', "call_correction_0")],
            },
        ),
        (
            {"outputs": {"generations": [[{"text": "", "message": LC_AI_MESSAGE}]]}},
            {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        ),
    ],
    ids=[
        "text",
        "assistant-message",
        "content",
        "outputs-text",
        "outputs-content",
        "output-text",
        "outputs-message",
        "openai-response",
        "flat-generations",
        "weight-dropped",
        "openai-tool-calls",
        "langchain-parsed-calls",
        "dict-arguments",
        "langchain-generations",
    ],
)
def test_apply_correction(correction: Any, expected: dict[str, Any]) -> None:
    before = copy.deepcopy(ANSWERED)
    corrected = apply_correction(ANSWERED, correction)
    assert corrected["messages"] == [ANSWERED["messages"][0], expected]
    assert corrected["source"] == ANSWERED["source"]
    assert before == ANSWERED


def test_correction_replaces_the_last_assistant_and_drops_what_followed() -> None:
    session = chat(
        user("Weather?"),
        assistant(None, tool_calls=[call("get_weather", "{}", "c1")]),
        {"role": "tool", "content": "18C", "tool_call_id": "c1"},
    )
    corrected = apply_correction(session, "I cannot check the weather.")
    assert corrected["messages"] == [user("Weather?"), {"role": "assistant", "content": "I cannot check the weather."}]


@pytest.mark.parametrize(
    ("session", "correction", "field"),
    [
        (ANSWERED, 42, "correction"),
        (ANSWERED, None, "correction"),
        (ANSWERED, {"score": 1}, "correction"),
        (ANSWERED, {"outputs": {"unknown": 1}}, "correction.outputs"),
        (ANSWERED, {"role": "user", "content": "x"}, "correction"),
        (ANSWERED, {"content": None}, "correction"),
        (ANSWERED, {"content": 5}, "correction"),
        (ANSWERED, {"tool_calls": [{"function": {"arguments": "{}"}}]}, "correction"),
        (chat(user("hi")), "text", "messages"),
    ],
    ids=[
        "number",
        "null",
        "no-known-key",
        "nested-unknown",
        "user-role",
        "no-content",
        "bad-content",
        "no-name",
        "no-assistant",
    ],
)
def test_apply_correction_errors(session: dict[str, Any], correction: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        apply_correction(session, correction)
    assert err.value.field == field


@pytest.mark.parametrize("messages", [["hi"], 5, [{"role": "user", "content": "a@b.io"}, 7]])
def test_malformed_sessions_raise_invalid_input(messages: Any) -> None:
    for operation in (Deduper().seen, scrub_session, lambda s: apply_correction(s, "fixed")):
        with pytest.raises(InvalidInput) as err:
            operation({"messages": messages, "source": SOURCE})
        assert (err.value.field, err.value.code) == ("messages", "malformed_session")


def test_any_session_shape_gives_a_result_or_invalid_input() -> None:
    rng = random.Random(11)
    deduper = Deduper()
    bases = [BASE, WITH_CALL, ANSWERED, chat(user([{"type": "text", "text": "a@b.io"}]), assistant("ok"))]
    raised = 0
    for _ in range(1500):
        session = mutated(rng.choice(bases), rng)
        for operation in (deduper.seen, scrub_session, lambda s: apply_correction(s, "fixed")):
            try:
                operation(session)
            except InvalidInput:
                raised += 1
    assert raised
