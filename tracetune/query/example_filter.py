"""LangSmith's structured filter over dataset examples (``list_examples(filter=…)``), compiled to a predicate.

The language is the runs' (``tracetune.query.filter_lang``); over examples it has ``and``, ``or``, ``not``,
``has(metadata|inputs|outputs, '{"key": value}')`` (every given key holds that value) and
``exists(metadata|inputs|outputs, "key")``, plus ``eq``/``neq`` on ``id`` and ``in(dataset_split, [...])``-style
split tests with ``has(dataset_split, "name")``. Anything else is an ``InvalidInput`` naming it. The predicate
runs over the example rows of one dataset version (JSON values are matched in Python, on both dialects).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from tracetune.errors import InvalidInput
from tracetune.query.filter_lang import Call, Ident, ListLit, Literal, Node, parse_filter

Predicate = Callable[[Mapping[str, Any]], bool]
_OBJECTS = ("metadata", "inputs", "outputs")
_SPLIT = "dataset_split"


def _bad(message: str, node: Node) -> InvalidInput:
    return InvalidInput(message, field="filter", position=node.pos)


def _field(node: Node) -> str:
    if not isinstance(node, Ident) or node.name not in (*_OBJECTS, _SPLIT, "id"):
        named = node.name if isinstance(node, Ident) else "that"
        raise _bad(f"examples cannot be filtered on {named}: on {', '.join((*_OBJECTS, _SPLIT, 'id'))}", node)
    return node.name


def _object_of(example: Mapping[str, Any], field: str) -> dict[str, Any]:
    value = example.get(field)
    return value if isinstance(value, dict) else {}


def _compile(node: Node) -> Predicate:
    if not isinstance(node, Call):
        raise _bad('expected a condition such as has(metadata, \'{"key": "value"}\')', node)
    name, args = node.name, node.args
    if name in ("and", "or"):
        parts = [_compile(a) for a in args]
        combine = all if name == "and" else any
        return lambda ex: combine(p(ex) for p in parts)
    if name == "not":
        inner = _compile(args[0])
        return lambda ex: not inner(ex)
    if name not in ("has", "exists", "in", "eq", "neq"):
        raise _bad(f"{name}() is not a filter examples support (and, or, not, has, exists, in, eq, neq)", node)
    field = _field(args[0])
    value = args[1].value if len(args) > 1 and isinstance(args[1], Literal) else None
    if name == "has" and field == _SPLIT:
        return lambda ex: value in (ex.get("splits") or ())
    if name == "in" and field == _SPLIT and isinstance(args[1], ListLit):
        wanted = {item.value for item in args[1].items}
        return lambda ex: bool(wanted.intersection(ex.get("splits") or ()))
    if name in ("eq", "neq") and field == "id":
        same: Predicate = lambda ex: str(ex.get("id")) == str(value)  # noqa: E731
        return same if name == "eq" else (lambda ex: not same(ex))
    if name == "has" and field in _OBJECTS:
        try:
            subset = json.loads(value) if isinstance(value, str) else None
        except ValueError:
            subset = None
        if not isinstance(subset, dict):
            raise _bad(f"has({field}, …) takes a JSON object of key/value pairs, as a string", args[1])
        return lambda ex: all(_object_of(ex, field).get(k, _MISSING) == v for k, v in subset.items())
    if name == "exists" and field in _OBJECTS and isinstance(value, str):
        return lambda ex: value in _object_of(ex, field)
    raise _bad(f"{name}({field}, …) is not a filter examples support", node)


_MISSING = object()


def example_predicate(text: str) -> Predicate:
    """The predicate ``text`` means over an example row (``metadata``, ``inputs``, ``outputs``, ``splits``, ``id``)."""
    return _compile(parse_filter(text))
