"""Compile a parsed LangSmith filter (``filter_lang``) into a SQLAlchemy Core boolean clause over ``runs``.

Nothing is evaluated in Python over rows: every function becomes SQL that runs the same on SQLite and
PostgreSQL. Tags, metadata and feedback become correlated ``EXISTS`` sub-queries on their side tables,
always matching ``workspace_id`` as well as the run id.

Semantics worth knowing:
- comparisons never yield SQL NULL: ``eq(name, "a")`` is false (not unknown) for a run without a name, so
  ``not(...)`` is the plain complement; ``neq(name, "a")`` matches runs whose name is set and differs;
- inside one ``and(...)``, all ``feedback_*`` comparisons apply to the SAME feedback row, and all
  ``metadata_key``/``metadata_value`` comparisons to the same metadata row (nested ``and`` is flattened);
- a ``FeedbackWindow`` (v2's ``min/max_feedback_modified_at``) bounds the ``modified_at`` of every feedback row
  a ``feedback_*`` condition matches, and records that one did;
- ``latency`` is in seconds; ``start_time``/``end_time``/``first_token_time`` take ISO-8601 strings
  (naive means UTC); ``metadata_value``/``feedback_value`` compare as canonical JSON text, so
  ``eq(metadata_value, 1)`` and ``eq(metadata_value, "1")`` are different values.
"""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, FromClause, Text, and_, cast, exists, false, func, not_, or_, true

from tracetune.errors import InvalidInput
from tracetune.query.filter_lang import Call, Ident, ListLit, Literal, Node, describe_node, parse_filter
from tracetune.store import schema
from tracetune.store.jsonvalues import canonical_json
from tracetune.timeutil import time_to_us

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_ORDERED = frozenset({"gt", "gte", "lt", "lte"})
_STATUSES = ("success", "error", "pending")


@dataclass
class FeedbackWindow:
    """Bounds on the ``modified_at`` of the feedback rows that ``feedback_*`` conditions match (inclusive lower,
    exclusive upper, as LangSmith's v2 API has them). ``used`` turns true once a condition applied it."""

    min_modified: datetime | None = None
    max_modified: datetime | None = None
    used: bool = False


@dataclass(frozen=True)
class _Scalar:
    """A field that is one value per row: ``kind`` says which literals it takes and which operators apply."""

    kind: str  # "uuid" | "string" | "number" | "time" | "json" | "latency"
    column: str  # column of the row's table (runs, feedback or run_metadata)


_RUN_SCALARS = {
    "id": _Scalar("uuid", "id"),
    "trace_id": _Scalar("uuid", "trace_id"),
    "parent_run_id": _Scalar("uuid", "parent_run_id"),
    "run_type": _Scalar("string", "run_type"),
    "name": _Scalar("string", "name"),
    "thread_id": _Scalar("string", "thread_id"),
    "total_tokens": _Scalar("number", "total_tokens"),
    "prompt_tokens": _Scalar("number", "prompt_tokens"),
    "completion_tokens": _Scalar("number", "completion_tokens"),
    "start_time": _Scalar("time", "start_us"),
    "end_time": _Scalar("time", "end_us"),
    "first_token_time": _Scalar("time", "first_token_us"),
    "latency": _Scalar("latency", "end_us"),  # seconds; compiled as end_us - start_us
}
_FEEDBACK_FIELDS = {
    "feedback_key": _Scalar("string", "key"),
    "feedback_score": _Scalar("number", "score"),
    "feedback_value": _Scalar("json", "value"),
}
_METADATA_FIELDS = {
    "metadata_key": _Scalar("string", "key"),
    "metadata_value": _Scalar("json", "value"),
}
_SPECIAL_FIELDS = ("status", "error", "tags", "metadata", "inputs", "outputs")
KNOWN_FIELDS = tuple(_RUN_SCALARS) + _SPECIAL_FIELDS + tuple(_FEEDBACK_FIELDS) + tuple(_METADATA_FIELDS)


def like_pattern(text: str) -> str:
    """``%text%`` with ``\\``, ``%`` and ``_`` escaped (use with ``escape="\\\\"``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _contains(expr: Any, text: str) -> ColumnElement[bool]:
    """Case-insensitive substring match that is false (never NULL) when ``expr`` is NULL."""
    return and_(expr.is_not(None), func.lower(expr).like(func.lower(like_pattern(text)), escape="\\"))


class _Compiler:
    def __init__(self, runs: FromClause, param: str, window: FeedbackWindow | None = None) -> None:
        self.runs = runs
        self.param = param
        self.window = window

    def error(self, message: str, node: Node) -> InvalidInput:
        return InvalidInput(f"{message} at position {node.pos}", field=self.param, position=node.pos)

    # -- boolean structure -------------------------------------------------------------------------------

    def compile(self, node: Node) -> ColumnElement[bool]:
        if not isinstance(node, Call):  # the parser only lets calls through here
            raise self.error(f"expected a condition but found {describe_node(node)}", node)
        if node.name == "and":
            return self.compile_and(node)
        if node.name == "or":
            return or_(*(self.compile(arg) for arg in node.args))
        if node.name == "not":
            return not_(self.compile(node.args[0]))
        if node.name == "search" and len(node.args) == 1:
            return self.search_everywhere(node.args[0])
        field = node.args[0]
        assert isinstance(field, Ident)
        if field.name in _FEEDBACK_FIELDS or field.name in _METADATA_FIELDS:
            return self.side_row_exists([node])
        if field.name in _RUN_SCALARS:
            spec = _RUN_SCALARS[field.name]
            expr: ColumnElement[Any] = self.runs.c[spec.column]
            if spec.kind == "latency":  # compared in microseconds: exact, and NULL while running
                expr = self.runs.c.end_us - self.runs.c.start_us
            return self.scalar_condition(node, spec.kind, expr)
        if field.name in _SPECIAL_FIELDS:
            handler: Callable[[Call], ColumnElement[bool]] = getattr(self, f"field_{field.name}")
            return handler(node)
        raise self.error(f"unknown field {field.name!r}; expected one of {', '.join(KNOWN_FIELDS)}", field)

    def compile_and(self, node: Call) -> ColumnElement[bool]:
        """``and``: flattened; feedback_* (and metadata_key/value) comparisons grouped onto one side row."""
        flat: list[Call] = []
        pending: list[Node] = list(node.args)
        while pending:
            arg = pending.pop(0)
            assert isinstance(arg, Call)
            if arg.name == "and":
                pending[:0] = arg.args
            else:
                flat.append(arg)
        groups: dict[str, list[Call]] = {"feedback": [], "metadata": []}
        parts: list[ColumnElement[bool]] = []
        for call in flat:
            group = _side_group(call)
            if group is None:
                parts.append(self.compile(call))
            else:
                groups[group].append(call)
        parts.extend(self.side_row_exists(calls) for calls in groups.values() if calls)
        return and_(*parts)

    # -- scalar fields -------------------------------------------------------------------------------------

    def scalar_condition(self, call: Call, kind: str, expr: Any) -> ColumnElement[bool]:
        field = call.args[0]
        assert isinstance(field, Ident)
        if call.name == "exists":
            if len(call.args) == 2:
                raise self.error(f"exists() takes a key only for metadata, not for {field.name!r}", call)
            return expr.is_not(None)
        if call.name == "search":
            if kind != "string":
                raise self.error(f"search() does not apply to field {field.name!r}", call)
            return _contains(expr, self.text_value(call.args[1], field.name))
        if call.name == "in":
            lst = call.args[1]
            assert isinstance(lst, ListLit)
            return or_(false(), *(self.compare("eq", field, kind, expr, item) for item in lst.items))
        if call.name not in _COMPARE:
            raise self.error(f"{call.name}() does not apply to field {field.name!r}", call)
        value = call.args[1]
        assert isinstance(value, Literal)
        if call.name in _ORDERED and kind not in ("number", "time", "latency"):
            raise self.error(f"{call.name}() cannot order field {field.name!r} ({kind}); use eq, neq or in", call)
        return self.compare(call.name, field, kind, expr, value)

    def compare(self, op: str, field: Ident, kind: str, expr: Any, lit: Literal) -> ColumnElement[bool]:
        if lit.value is None:
            if op not in ("eq", "neq"):
                raise self.error(f"{op}() cannot compare with null", lit)
            if kind == "json":  # a JSON null may be stored as SQL NULL or as the text 'null'
                is_null = or_(expr.is_(None), expr == "null")
                return is_null if op == "eq" else not_(is_null)
            return expr.is_(None) if op == "eq" else expr.is_not(None)
        value = self.convert(field, kind, lit)
        return and_(expr.is_not(None), _COMPARE[op](expr, value))

    def convert(self, field: Ident, kind: str, lit: Literal) -> Any:
        """The literal as the value stored for ``kind`` (UUID, str, number, microseconds, JSON text)."""
        value = lit.value
        if kind == "json":
            return canonical_json(value)
        if kind in ("number", "latency"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.error(f"field {field.name!r} takes a number, not {describe_node(lit)}", lit)
            value = value * 1_000_000 if kind == "latency" else value
            if isinstance(value, int) and not -(2**63) <= value < 2**63:  # what both databases can compare
                raise self.error(f"field {field.name!r} takes a number in the 64-bit range", lit)
            return value
        text = self.text_value(lit, field.name)
        if kind == "uuid":
            try:
                return uuid.UUID(text)
            except ValueError:
                raise self.error(f"field {field.name!r} takes a UUID, not {text!r}", lit) from None
        if kind == "time":
            return self.microseconds(text, field.name, lit)
        return text

    def text_value(self, node: Node, field_name: str) -> str:
        if not (isinstance(node, Literal) and isinstance(node.value, str)):
            raise self.error(f"field {field_name!r} takes a string, not {describe_node(node)}", node)
        return node.value

    def microseconds(self, text: str, field_name: str, lit: Literal) -> int:
        try:
            return time_to_us(text, field_name)
        except InvalidInput:
            raise self.error(
                f"field {field_name!r} takes an ISO-8601 time such as 2026-11-01T00:00:00Z, not {text!r}", lit
            ) from None

    # -- computed and side-table fields ------------------------------------------------------------------

    def field_status(self, call: Call) -> ColumnElement[bool]:
        c = self.runs.c
        predicates: dict[str, ColumnElement[bool]] = {
            "error": c.error.is_not(None),
            "success": and_(c.error.is_(None), c.end_us.is_not(None)),
            "pending": and_(c.error.is_(None), c.end_us.is_(None)),
        }

        def status_is(lit: Literal) -> ColumnElement[bool]:
            if lit.value not in _STATUSES:
                raise self.error(f"status is one of {', '.join(_STATUSES)}, not {describe_node(lit)}", lit)
            return predicates[str(lit.value)]

        if call.name == "exists" and len(call.args) == 1:
            return true()
        if call.name == "in":
            lst = call.args[1]
            assert isinstance(lst, ListLit)
            return or_(false(), *(status_is(item) for item in lst.items))
        if call.name in ("eq", "neq"):
            lit = call.args[1]
            assert isinstance(lit, Literal)
            return status_is(lit) if call.name == "eq" else not_(status_is(lit))
        raise self.error(f"{call.name}() does not apply to field 'status'; use eq, neq or in", call)

    def field_error(self, call: Call) -> ColumnElement[bool]:
        """``error``: text; also ``eq(error, true|false)`` for has / has not an error."""
        value = call.args[1] if len(call.args) == 2 else None
        if call.name in ("eq", "neq") and isinstance(value, Literal) and isinstance(value.value, bool):
            has_error = self.runs.c.error.is_not(None)
            return has_error if value.value == (call.name == "eq") else not_(has_error)
        return self.scalar_condition(call, "string", self.runs.c.error)

    def field_inputs(self, call: Call) -> ColumnElement[bool]:
        return self.json_text_field(call, "inputs")

    def field_outputs(self, call: Call) -> ColumnElement[bool]:
        return self.json_text_field(call, "outputs")

    def json_text_field(self, call: Call, column: str) -> ColumnElement[bool]:
        if call.name == "search":
            return _contains(cast(self.runs.c[column], Text), self.text_value(call.args[1], column))
        if call.name == "exists" and len(call.args) == 1:
            return self.runs.c[column].is_not(None)
        raise self.error(f"{call.name}() does not apply to field {column!r}; use search", call)

    def field_tags(self, call: Call) -> ColumnElement[bool]:
        rt = schema.run_tags.alias()

        def tag_exists(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
            return exists().where(
                rt.c.workspace_id == self.runs.c.workspace_id, rt.c.run_id == self.runs.c.id, *conditions
            )

        if call.name == "exists" and len(call.args) == 1:
            return tag_exists()
        if call.name == "in":
            lst = call.args[1]
            assert isinstance(lst, ListLit)
            return tag_exists(rt.c.tag.in_([self.text_value(item, "tags") for item in lst.items]))
        if call.name == "search":
            return tag_exists(_contains(rt.c.tag, self.text_value(call.args[1], "tags")))
        if call.name in ("has", "eq", "neq"):
            found = tag_exists(rt.c.tag == self.text_value(call.args[1], "tags"))
            return not_(found) if call.name == "neq" else found
        raise self.error(f"{call.name}() does not apply to field 'tags'; use has, eq, neq, in or search", call)

    def field_metadata(self, call: Call) -> ColumnElement[bool]:
        md = schema.run_metadata.alias()

        def row_exists(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
            return exists().where(
                md.c.workspace_id == self.runs.c.workspace_id, md.c.run_id == self.runs.c.id, *conditions
            )

        if call.name == "exists":
            if len(call.args) == 1:
                return row_exists()
            return row_exists(md.c.key == self.text_value(call.args[1], "metadata"))
        if call.name != "has":
            raise self.error(f"{call.name}() does not apply to field 'metadata'; use has or exists", call)
        lit = call.args[1]
        text = self.text_value(lit, "metadata")
        try:
            wanted = json.loads(text)
        except ValueError:
            wanted = None
        if not isinstance(wanted, dict):
            raise self.error(f'has(metadata, …) takes a JSON object such as \'{{"user": "u1"}}\', not {text!r}', lit)
        return and_(
            true(),
            *(row_exists(md.c.key == str(k), md.c.value == canonical_json(v)) for k, v in wanted.items()),
        )

    def side_row_exists(self, calls: Sequence[Call]) -> ColumnElement[bool]:
        """EXISTS one feedback (or metadata) row of this run that satisfies every call in ``calls``."""
        first = calls[0].args[0]
        assert isinstance(first, Ident)
        if first.name in _FEEDBACK_FIELDS:
            table, fields, run_column = schema.feedback.alias(), _FEEDBACK_FIELDS, "run_id"
        else:
            table, fields, run_column = schema.run_metadata.alias(), _METADATA_FIELDS, "run_id"
        conditions = []
        for call in calls:
            field = call.args[0]
            assert isinstance(field, Ident)
            spec = fields[field.name]
            expr: Any = table.c[spec.column]
            if isinstance(expr.type, JSON):  # feedback.value: compare its JSON text
                expr = cast(expr, Text)
            conditions.append(self.scalar_condition(call, spec.kind, expr))
        if self.window is not None and first.name in _FEEDBACK_FIELDS:
            self.window.used = True
            if self.window.min_modified is not None:
                conditions.append(table.c.modified_at >= self.window.min_modified)
            if self.window.max_modified is not None:
                conditions.append(table.c.modified_at < self.window.max_modified)
        return exists().where(
            table.c.workspace_id == self.runs.c.workspace_id,
            table.c[run_column] == self.runs.c.id,
            *conditions,
        )

    def search_everywhere(self, text_node: Node) -> ColumnElement[bool]:
        """``search(text)``: substring, any case, of the name, the error, or the inputs' or outputs' JSON."""
        if not (isinstance(text_node, Literal) and isinstance(text_node.value, str)):
            raise self.error(f"search() takes a string, not {describe_node(text_node)}", text_node)
        text = text_node.value
        c = self.runs.c
        return or_(
            _contains(c.name, text),
            _contains(c.error, text),
            _contains(cast(c.inputs, Text), text),
            _contains(cast(c.outputs, Text), text),
        )


def _side_group(call: Call) -> str | None:
    """Which side row a call inside ``and`` is grouped on: "feedback", "metadata" or None (not grouped)."""
    if call.name in ("and", "or", "not") or not call.args or not isinstance(call.args[0], Ident):
        return None
    name = call.args[0].name
    if name in _FEEDBACK_FIELDS:
        return "feedback"
    if name in _METADATA_FIELDS:
        return "metadata"
    return None


def compile_filter(
    node: Node, runs: FromClause, *, param: str = "filter", window: FeedbackWindow | None = None
) -> ColumnElement[bool]:
    """The WHERE clause over ``runs`` (the ``runs`` table or an alias of it) that ``node`` means."""
    return _Compiler(runs, param, window).compile(node)


def filter_clause(
    text: str | None, runs: FromClause, *, param: str = "filter", window: FeedbackWindow | None = None
) -> ColumnElement[bool]:
    """``filter``: the clause for a filter string; a missing or blank filter matches every run."""
    if text is None or not text.strip():
        return true()
    return compile_filter(parse_filter(text, param=param), runs, param=param, window=window)


def check_filter(text: str | None, *, param: str = "filter") -> None:
    """The filter language's ``InvalidInput`` (with ``position``) for a filter that does not parse or names an
    unknown field; None when fine. Compiles the SQL expression only (no query runs)."""
    filter_clause(text, schema.runs, param=param)


def trace_filter_clause(
    text: str | None, runs: FromClause, *, param: str = "trace_filter", window: FeedbackWindow | None = None
) -> ColumnElement[bool]:
    """``trace_filter``: the filter holds for the ROOT run of the row's trace."""
    if text is None or not text.strip():
        return true()
    root = schema.runs.alias()
    condition = compile_filter(parse_filter(text, param=param), root, param=param, window=window)
    return exists().where(root.c.workspace_id == runs.c.workspace_id, root.c.id == runs.c.trace_id, condition)


def tree_filter_clause(
    text: str | None,
    runs: FromClause,
    *,
    param: str = "tree_filter",
    window: FeedbackWindow | None = None,
    include_self: bool = False,
) -> ColumnElement[bool]:
    """``tree_filter``: the filter holds for some OTHER run of the row's trace (v1), or for any run of it, the row
    included (``include_self``: v2's "anywhere in the run tree")."""
    if text is None or not text.strip():
        return true()
    other = schema.runs.alias()
    condition = compile_filter(parse_filter(text, param=param), other, param=param, window=window)
    return exists().where(
        other.c.workspace_id == runs.c.workspace_id,
        other.c.trace_id == runs.c.trace_id,
        true() if include_self else other.c.id != runs.c.id,
        condition,
    )
