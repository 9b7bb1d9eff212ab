"""Constrained decoding: whatever the logits, the output is the chat format's call block (or the JSON) and it
matches the schema; OpenAI request shapes map to the right constraint; the real SmolLM2 makes a valid call.

Logits come from seeded random tensors and from "adversarial" ones that push hard for wrong tokens (free text,
end-of-turn too early, special tokens, another tool's name); each is masked, the argmax taken and fed back until
the constraint says only end-of-turn may follow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
import torch

from tests.models import shared_smollm2_tokenizer
from tests.train import first_smollm2_load
from tracetune.chat.format import parse_assistant, render_prompt, tool_call_to_block
from tracetune.errors import InvalidInput
from tracetune.serve.constrain import constraint_for_request
from tracetune.serve.engine.grammar import ConstraintViolation, compile_constraint

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "Calculator",
        "description": "Evaluate a basic arithmetic operation on two numbers.",
        "parameters": {
            "type": "object",
            "properties": {
                "num1": {"type": "number"},
                "num2": {"type": "number"},
                "operation": {"type": "string", "enum": ["+", "-", "*", "/"]},
            },
            "required": ["num1", "num2", "operation"],
        },
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}
NESTED = {  # enums, a nested object, arrays, optional properties, a nullable type, a boolean
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "bug", "feature_request", "other"]},
        "priority": {"type": "integer"},
        "score": {"type": "number"},
        "labels": {"type": "array", "items": {"enum": ["ui", "api", "docs"]}},
        "customer": {
            "type": "object",
            "properties": {
                "plan": {"type": "string", "enum": ["free", "pro", "team"]},
                "seats": {"type": ["integer", "null"]},
                "active": {"type": "boolean"},
            },
            "required": ["plan", "active"],
        },
    },
    "required": ["category", "priority", "labels", "customer"],
}
SEPARATORS = (", ", ": ")
EOS = 2


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return shared_smollm2_tokenizer(tmp_path_factory)


# -- helpers -----------------------------------------------------------------------------------------------------


def validate(instance: Any, schema: Any, root: Any = None, where: str = "$") -> None:
    """A hand-written JSON-schema check of the keywords these tests use (jsonschema is not a dependency)."""
    root = schema if root is None else root
    if schema is True or schema == {}:
        return
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        validate(instance, target, root, where)
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                validate(instance, option, root, where)
                break
            except AssertionError as exc:
                errors.append(str(exc))
        else:
            raise AssertionError(f"{where}: matches no anyOf option: {errors}")
    if "enum" in schema:
        assert instance in schema["enum"], f"{where}: {instance!r} not in {schema['enum']}"
    if "const" in schema:
        assert instance == schema["const"], f"{where}: {instance!r} != {schema['const']!r}"
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        checks = {
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
            "string": lambda v: isinstance(v, str),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "boolean": lambda v: isinstance(v, bool),
            "null": lambda v: v is None,
        }
        assert any(checks[k](instance) for k in kinds), f"{where}: {instance!r} is not of type {kinds}"
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            assert name in instance, f"{where}: required property {name!r} missing"
        for name, value in instance.items():
            if name in props:
                validate(value, props[name], root, f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                raise AssertionError(f"{where}: unexpected property {name!r}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            validate(item, schema["items"], root, f"{where}[{i}]")


def drive(
    constraint: Any, tokenizer: Any, logits_for: Callable[[int], torch.Tensor], max_steps: int = 400
) -> tuple[str, list[int]]:
    """mask → argmax → advance until only end-of-turn may follow; the text generated before it."""
    state = constraint.start()
    ids: list[int] = []
    for step in range(max_steps):
        logits = logits_for(step)
        state.mask_logits(logits)
        token = int(logits.numpy().argmax())
        assert logits[token] > float("-inf"), "every token was masked"
        state.advance(token)
        if token == EOS:
            break
        ids.append(token)
        if state.is_finished():
            break
    else:
        pytest.fail(f"no end after {max_steps} tokens: {tokenizer.decode(ids)!r}")
    assert state.is_accepting()
    if not state._matcher.is_stopped():  # only end-of-turn may follow
        mask = state.allowed_mask()
        assert bool(mask[EOS]) and int(mask.sum()) == 1
    return tokenizer.decode(ids), ids


def random_logits(seed: int, size: int = 49152) -> Callable[[int], torch.Tensor]:
    """Seeded standard-normal logits (numpy-made: torch would wake its thread pool for every small op)."""
    rng = np.random.default_rng(seed)
    return lambda step: torch.from_numpy(rng.standard_normal(size, dtype=np.float32))


def adversarial_logits(tokenizer: Any, wrong: list[str], seed: int = 0, size: int = 49152) -> Callable[[int], Any]:
    """Small noise, plus a huge bonus for the tokens of ``wrong`` texts, end-of-turn and the special tokens."""
    favoured = {EOS, 0, 1}
    for text in wrong:
        favoured.update(tokenizer.encode(text))
    bonus = np.zeros(size, dtype=np.float32)
    bonus[sorted(favoured)] = 50.0
    rng = np.random.default_rng(seed)
    return lambda step: torch.from_numpy(rng.standard_normal(size, dtype=np.float32) * 0.1 + bonus)


def single_call(text: str, tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    parsed = parse_assistant(text)
    assert parsed["errors"] == [] and parsed["content"] is None, parsed
    assert len(parsed["tool_calls"]) == 1, parsed
    fn = parsed["tool_calls"][0]["function"]
    return fn["name"], json.loads(fn["arguments"])


def check_calls(text: str, tools: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every call parses, names an offered tool, validates, and the text is exactly the rendered blocks."""
    parsed = parse_assistant(text)
    assert parsed["errors"] == [] and parsed["content"] is None, parsed
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    calls = []
    for call in parsed["tool_calls"]:
        name, args = call["function"]["name"], json.loads(call["function"]["arguments"])
        assert name in schemas
        validate(args, schemas[name])
        calls.append((name, args))
    assert text == "\n".join(tool_call_to_block(n, a) for n, a in calls)
    return calls


# -- forced calls ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_named_tool_call_under_random_logits(tokenizer, seed):
    spec = constraint_for_request(
        tools=[WEATHER, CALCULATOR], tool_choice={"type": "function", "function": {"name": "Calculator"}}
    )
    assert spec is not None
    text, _ = drive(compile_constraint(tokenizer, spec), tokenizer, random_logits(seed, 49152 + 64))
    calls = check_calls(text, [CALCULATOR])
    assert [n for n, _ in calls] == ["Calculator"]
    assert list(calls[0][1]) == ["num1", "num2", "operation"]  # the schema's property order


def test_forced_call_resists_logits_that_want_something_else(tokenizer):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    spec = constraint_for_request(tools=[CALCULATOR, WEATHER], tool_choice=choice)
    assert spec is not None
    wrong = [
        "Sure! 12 times 7 is 84.",
        '<tool_call>{"name": "Calculator", "arguments": {"num1": 12}}',
        "<|im_start|>user\n",
        '"Paris"}',  # lets the city string end
    ]
    text, ids = drive(compile_constraint(tokenizer, spec), tokenizer, adversarial_logits(tokenizer, wrong))
    (name, args), *_ = check_calls(text, [WEATHER])
    assert name == "get_weather" and isinstance(args["city"], str)
    assert 0 not in ids and 1 not in ids  # no special token inside the call


def test_legacy_function_call_is_exact_and_parses(tokenizer):
    functions = [CALCULATOR["function"], WEATHER["function"]]
    spec = constraint_for_request(functions=functions, function_call={"name": "Calculator"})
    assert spec is not None and spec.kind == "tool_call" and spec.tool_names == ("Calculator",)
    text, _ = drive(compile_constraint(tokenizer, spec), tokenizer, adversarial_logits(tokenizer, ["84", "/"], 3))
    name, args = single_call(text, [CALCULATOR])
    assert name == "Calculator" and args["operation"] in ["+", "-", "*", "/"]
    validate(args, CALCULATOR["function"]["parameters"])


@pytest.mark.parametrize("parallel", [True, False])
def test_required_calls_any_offered_tool(tokenizer, parallel):
    spec = constraint_for_request(tools=[CALCULATOR, WEATHER], tool_choice="required", parallel_tool_calls=parallel)
    assert spec is not None and spec.parallel is parallel
    constraint = compile_constraint(tokenizer, spec)
    counts = set()
    for seed in range(6):
        wrong = ["Calculator", "get_weather", '"Oslo"', "\n", "celsius"]
        text, _ = drive(constraint, tokenizer, adversarial_logits(tokenizer, wrong, seed))
        calls = check_calls(text, [CALCULATOR, WEATHER])
        counts.add(len(calls))
    assert counts == {1} if not parallel else min(counts) >= 1


def test_tool_without_parameters_and_strict_tool(tokenizer):
    now = {"type": "function", "function": {"name": "get_time"}}
    strict = {
        "type": "function",
        "function": {
            "name": "configure",
            "strict": True,
            "parameters": {  # a property literally named "properties", and a nested object without the flag
                "properties": {
                    "properties": {"type": "object", "properties": {"on": {"type": "boolean"}}},
                    "mode": {"enum": ["fast", "safe"]},
                },
                "required": ["properties", "mode"],
            },
        },
    }
    spec = constraint_for_request(tools=[now], tool_choice={"type": "function", "function": {"name": "get_time"}})
    text, _ = drive(compile_constraint(tokenizer, spec), tokenizer, random_logits(7))  # type: ignore[arg-type]
    assert text == tool_call_to_block("get_time", {})
    choice = {"type": "function", "function": {"name": "configure"}}
    spec = constraint_for_request(tools=[now, strict], tool_choice=choice)
    for seed in range(3):
        text, _ = drive(compile_constraint(tokenizer, spec), tokenizer, random_logits(seed))  # type: ignore[arg-type]
        [(name, args)] = check_calls(text, [strict])
        assert name == "configure" and set(args) == {"properties", "mode"} and set(args["properties"]) <= {"on"}


def test_parallel_state_is_accepting_between_calls_but_not_finished(tokenizer):
    spec = constraint_for_request(tools=[CALCULATOR], tool_choice="required")
    assert spec is not None and spec.parallel  # OpenAI's default: parallel_tool_calls true
    state = compile_constraint(tokenizer, spec).start()
    block = tool_call_to_block("Calculator", {"num1": 12, "num2": 7, "operation": "*"})
    ids = tokenizer.encode(block)
    assert not state.is_accepting()
    for token in ids:
        state.advance(token)
    assert state.is_accepting() and not state.is_finished()  # another "\n<tool_call>" may follow
    single = constraint_for_request(tools=[CALCULATOR], tool_choice="required", parallel_tool_calls=False)
    one = compile_constraint(tokenizer, single).start()  # type: ignore[arg-type]
    for token in ids:
        one.advance(token)
    assert one.is_accepting() and one.is_finished()
    one.advance(EOS)
    assert one.is_finished()


def test_advance_rejects_a_masked_token_and_masks_extra_vocab(tokenizer):
    spec = constraint_for_request(tools=[CALCULATOR], tool_choice="required", parallel_tool_calls=False)
    state = compile_constraint(tokenizer, spec).start()  # type: ignore[arg-type]
    batch = torch.zeros(2, 49152 + 100)  # the engine masks one row of its batch in place
    state.mask_logits(batch[1])
    assert torch.isinf(batch[1, 49152:]).all() and int(torch.isfinite(batch[1]).sum()) >= 1
    assert torch.isfinite(batch[0]).all()
    assert torch.equal(torch.isfinite(batch[1, :49152]), state.allowed_mask())
    with pytest.raises(ConstraintViolation):
        state.advance(tokenizer.encode("Sure")[0])
    with pytest.raises(ConstraintViolation):
        state.advance(49152 + 5)
    with pytest.raises(ConstraintViolation):
        state.advance(EOS)  # end-of-turn before the call


def test_compiled_constraints_are_cached_and_states_independent(tokenizer):
    spec = constraint_for_request(tools=[CALCULATOR], tool_choice="required")
    same = constraint_for_request(tools=[CALCULATOR], tool_choice="required")
    a, b = compile_constraint(tokenizer, spec), compile_constraint(tokenizer, same)  # type: ignore[arg-type]
    assert a is b
    s1, s2 = a.start(), a.start()
    s1.advance(tokenizer.encode("<tool_call>")[0])
    assert s2.allowed(tokenizer.encode("<tool_call>")[0]) and not s2.is_accepting()


# -- JSON response formats ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_json_schema_output_validates_under_random_logits(tokenizer, seed):
    fmt = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": NESTED, "strict": True}}
    spec = constraint_for_request(response_format=fmt)
    assert spec is not None and spec.kind == "json_schema" and spec.schema_name == "ticket"
    text, _ = drive(compile_constraint(tokenizer, spec), tokenizer, random_logits(seed))
    value = json.loads(text)
    validate(value, NESTED)
    assert text == json.dumps(value, ensure_ascii=False, separators=SEPARATORS)  # exact spelling, numbers too


def test_numbers_are_spelled_as_python_writes_them(tokenizer):
    schema = {"type": "array", "items": {"type": "number"}}
    fmt = {"type": "json_schema", "json_schema": {"name": "numbers", "schema": schema}}
    constraint = compile_constraint(tokenizer, constraint_for_request(response_format=fmt))  # type: ignore[arg-type]
    seen = 0
    for seed in range(8):
        text, _ = drive(constraint, tokenizer, random_logits(100 + seed))
        value = json.loads(text)
        assert text == json.dumps(value, separators=SEPARATORS)
        seen += len(value)
    assert seen >= 4


def test_json_schema_with_refs_and_any_of_is_handed_to_the_library(tokenizer):
    schema = {  # the shape pydantic's model_json_schema() gives (with_structured_output sends it)
        "$defs": {"Op": {"enum": ["+", "-"], "title": "Op", "type": "string"}},
        "properties": {
            "op": {"$ref": "#/$defs/Op"},
            "n": {"anyOf": [{"type": "integer"}, {"type": "null"}], "title": "N"},
        },
        "required": ["op", "n"],
        "title": "Calc",
        "type": "object",
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "Calc", "schema": schema, "strict": True}}
    constraint = compile_constraint(tokenizer, constraint_for_request(response_format=fmt))  # type: ignore[arg-type]
    for seed in range(3):
        text, _ = drive(constraint, tokenizer, random_logits(seed))
        value = json.loads(text)
        validate(value, schema)
        assert set(value) == {"op", "n"}  # strict: nothing beyond the declared properties


def test_json_object_is_an_object(tokenizer):
    spec = constraint_for_request(response_format={"type": "json_object"})
    assert spec is not None and spec.kind == "json_object"
    wrong = ["Sure, here is the JSON:", '{"answer": 42, "ok": true}', "```json"]
    text, _ = drive(compile_constraint(tokenizer, spec), tokenizer, adversarial_logits(tokenizer, wrong))
    assert isinstance(json.loads(text), dict)


# -- request mapping ---------------------------------------------------------------------------------------------


JSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "t", "schema": NESTED}}


@pytest.mark.parametrize(
    ("request_fields", "expected"),
    [
        ({}, None),
        ({"tools": [CALCULATOR]}, None),
        ({"tools": [CALCULATOR], "tool_choice": "auto"}, None),
        ({"tools": [CALCULATOR], "tool_choice": "none"}, None),
        ({"functions": [CALCULATOR["function"]], "function_call": "auto"}, None),
        ({"functions": [CALCULATOR["function"]], "function_call": "none"}, None),
        ({"response_format": {"type": "text"}}, None),
        (
            {"tools": [CALCULATOR, WEATHER], "tool_choice": "required"},
            ("tool_call", ("Calculator", "get_weather"), True),
        ),
        (
            {"tools": [CALCULATOR, WEATHER], "tool_choice": "required", "parallel_tool_calls": False},
            ("tool_call", ("Calculator", "get_weather"), False),
        ),
        (
            {"tools": [CALCULATOR, WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            ("tool_call", ("get_weather",), False),
        ),
        (
            {"functions": [CALCULATOR["function"]], "function_call": {"name": "Calculator"}},
            ("tool_call", ("Calculator",), False),
        ),
        ({"response_format": {"type": "json_object"}}, ("json_object", (), False)),
        ({"response_format": JSON_FORMAT}, ("json_schema", (), False)),
        ({"tools": [CALCULATOR], "tool_choice": "auto", "response_format": JSON_FORMAT}, ("json_schema", (), False)),
        (  # a forced call wins over a JSON format
            {"tools": [CALCULATOR], "tool_choice": "required", "response_format": JSON_FORMAT},
            ("tool_call", ("Calculator",), True),
        ),
    ],
)
def test_request_maps_to_constraint(request_fields: Mapping[str, Any], expected):
    spec = constraint_for_request(**request_fields)
    if expected is None:
        assert spec is None
        return
    assert spec is not None
    assert (spec.kind, spec.tool_names, spec.parallel) == expected


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"tools": [CALCULATOR], "tool_choice": {"type": "function", "function": {"name": "Nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [CALCULATOR], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [CALCULATOR], "tool_choice": {"type": "function"}}, "tool_choice"),
        ({"functions": [CALCULATOR["function"]], "function_call": {"name": "Nope"}}, "function_call"),
        ({"functions": [CALCULATOR["function"]], "function_call": "always"}, "function_call"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": "object"}}},
            "response_format.json_schema.schema",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "bogus"}}}},
            "response_format.json_schema.schema.type",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"enum": "ab"}}}},
            "response_format.json_schema.schema.enum",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "(unclosed"}},
                }
            },
            "response_format.json_schema.schema",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objet"}}}],
                "tool_choice": "required",
            },
            "tools[0].function.parameters.type",
        ),
        (
            {
                "tools": [CALCULATOR, {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
            },
            "tools[1].function.parameters.type",
        ),
        (
            {
                "functions": [{"name": "f", "parameters": {"type": "object", "properties": {"x": {"enum": 3}}}}],
                "function_call": {"name": "f"},
            },
            "functions[0].parameters.properties.x.enum",
        ),
    ],
)
def test_bad_requests_name_the_field(request_fields: Mapping[str, Any], field: str):
    with pytest.raises(InvalidInput) as info:
        constraint_for_request(**request_fields)
    assert info.value.field == field and info.value.code == "invalid_value"
    assert info.value.message


def test_import_is_light():
    code = (
        "import sys, tracetune.serve.constrain; print(sorted(m for m in ('torch', 'llguidance') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the real model ----------------------------------------------------------------------------------------------


def test_smollm2_greedy_forced_calculator_call(tmp_path_factory):
    model, tokenizer, _, _ = first_smollm2_load(tmp_path_factory)
    tools = [CALCULATOR]
    prompt = render_prompt([{"role": "user", "content": "What is 12 times 7?"}], tools=tools)
    spec = constraint_for_request(tools=tools, tool_choice={"type": "function", "function": {"name": "Calculator"}})
    state = compile_constraint(tokenizer, spec).start()  # type: ignore[arg-type]
    ids: list[int] = []
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([tokenizer.encode(prompt)]), use_cache=True)
        for _ in range(64):
            logits = out.logits[0, -1].float().clone()
            state.mask_logits(logits)
            token = int(logits.argmax())
            state.advance(token)
            if token == tokenizer.eos_token_id:
                break
            ids.append(token)
            if state.is_finished():
                break
            out = model(input_ids=torch.tensor([[token]]), cache=out.past_key_values, use_cache=True)
    text = tokenizer.decode(ids)
    name, args = single_call(text, tools)
    assert name == "Calculator", text
    validate(args, CALCULATOR["function"]["parameters"])
    assert text == tool_call_to_block(name, args)


# -- recursive schemas -------------------------------------------------------------------------------------------

TREE = {
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
            "required": ["name", "children"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/Node",
}


def spelling(tokenizer, text: str, size: int = 49152) -> Callable[[int], torch.Tensor]:
    """Logits that want exactly ``text``'s tokens, one per step (and end-of-turn after them)."""
    wanted = [*tokenizer.encode(text), EOS]

    def logits(step: int) -> torch.Tensor:
        out = np.zeros(size, dtype=np.float32)
        out[wanted[min(step, len(wanted) - 1)]] = 50.0
        return torch.from_numpy(out)

    return logits


@pytest.mark.parametrize("strict", [False, True])
def test_a_recursive_schema_constrains_and_ends(tokenizer, strict):
    fmt = {"type": "json_schema", "json_schema": {"name": "tree", "schema": TREE, "strict": strict}}
    constraint = compile_constraint(tokenizer, constraint_for_request(response_format=fmt))  # type: ignore[arg-type]
    tree = '{"name": "root", "children": [{"name": "leaf", "children": []}, {"name": "b", "children": []}]}'
    text, _ = drive(constraint, tokenizer, spelling(tokenizer, tree))
    assert text == tree
    validate(json.loads(text), TREE)
    # and whatever the model wants, what it writes stays a (prefix of a) valid tree
    for seed in range(2):
        state = constraint.start()
        logits_for = random_logits(seed)
        out: list[int] = []
        for step in range(60):
            logits = logits_for(step)
            state.mask_logits(logits)
            token = int(logits.numpy().argmax())
            assert logits[token] > float("-inf")
            state.advance(token)
            out.append(token)
        assert tokenizer.decode(out).startswith('{"name": "')


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$defs": {"A": {"$ref": "#/$defs/A"}}, "$ref": "#/$defs/A"},
        {"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]},
        {"type": "array", "items": {"$ref": "#"}, "minItems": 1},
        {"anyOf": [{"$ref": "#"}, {"allOf": [{"$ref": "#"}]}]},
    ],
)
def test_a_schema_with_no_finite_value_is_refused(schema):
    fmt = {"type": "json_schema", "json_schema": {"name": "loop", "schema": schema}}
    with pytest.raises(InvalidInput, match="no finite value") as caught:
        constraint_for_request(response_format=fmt)
    assert caught.value.field == "response_format.json_schema.schema"


@pytest.mark.parametrize(
    "schema",
    [
        TREE,
        {"type": "object", "properties": {"next": {"$ref": "#"}}},
        {"type": "array", "items": {"$ref": "#"}},
        {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"n": {"$ref": "#"}}, "required": ["n"]}]},
    ],
)
def test_recursion_with_a_way_out_is_accepted(schema):
    fmt = {"type": "json_schema", "json_schema": {"name": "ok", "schema": schema}}
    assert constraint_for_request(response_format=fmt) is not None
