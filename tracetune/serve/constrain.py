"""Constrained decoding: forced tool calls and JSON response formats, guaranteed to parse and match their schema.

An OpenAI request's ``tool_choice`` / ``function_call`` / ``response_format`` becomes a :class:`ConstraintSpec`
(:func:`constraint_for_request`, pure, no heavy imports); the engine compiles it for its tokenizer once
(``serve.engine.grammar.compile_constraint``, LRU-cached) and drives one ``ConstraintState`` per generated sequence::

    state = compile_constraint(tokenizer, spec).start()
    while True:
        logits = model_step(...)              # 1-D, over the model's vocabulary
        state.mask_logits(logits)             # disallowed tokens → -inf, in place
        token = sample(logits)
        state.advance(token)
        if token == eos or state.is_finished():
            break                             # finish_reason "stop"; the text is the tokens before eos

``is_finished()`` is true as soon as nothing but end-of-turn may follow, so the engine can stop without
spending a model step on sampling it.

What is generated, byte for byte:

* a forced call is exactly the call block :mod:`tracetune.chat.format` renders for training
  (``tool_call_to_block``: ``<tool_call>{"name": "N", "arguments": {…}}</tool_call>``, separators
  ``TOOL_CALL_JSON_SEPARATORS``, several blocks joined by ``TOOL_CALL_JOINER``), then end-of-turn
  (``<|im_end|>``, the tokenizer's eos). The arguments follow the tool's ``parameters`` schema with the
  properties in the schema's declared order, and are written as ``json.dumps(…, ensure_ascii=False)`` writes
  them: ``\\"``, ``\\\\``, ``\\n``-style escapes only, and numbers in Python's own spelling (``12``, ``12.5``,
  ``0.001``; never ``12.50``, ``1e3`` or ``-0``), so ``parse_assistant`` then ``tool_call_to_block`` gives
  the same text back;
* ``json_schema`` / ``json_object`` output is the JSON text (same separators and spelling), then end-of-turn.

The library is llguidance (chosen by measurement: ``bench/constrain.py``, ``bench/README.md``): a Lark grammar
is built here from the JSON schema. Keywords the converter does not spell out itself (``anyOf``, ``$ref``,
``pattern``, ``minimum``, ``minItems``, ``format`` …) are handed to llguidance's own JSON-schema compiler
(``%json``) for that sub-schema, with the same separators and no whitespace; there the number spelling is
JSON's, not necessarily Python's (the value still validates).

Importing this module imports neither torch nor llguidance; they are imported on first use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tracetune.chat.format import TOOL_CALL_JOINER, TOOL_CALL_JSON_SEPARATORS, tool_call_to_block
from tracetune.errors import InvalidInput
from tracetune.serve.schema_check import check_has_finite_instance

if TYPE_CHECKING:
    pass

__all__ = [
    "ConstraintSpec",
    "constraint_for_request",
    "grammar_for_schema",
]

ITEM_SEP, KEY_SEP = TOOL_CALL_JSON_SEPARATORS
SCHEMA_FIELD = "response_format.json_schema.schema"
# llguidance's JSON compiler, for the sub-schemas it handles (%json): the chat format's separators, no other
# whitespace, json.dumps's escapes (no \\uXXXX: only control characters need it, and they are never worth it)
X_GUIDANCE = {
    "item_separator": ITEM_SEP,
    "key_separator": KEY_SEP,
    "whitespace_flexible": False,
    "json_allowed_escapes": 'nrbtf\\"',
}


@dataclass(frozen=True)
class ConstraintSpec:
    """What a request forces. ``grammar`` (a llguidance Lark grammar) is the whole constraint and the cache key.

    ``kind``: ``"tool_call"`` (the output is call blocks: parse it with ``chat.format.parse_assistant``),
    ``"json_schema"`` or ``"json_object"`` (the output is the message content). ``tool_names``: the tools a
    forced call may name (one for a named choice). ``parallel``: more than one call block may be produced."""

    kind: Literal["tool_call", "json_schema", "json_object"]
    grammar: str = field(repr=False)
    tool_names: tuple[str, ...] = ()
    parallel: bool = False
    schema_name: str | None = None


# -- request → spec --------------------------------------------------------------------------------------------


def constraint_for_request(
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    functions: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
    function_call: str | Mapping[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> ConstraintSpec | None:
    """The constraint an OpenAI chat request asks for, or ``None`` (free text; with tools offered and
    ``auto``, the model decides and the chat format's parser finds any call).

    * ``tool_choice="required"``: a call of any offered tool; one or more blocks when ``parallel_tool_calls``
      is true or absent (OpenAI's default), else exactly one;
    * ``tool_choice={"type": "function", "function": {"name": N}}`` or legacy ``function_call={"name": N}``:
      exactly one call of N;
    * ``"none"`` / ``"auto"`` / absent: no constraint from tools;
    * ``response_format`` ``json_schema`` (``strict``: no properties beyond the declared ones, at any depth),
      ``json_object`` (any JSON object) or ``text`` (``None``). A forced call wins over a JSON format.

    Raises :class:`InvalidInput` (``code="invalid_value"``) naming ``tool_choice``, ``function_call``,
    ``response_format…`` or the tool whose schema cannot be compiled.
    """
    offered = _offered_tools(tools, functions)
    forced: list[str] | None = None
    parallel = False
    if tool_choice is not None and tool_choice not in ("none", "auto"):
        if tool_choice == "required":
            if not offered:
                raise InvalidInput('tool_choice "required" needs tools', field="tool_choice", code="invalid_value")
            forced = list(offered)
            parallel = parallel_tool_calls is not False
        else:
            forced = [_named_choice(tool_choice, offered)]
    elif function_call is not None and function_call not in ("none", "auto"):
        forced = [_named_function_call(function_call, offered)]
    if forced is not None:
        rules = _Rules()
        call_rules = []
        for name in forced:
            fn, where = offered[name]
            schema = _parameters(fn, where)
            head, tail = tool_call_to_block(name, {}).rsplit("{}", 1)
            args = rules.value(schema, f"{where}.parameters", root=schema)
            call_rules.append(rules.add(f"{_lit(head)} {args} {_lit(tail)}"))
        call = rules.add(" | ".join(call_rules))
        start = f"{call} ({_lit(TOOL_CALL_JOINER)} {call})*" if parallel else call
        grammar = rules.grammar(start)
        _check(grammar, f"{offered[forced[0]][1]}.parameters" if len(forced) == 1 else "tools")
        return ConstraintSpec("tool_call", grammar, tool_names=tuple(forced), parallel=parallel)
    return _response_format(response_format)


def grammar_for_schema(schema: Any, *, strict: bool = False, field: str = SCHEMA_FIELD) -> str:
    """The Lark grammar (llguidance dialect) of JSON text matching ``schema``, as this module writes JSON."""
    if strict:
        schema = _strictify(schema)
    rules = _Rules()
    return rules.grammar(rules.value(schema, field, root=schema))


def _response_format(response_format: Mapping[str, Any] | None) -> ConstraintSpec | None:
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise InvalidInput("response_format must be an object", field="response_format", code="invalid_value")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        grammar = grammar_for_schema({"type": "object"})
        return ConstraintSpec("json_object", grammar)
    if kind != "json_schema":
        raise InvalidInput(
            f"unknown response_format type {kind!r}; expected text, json_object or json_schema",
            field="response_format.type",
            code="invalid_value",
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        raise InvalidInput(
            "response_format json_schema needs a json_schema object",
            field="response_format.json_schema",
            code="invalid_value",
        )
    schema = spec.get("schema", {})  # OpenAI: absent means any JSON
    strict = spec.get("strict") is True
    if not isinstance(schema, Mapping):
        raise InvalidInput("the schema must be a JSON object", field=SCHEMA_FIELD, code="invalid_value")
    check_has_finite_instance(schema, SCHEMA_FIELD)
    grammar = grammar_for_schema(schema, strict=strict)
    _check(grammar, SCHEMA_FIELD)
    name = spec.get("name")
    return ConstraintSpec("json_schema", grammar, schema_name=name if isinstance(name, str) else None)


def _offered_tools(
    tools: Sequence[Mapping[str, Any]] | None, functions: Sequence[Mapping[str, Any]] | None
) -> dict[str, tuple[Mapping[str, Any], str]]:
    """name → (function definition, where it was given); the first definition of a name wins."""
    offered: dict[str, tuple[Mapping[str, Any], str]] = {}
    for i, tool in enumerate(tools or ()):
        fn = tool.get("function") if isinstance(tool, Mapping) and "function" in tool else tool
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            offered.setdefault(fn["name"], (fn, f"tools[{i}].function"))
    for i, fn in enumerate(functions or ()):
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            offered.setdefault(fn["name"], (fn, f"functions[{i}]"))
    return offered


def _named_choice(choice: Any, offered: Mapping[str, Any]) -> str:
    fn = choice.get("function") if isinstance(choice, Mapping) else None
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(choice, Mapping) or choice.get("type", "function") != "function" or not isinstance(name, str):
        raise InvalidInput(
            'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": …}}',
            field="tool_choice",
            code="invalid_value",
        )
    if name not in offered:
        raise InvalidInput(
            f"tool_choice names {name!r}, which is not among the tools", field="tool_choice", code="invalid_value"
        )
    return name


def _named_function_call(call: Any, offered: Mapping[str, Any]) -> str:
    name = call.get("name") if isinstance(call, Mapping) else None
    if not isinstance(name, str):
        raise InvalidInput(
            'function_call must be "none", "auto" or {"name": …}', field="function_call", code="invalid_value"
        )
    if name not in offered:
        raise InvalidInput(
            f"function_call names {name!r}, which is not among the functions",
            field="function_call",
            code="invalid_value",
        )
    return name


def _parameters(fn: Mapping[str, Any], where: str) -> Any:
    """The schema of a tool's arguments: always an object (``parse_assistant`` takes nothing else)."""
    schema = fn.get("parameters")
    if schema is None:  # OpenAI: a function without parameters is called with {}
        return {"type": "object", "properties": {}, "additionalProperties": False}
    if not isinstance(schema, Mapping):
        raise InvalidInput("parameters must be a JSON schema object", field=f"{where}.parameters", code="invalid_value")
    if "type" not in schema:
        schema = {**schema, "type": "object"}
    elif schema["type"] != "object":
        raise InvalidInput(
            f"parameters must describe an object, got type {schema['type']!r}",
            field=f"{where}.parameters.type",
            code="invalid_value",
        )
    check_has_finite_instance(schema, f"{where}.parameters")
    return _strictify(schema) if fn.get("strict") is True else schema


def _check(grammar: str, field: str) -> None:
    """Let llguidance compile the grammar (no tokenizer needed): a schema it rejects is the caller's error."""
    import llguidance

    error = llguidance.LLMatcher.validate_grammar(grammar)
    if error:
        raise InvalidInput(
            f"the schema cannot be used for constrained decoding: {error}", field=field, code="invalid_value"
        )


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "contains", "if", "then", "else", "propertyNames")


def _strictify(schema: Any) -> Any:
    """OpenAI's ``strict``: every object schema without ``additionalProperties`` gets ``false`` (recursing into
    sub-schemas by keyword, so that a property named ``properties`` is not mistaken for the keyword)."""
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {name: _strictify(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_strictify(sub) for sub in value]
        elif key in _SCHEMA_ONE:
            out[key] = _strictify(value)
        else:
            out[key] = value
    kind = schema.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in schema
    if is_object and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


# -- JSON schema → Lark ----------------------------------------------------------------------------------------

# keywords that do not constrain the text
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "$schema", "deprecated", "readOnly", "writeOnly"}
)
# keywords the converter spells out itself; any other one sends the sub-schema to llguidance's %json
_SPELLED = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", "const"})
_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


def _float_regex() -> str:
    """Floats exactly as Python's ``repr`` (json.dumps) writes them for 1e-4 ≤ |x| < 1e16 with at most 15
    significant digits: every such decimal comes back from ``float`` → ``repr`` unchanged."""
    alts = [r"0\.0", r"0\.0{0,3}[1-9](?:[0-9]{0,13}[1-9])?", r"[1-9][0-9]{0,14}\.0"]
    alts += [rf"[1-9][0-9]{{{d - 1}}}\.(?:[0-9]{{0,{14 - d}}}[1-9])" for d in range(1, 15)]
    return "-?(?:" + "|".join(alts) + ")"


_INTEGER = r"0|-?[1-9][0-9]{0,15}"
_TERMINALS = {
    # json.dumps(ensure_ascii=False): escapes for " and \, short escapes for \b \f \n \r \t, \u00XX for the rest
    "JSON_STRING": r'/"(?:[^"\\\x00-\x1f]|\\["\\bfnrt]|\\u00(?:0[0-7bef]|1[0-9a-f]))*"/',
    "JSON_INTEGER": f"/{_INTEGER}/",
    "JSON_NUMBER": f"/{_INTEGER}|{_float_regex()}/",
}


def _lit(text: str) -> str:
    """A Lark string literal for ``text``."""
    return json.dumps(text, ensure_ascii=False)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=TOOL_CALL_JSON_SEPARATORS)


def _has_ref(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        return "$ref" in schema or "$dynamicRef" in schema or any(_has_ref(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_ref(v) for v in schema)
    return False


def _type_matches(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


class _Rules:
    """Collects the Lark rules of one grammar (one rule per sub-schema; terminals shared)."""

    def __init__(self) -> None:
        self.rules: list[str] = []
        self.terminals: set[str] = set()

    def add(self, body: str) -> str:
        name = f"r{len(self.rules)}"
        self.rules.append(f"{name}: {body}")
        return name

    def terminal(self, name: str) -> str:
        self.terminals.add(name)
        return name

    def grammar(self, start: str) -> str:
        lines = [f"start: {start}", *self.rules]
        lines += [f"{name}: {_TERMINALS[name]}" for name in sorted(self.terminals)]
        return "\n".join(lines) + "\n"

    def fallback(self, schema: Any) -> str:
        """llguidance's own JSON-schema compiler for this sub-schema."""
        body = dict(schema) if isinstance(schema, Mapping) else {} if schema is True else {"not": {}}
        body["x-guidance"] = X_GUIDANCE
        return self.add(f"%json {json.dumps(body, ensure_ascii=False)}")

    def value(self, schema: Any, where: str, *, root: Any) -> str:
        if schema is root and _has_ref(schema):
            return self.fallback(schema)  # $ref points into the root: keep the schema whole
        if schema is True:
            return self.fallback({})
        if not isinstance(schema, Mapping):
            raise InvalidInput(
                f"a JSON schema must be an object, got {type(schema).__name__}", field=where, code="invalid_value"
            )
        keys = set(schema) - _ANNOTATIONS
        if not keys or keys - _SPELLED:
            return self.fallback(schema)
        kinds = schema.get("type")
        if kinds is None:
            kinds = list(_TYPES)
        elif isinstance(kinds, str):
            kinds = [kinds]
        if not isinstance(kinds, list) or not kinds or any(k not in _TYPES for k in kinds):
            raise InvalidInput(f"unknown type {schema.get('type')!r}", field=f"{where}.type", code="invalid_value")
        if "const" in schema or "enum" in schema:
            values = [schema["const"]] if "const" in schema else schema["enum"]
            if not isinstance(values, list):
                raise InvalidInput("enum must be an array", field=f"{where}.enum", code="invalid_value")
            allowed = [v for v in values if any(_type_matches(v, k) for k in kinds)]
            if not allowed:
                raise InvalidInput(
                    "no value of enum/const matches the schema's type", field=f"{where}.enum", code="invalid_value"
                )
            texts = dict.fromkeys(_json_text(v) for v in allowed)  # dedupe, keep order
            return self.add(" | ".join(_lit(t) for t in texts))
        if "type" not in schema:
            if "properties" in schema or "additionalProperties" in schema or "required" in schema:
                kinds = ["object"]
            elif "items" in schema:
                kinds = ["array"]
            else:
                return self.fallback(schema)
        alts = [self._typed(kind, schema, where, root) for kind in dict.fromkeys(kinds)]
        return alts[0] if len(alts) == 1 else self.add(" | ".join(alts))

    def _typed(self, kind: str, schema: Mapping[str, Any], where: str, root: Any) -> str:
        if kind == "string":
            return self.terminal("JSON_STRING")
        if kind == "integer":
            return self.terminal("JSON_INTEGER")
        if kind == "number":
            return self.terminal("JSON_NUMBER")
        if kind == "boolean":
            return self.add('"true" | "false"')
        if kind == "null":
            return self.add('"null"')
        if kind == "array":
            items = schema.get("items")
            if items is None:
                return self.fallback({"type": "array"})
            item = self.value(items, f"{where}.items", root=root)
            return self.add(f'"[" ({item} ({_lit(ITEM_SEP)} {item})*)? "]"')
        return self._object(schema, where, root)

    def _object(self, schema: Mapping[str, Any], where: str, root: Any) -> str:
        props = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(props, Mapping):
            raise InvalidInput("properties must be an object", field=f"{where}.properties", code="invalid_value")
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise InvalidInput("required must be an array of names", field=f"{where}.required", code="invalid_value")
        extra = schema.get("additionalProperties", True)
        if set(required) - set(props) or (not props and extra is not False):
            # a key only in required, or a map-like object: llguidance's compiler handles these
            return self.fallback({**schema, "type": "object"})
        names = list(props)
        if not names:
            return self.add('"{}"')
        kv = [
            self.add(f"{_lit(_json_text(n) + KEY_SEP)} {self.value(props[n], f'{where}.properties.{n}', root=root)}")
            for n in names
        ]
        needed = [n in required for n in names]
        sep = _lit(ITEM_SEP)

        def rest(k: int) -> str:  # properties k… after at least one was written
            return " ".join(f"{sep} {kv[i]}" if needed[i] else f"({sep} {kv[i]})?" for i in range(k, len(names)))

        def first(k: int) -> str:  # the first property written is at index ≥ k
            own = f"{kv[k]} {rest(k + 1)}".strip()
            if needed[k] or k + 1 == len(names):
                return self.add(own)
            return self.add(f"{own} | {first(k + 1)}")

        body = first(0)
        return self.add(f'"{{" {body} "}}"' if any(needed) else f'"{{" ({body})? "}}"')
