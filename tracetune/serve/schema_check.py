"""Pure check of a JSON schema before it constrains decoding: it must have at least one finite instance.

Recursion through ``$ref`` is fine (a tree whose ``children`` list may be empty); a schema whose every value
would be infinite (``{"$ref": "#"}``, a property that requires itself) is not: the grammar then matches no
text at all, and a decoder constrained by it could only stop at once with an empty answer or never stop.
The test is the classic productivity fixpoint of a grammar: a ``$ref`` target counts as producible once its
schema is producible with the targets already found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracetune.errors import InvalidInput

_ANY_OF = ("anyOf", "oneOf")


def check_has_finite_instance(schema: Any, field: str) -> None:
    """400 naming ``field`` when no finite JSON value matches ``schema``."""
    refs = _ref_targets(schema)
    producible: set[str] = set()
    changed = True
    while changed:
        changed = False
        for pointer, target in refs.items():
            if pointer not in producible and _producible(target, producible):
                producible.add(pointer)
                changed = True
    if not _producible(schema, producible):
        raise InvalidInput(
            "the schema has no finite value: every value it allows would contain itself without end "
            "(a $ref cycle with no way out, e.g. a required property that refers back to its own object); "
            "make the recursion optional (an optional property, a list that may be empty, or anyOf with a leaf)",
            field=field,
            code="invalid_value",
        )


def _ref_targets(root: Any) -> dict[str, Any]:
    """Every local ``$ref`` of ``root`` → the sub-schema it points at (unresolvable ones are left out)."""
    found: dict[str, Any] = {}
    stack = [root]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Mapping):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#") and ref not in found:
                target = _resolve(root, ref)
                if target is not None:
                    found[ref] = target
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _resolve(root: Any, ref: str) -> Any:
    node = root
    for raw in ref[1:].split("/")[1:] if ref != "#" else []:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def _producible(schema: Any, refs: set[str]) -> bool:
    """Whether a finite value matches ``schema``, counting the ``$ref`` targets in ``refs`` as producible."""
    if schema is True or not isinstance(schema, Mapping):
        return schema is not False
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#") and ref not in refs:
        return False
    if "const" in schema or "enum" in schema:
        return True
    for key in _ANY_OF:
        options = schema.get(key)
        if isinstance(options, list) and options and not any(_producible(s, refs) for s in options):
            return False
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and not all(_producible(s, refs) for s in all_of):
        return False
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds if isinstance(kinds, list) else None
    if kinds is None and not any(k in schema for k in ("properties", "required", "items", "prefixItems")):
        return True  # any value, or one spelled by keywords this check does not follow
    if kinds is None:
        kinds = ["object" if ("properties" in schema or "required" in schema) else "array"]
    return any(_kind_producible(kind, schema, refs) for kind in kinds)


def _kind_producible(kind: Any, schema: Mapping[str, Any], refs: set[str]) -> bool:
    if kind == "object":
        found = schema.get("properties")
        properties: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        extra = schema.get("additionalProperties", True)
        for name in schema.get("required") or ():
            sub = properties.get(name, extra) if isinstance(name, str) else True
            if not _producible(sub, refs):
                return False
        return True
    if kind == "array":
        given, least = schema.get("prefixItems"), schema.get("minItems")
        prefix: list[Any] = given if isinstance(given, list) else []
        min_items = least if isinstance(least, int) else 0
        if not all(_producible(s, refs) for s in prefix[:min_items]):
            return False
        return min_items <= len(prefix) or _producible(schema.get("items", True), refs)
    return True
