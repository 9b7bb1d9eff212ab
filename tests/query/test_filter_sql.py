"""The filter compiler against real databases: which runs each filter returns, on SQLite and PostgreSQL.

One small world is seeded once per dialect (module scope), then ~70 filters are table-driven against it.

Workspace W1 holds two traces:
  T1  r1 chain "Agent" (root, 3 s, tags prod+v1, metadata user=u1 env=prod, thread th1)
      ├─ r2 llm "ChatOpenAI" (1.2 s, 100 tokens, first token, tags prod, metadata user=u1 model={name: gpt},
      │      feedback user_score=1 and correctness=0, thread th1)
      ├─ r3 tool "search_tool" (0.5 s, error "Timeout while calling API", metadata attempt=2)
      └─ r4 llm "ChatOpenAI" (pending)
  T2  r5 chain "Agent" (root, 10 s, tags dev, metadata user=u2, feedback user_score=0 and correctness=1)
      ├─ r6 llm "ChatAnthropic" (exactly 2.5 s, 11 tokens, feedback user_score=1 value "good")
      ├─ r7 retriever "Retriever" (error "Rate_limit 100% exceeded", tags dev+rag)
      └─ r8 prompt with no name (1 ms)
Workspace W2 holds x1, whose id equals r1's and which has everything W1 must never see: tag "leak",
metadata leak=true, feedback leak_key, name "Leaky", and a child x2 whose id equals r4's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.engine import make_url

from tracetune.errors import InvalidInput
from tracetune.query.filter_sql import filter_clause, trace_filter_clause, tree_filter_clause
from tracetune.store.engine import create_store_engine, upgrade_to_head
from tracetune.store.jsonvalues import canonical_json
from tracetune.store.schema import feedback, run_metadata, run_tags, runs

W1, W2 = uuid.UUID(int=0xA1), uuid.UUID(int=0xA2)
IDS = {f"r{i}": uuid.UUID(int=0x100 + i) for i in range(1, 9)}
NAMES = {v: k for k, v in IDS.items()}
T1, T2 = IDS["r1"], IDS["r5"]
DAY1 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def run_row(
    key: str,
    *,
    ws: uuid.UUID = W1,
    run_id: uuid.UUID | None = None,
    trace: uuid.UUID,
    parent: str | None,
    start: datetime,
    seconds: float | None,
    **extra: Any,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "workspace_id": ws,
        "id": run_id or IDS[key],
        "trace_id": trace,
        "parent_run_id": IDS[parent] if parent else None,
        "start_us": us(start),
        "end_us": None if seconds is None else us(start) + round(seconds * 1_000_000),
        "name": None, "run_type": None, "error": None, "inputs": None, "outputs": None,
        "first_token_us": None, "thread_id": None,
        "total_tokens": None, "prompt_tokens": None, "completion_tokens": None,
    }  # fmt: skip
    row.update(extra)
    return row


RUNS = [
    run_row("r1", trace=T1, parent=None, start=DAY1, seconds=3.0, name="Agent", run_type="chain",
            thread_id="th1", inputs={"question": "Capital of Paris_France?"}, outputs={"answer": "?"}),
    run_row("r2", trace=T1, parent="r1", start=DAY1 + timedelta(seconds=1), seconds=1.2, name="ChatOpenAI",
            run_type="llm", thread_id="th1", total_tokens=100, prompt_tokens=80, completion_tokens=20,
            first_token_us=us(DAY1) + 1_100_000, inputs={"messages": ["hi"]},
            outputs={"text": "The capital is Paris"}),
    run_row("r3", trace=T1, parent="r1", start=DAY1 + timedelta(seconds=1), seconds=0.5, name="search_tool",
            run_type="tool", error="Timeout while calling API"),
    run_row("r4", trace=T1, parent="r1", start=DAY1 + timedelta(seconds=2), seconds=None, name="ChatOpenAI",
            run_type="llm"),
    run_row("r5", trace=T2, parent=None, start=DAY2, seconds=10.0, name="Agent", run_type="chain",
            inputs={"question": "weather?"}),
    run_row("r6", trace=T2, parent="r5", start=DAY2 + timedelta(seconds=1), seconds=2.5, name="ChatAnthropic",
            run_type="llm", total_tokens=11, prompt_tokens=10, completion_tokens=1),
    run_row("r7", trace=T2, parent="r5", start=DAY2 + timedelta(seconds=4), seconds=0.2, name="Retriever",
            run_type="retriever", error="Rate_limit 100% exceeded"),
    run_row("r8", trace=T2, parent="r5", start=DAY2 + timedelta(seconds=5), seconds=0.001, run_type="prompt"),
    run_row("x1", ws=W2, run_id=IDS["r1"], trace=T1, parent=None, start=DAY1, seconds=9.0, name="Leaky",
            run_type="llm", error="leak", total_tokens=5),
    run_row("x2", ws=W2, run_id=IDS["r4"], trace=T1, parent="r1", start=DAY1, seconds=1.0, name="Leaky child",
            run_type="llm"),
]  # fmt: skip
TAGS = {("r1", W1): ["prod", "v1"], ("r2", W1): ["prod"], ("r5", W1): ["dev"], ("r7", W1): ["dev", "rag"],
        ("r1", W2): ["leak", "prod"], ("r4", W2): ["leak"]}  # fmt: skip
METADATA = {
    ("r1", W1): {"user": "u1", "env": "prod"},
    ("r2", W1): {"user": "u1", "model": {"name": "gpt", "temperature": 0.5}},
    ("r3", W1): {"attempt": 2},
    ("r5", W1): {"user": "u2"},
    ("r1", W2): {"leak": True, "user": "u1"},
}
FEEDBACK = [  # (run, workspace, key, score, value)
    ("r2", W1, "user_score", 1, None),
    ("r2", W1, "correctness", 0, None),
    ("r5", W1, "user_score", 0, None),
    ("r5", W1, "correctness", 1, None),
    ("r6", W1, "user_score", 1, "good"),
    ("r1", W2, "leak_key", 1, "good"),
    ("r4", W2, "user_score", 1, None),
]


def _seed(engine: Engine) -> None:
    now = datetime(2026, 11, 3, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(runs), RUNS)
        conn.execute(
            insert(run_tags),
            [{"workspace_id": ws, "run_id": IDS[r], "tag": t} for (r, ws), tags in TAGS.items() for t in tags],
        )
        conn.execute(
            insert(run_metadata),
            [
                {"workspace_id": ws, "run_id": IDS[r], "key": k, "value": canonical_json(v)}
                for (r, ws), meta in METADATA.items()
                for k, v in meta.items()
            ],
        )
        conn.execute(
            insert(feedback),
            [
                {
                    "id": uuid.uuid4(),
                    "workspace_id": ws,
                    "run_id": IDS[r],
                    "trace_id": None,
                    "key": key,
                    "score": score,
                    "value": value,
                    "created_at": now,
                    "modified_at": now,
                }
                for r, ws, key, score, value in FEEDBACK
            ],
        )


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One seeded database per dialect for the whole module (the filters only read)."""
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path_factory.mktemp('filters') / 'tracetune.db'}", None
    else:
        admin_url = request.getfixturevalue("postgres_admin_url")
        name = f"tt_filters_{uuid.uuid4().hex[:8]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    eng = create_store_engine(url)
    try:
        upgrade_to_head(eng)
        _seed(eng)
        yield eng
    finally:
        eng.dispose()
        if drop:
            with admin.connect() as conn:
                conn.execute(text(drop))
            admin.dispose()


def matching(engine: Engine, clause: Any, ws: uuid.UUID = W1) -> set[str]:
    with engine.connect() as conn:
        found = conn.execute(select(runs.c.id).where(runs.c.workspace_id == ws, clause)).scalars().all()
    assert len(found) == len(set(found)), "a filter must never duplicate rows"
    return {NAMES[i] for i in found}


ALL = {f"r{i}" for i in range(1, 9)}
S = str.split  # S("r1 r2") == ["r1", "r2"]

FILTERS = [
    # plain columns
    ('eq(run_type, "llm")', "r2 r4 r6"),
    ('and(eq(run_type, "llm"), eq(name, "ChatOpenAI"))', "r2 r4"),
    ('in(run_type, ["llm", "chain"])', "r1 r2 r4 r5 r6"),
    ('in(run_type, ["llm", null])', "r2 r4 r6"),
    ("in(run_type, [])", ""),
    ('neq(name, "ChatOpenAI")', "r1 r3 r5 r6 r7"),  # r8 has no name: neq never matches NULL
    ('not(eq(name, "ChatOpenAI"))', "r1 r3 r5 r6 r7 r8"),  # ...but not() is the plain complement
    ("eq(name, null)", "r8"),
    ("exists(name)", "r1 r2 r3 r4 r5 r6 r7"),
    ('eq(thread_id, "th1")', "r1 r2"),
    ('search(name, "chat")', "r2 r4 r6"),
    ('or(eq(name, "Retriever"), eq(run_type, "tool"))', "r3 r7"),
    ('not(or(eq(run_type, "llm"), eq(run_type, "chain")))', "r3 r7 r8"),
    # ids
    ('eq(id, "{r3}")', "r3"),
    ('in(id, ["{r1}", "{r6}"])', "r1 r6"),
    ('neq(id, "{r3}")', "r1 r2 r4 r5 r6 r7 r8"),
    ('eq(trace_id, "{r5}")', "r5 r6 r7 r8"),
    ("eq(parent_run_id, null)", "r1 r5"),
    ("neq(parent_run_id, null)", "r2 r3 r4 r6 r7 r8"),
    ('eq(parent_run_id, "{r1}")', "r2 r3 r4"),
    # status and error
    ('eq(status, "error")', "r3 r7"),
    ('eq(status, "success")', "r1 r2 r5 r6 r8"),
    ('eq(status, "pending")', "r4"),
    ('neq(status, "success")', "r3 r4 r7"),
    ('not(eq(status, "error"))', "r1 r2 r4 r5 r6 r8"),
    ('in(status, ["error", "pending"])', "r3 r4 r7"),
    ("neq(error, null)", "r3 r7"),
    ("eq(error, null)", "r1 r2 r4 r5 r6 r8"),
    ("eq(error, true)", "r3 r7"),
    ("eq(error, false)", "r1 r2 r4 r5 r6 r8"),
    ("neq(error, true)", "r1 r2 r4 r5 r6 r8"),
    ('eq(error, "Timeout while calling API")', "r3"),
    ('search(error, "TIMEOUT")', "r3"),
    ('search(error, "_")', "r7"),  # LIKE wildcards are escaped: "_" is a literal underscore...
    ('search(error, "%")', "r7"),  # ...and so is "%"
    ('search(error, "0% e")', "r7"),
    # tags
    ('has(tags, "prod")', "r1 r2"),
    ('eq(tags, "dev")', "r5 r7"),
    ('neq(tags, "prod")', "r3 r4 r5 r6 r7 r8"),
    ('in(tags, ["v1", "rag"])', "r1 r7"),
    ("exists(tags)", "r1 r2 r5 r7"),
    ('search(tags, "RA")', "r7"),
    ('and(has(tags, "dev"), has(tags, "rag"))', "r7"),
    # metadata
    ('has(metadata, \'{{"user": "u1"}}\')', "r1 r2"),
    ('has(metadata, \'{{"env": "prod", "user": "u1"}}\')', "r1"),
    ('has(metadata, \'{{"model": {{"temperature": 0.5, "name": "gpt"}}}}\')', "r2"),
    ("has(metadata, '{{\"attempt\": 2}}')", "r3"),
    ('has(metadata, \'{{"attempt": "2"}}\')', ""),
    ('exists(metadata, "user")', "r1 r2 r5"),
    ("exists(metadata)", "r1 r2 r3 r5"),
    ('not(exists(metadata, "user"))', "r3 r4 r6 r7 r8"),
    ('and(eq(metadata_key, "user"), eq(metadata_value, "u1"))', "r1 r2"),
    ('and(eq(metadata_key, "env"), eq(metadata_value, "u1"))', ""),  # same row: r1's env is not u1
    ('and(eq(metadata_key, "attempt"), eq(metadata_value, 2))', "r3"),
    ('eq(metadata_value, "u2")', "r5"),
    # latency (seconds) and tokens
    ("gt(latency, 2.5)", "r1 r5"),
    ("gte(latency, 2.5)", "r1 r5 r6"),
    ("lt(latency, 2.5000004)", "r2 r3 r6 r7 r8"),
    ("lt(latency, 1)", "r3 r7 r8"),
    ("eq(latency, 2.5)", "r6"),
    ("eq(latency, null)", "r4"),
    ("exists(latency)", "r1 r2 r3 r5 r6 r7 r8"),
    ("gt(total_tokens, 10.5)", "r2 r6"),
    ("lt(total_tokens, 11.5)", "r6"),
    ("lte(total_tokens, 11)", "r6"),
    ("eq(prompt_tokens, 80)", "r2"),
    ("gte(completion_tokens, 1)", "r2 r6"),
    ("eq(total_tokens, null)", "r1 r3 r4 r5 r7 r8"),
    # times
    ('gte(start_time, "2026-11-02T00:00:00Z")', "r5 r6 r7 r8"),
    ('lt(start_time, "2026-11-02")', "r1 r2 r3 r4"),  # naive means UTC
    ('gt(start_time, "2026-11-02T01:00:00+02:00")', "r5 r6 r7 r8"),  # = 2026-11-01T23:00Z
    ('eq(start_time, "2026-11-01T10:00:01")', "r2 r3"),
    ('lt(end_time, "2026-11-01T10:00:02.300000Z")', "r2 r3"),
    ("eq(end_time, null)", "r4"),
    ("exists(first_token_time)", "r2"),
    ('gt(first_token_time, "2026-11-01T10:00:01Z")', "r2"),
    # feedback: comparisons inside one and() apply to the same feedback row
    ('and(eq(feedback_key, "user_score"), eq(feedback_score, 1))', "r2 r6"),  # not r5 (user_score is 0)
    ("eq(feedback_score, 1)", "r2 r5 r6"),
    ('and(eq(feedback_key, "user_score"), lt(feedback_score, 1))', "r5"),
    ('and(eq(feedback_key, "correctness"), gte(feedback_score, 0.5))', "r5"),
    ('and(eq(feedback_key, "user_score"), and(eq(feedback_score, 1), eq(run_type, "llm")))', "r2 r6"),
    ('and(eq(feedback_key, "user_score"), eq(feedback_key, "correctness"))', ""),
    ('in(feedback_key, ["correctness", "nope"])', "r2 r5"),
    ('eq(feedback_value, "good")', "r6"),
    ("eq(feedback_value, null)", "r2 r5"),
    ('and(eq(feedback_key, "user_score"), neq(feedback_value, null))', "r6"),
    ('and(eq(feedback_key, "correctness"), eq(feedback_value, "good"))', ""),
    ('not(eq(feedback_key, "user_score"))', "r1 r3 r4 r7 r8"),
    ('or(eq(feedback_key, "correctness"), eq(run_type, "tool"))', "r2 r3 r5"),
    ('and(or(eq(feedback_key, "user_score"), has(tags, "rag")), eq(status, "success"))', "r2 r5 r6"),
    # search everywhere: name, error, inputs, outputs
    ('search("paris")', "r1 r2"),
    ('search("CHATOPENAI")', "r2 r4"),
    ('search("timeout")', "r3"),
    ('search("WEATHER")', "r5"),
    ('search("s_F")', "r1"),
    ('search("nothing like this")', ""),
    ('search(inputs, "messages")', "r2"),
    ('search(outputs, "capital")', "r2"),
    # the other workspace never leaks through a side table or a correlated run
    ('has(tags, "leak")', ""),
    ('exists(metadata, "leak")', ""),
    ('eq(feedback_key, "leak_key")', ""),
    ('and(eq(feedback_key, "user_score"), eq(feedback_score, 1), eq(run_type, "llm"))', "r2 r6"),  # not r4
    ('eq(name, "Leaky")', ""),
]


@pytest.mark.parametrize(("text", "expected"), FILTERS, ids=[f for f, _ in FILTERS])
def test_filter(engine: Engine, text: str, expected: str) -> None:
    filter_text = text.format(**IDS)
    assert matching(engine, filter_clause(filter_text, runs)) == set(S(expected))


TRACE_AND_TREE = [
    # (filter, trace_filter, tree_filter, expected)
    (None, 'has(tags, "prod")', None, "r1 r2 r3 r4"),
    (None, 'exists(metadata, "user")', None, ALL),  # both roots have a user
    (None, 'eq(feedback_key, "correctness")', None, "r5 r6 r7 r8"),  # r1 has none (its child r2 does)
    (None, 'and(eq(feedback_key, "user_score"), eq(feedback_score, 1))', None, ""),  # r5's user_score is 0
    (None, 'and(eq(feedback_key, "correctness"), eq(feedback_score, 1))', None, "r5 r6 r7 r8"),
    ('eq(run_type, "llm")', 'has(tags, "dev")', None, "r6"),
    (None, "gt(latency, 5)", None, "r5 r6 r7 r8"),
    (None, 'eq(name, "Leaky")', None, ""),  # W2's run with r1's id is not W1's root
    (None, 'eq(name, "ChatOpenAI")', None, ""),  # a trace filter looks at the root only
    (None, None, 'eq(status, "error")', "r1 r2 r4 r5 r6 r8"),  # some OTHER run of the trace failed
    (None, None, 'eq(name, "Retriever")', "r5 r6 r8"),
    (None, None, 'eq(name, "Leaky child")', ""),
    (None, None, 'and(eq(feedback_key, "user_score"), eq(feedback_score, 1))', "r1 r3 r4 r5 r7 r8"),
    ('eq(run_type, "llm")', 'has(tags, "prod")', 'eq(run_type, "tool")', "r2 r4"),
    ('eq(status, "success")', "eq(parent_run_id, null)", 'eq(status, "pending")', "r1 r2"),
]


@pytest.mark.parametrize(("flt", "trace", "tree", "expected"), TRACE_AND_TREE)
def test_trace_and_tree_filters(
    engine: Engine, flt: str | None, trace: str | None, tree: str | None, expected: str | set[str]
) -> None:
    clause = filter_clause(flt, runs) & trace_filter_clause(trace, runs) & tree_filter_clause(tree, runs)
    assert matching(engine, clause) == (expected if isinstance(expected, set) else set(S(expected)))


def test_blank_filters_match_everything(engine: Engine) -> None:
    clause = filter_clause("  ", runs) & trace_filter_clause(None, runs) & tree_filter_clause("", runs)
    assert matching(engine, clause) == ALL


def test_filters_see_the_other_workspace_only_there(engine: Engine) -> None:
    assert matching(engine, filter_clause('has(tags, "leak")', runs), ws=W2) == {"r1", "r4"}
    assert matching(engine, filter_clause('exists(metadata, "leak")', runs), ws=W2) == {"r1"}
    assert matching(engine, filter_clause('eq(feedback_key, "leak_key")', runs), ws=W2) == {"r1"}
    assert matching(engine, tree_filter_clause('eq(name, "Leaky child")', runs), ws=W2) == {"r1"}
    assert matching(engine, trace_filter_clause('eq(name, "Leaky")', runs), ws=W2) == {"r1", "r4"}


def test_works_on_an_alias_of_runs(engine: Engine) -> None:
    r = runs.alias("r")
    with engine.connect() as conn:
        found = conn.execute(
            select(r.c.id).where(
                r.c.workspace_id == W1,
                filter_clause('and(eq(feedback_key, "user_score"), eq(feedback_score, 1))', r),
                trace_filter_clause('has(tags, "prod")', r),
            )
        ).scalars()
        assert {NAMES[i] for i in found} == {"r2"}


# (filter, position, message start) — field errors carry the position of the offending token
FIELD_ERRORS = [
    ('eq(colour, "red")', 3, "unknown field 'colour'; expected one of id, trace_id"),
    ('and(eq(name, "x"), gt(bogus, 1))', 22, "unknown field 'bogus'"),
    ('gt(name, "a")', 0, "gt() cannot order field 'name' (string); use eq, neq or in"),
    ('lte(run_type, "llm")', 0, "lte() cannot order field 'run_type'"),
    ('gt(id, "{r1}")', 0, "gt() cannot order field 'id' (uuid)"),
    ('gt(latency, "slow")', 12, "field 'latency' takes a number, not string \"slow\""),
    ("gt(total_tokens, true)", 17, "field 'total_tokens' takes a number, not true"),
    ("eq(name, 3)", 9, "field 'name' takes a string, not number 3"),
    ('in(run_type, ["llm", 3])', 21, "field 'run_type' takes a string, not number 3"),
    ('gt(start_time, "yesterday")', 15, "field 'start_time' takes an ISO-8601 time"),
    ("gt(start_time, 1700000000)", 15, "field 'start_time' takes a string"),
    ('eq(trace_id, "not-a-uuid")', 13, "field 'trace_id' takes a UUID, not 'not-a-uuid'"),
    ("has(metadata, 'user=u1')", 14, "has(metadata, …) takes a JSON object"),
    ("has(metadata, '[1, 2]')", 14, "has(metadata, …) takes a JSON object"),
    ("has(metadata, 1)", 14, "field 'metadata' takes a string"),
    ('eq(metadata, "x")', 0, "eq() does not apply to field 'metadata'; use has or exists"),
    ('eq(status, "done")', 11, 'status is one of success, error, pending, not string "done"'),
    ('gt(status, "error")', 0, "gt() does not apply to field 'status'"),
    ('has(name, "x")', 0, "has() does not apply to field 'name'"),
    ('gt(tags, "x")', 0, "gt() does not apply to field 'tags'"),
    ("gt(latency, null)", 12, "gt() cannot compare with null"),
    ('search(latency, "1")', 0, "search() does not apply to field 'latency'"),
    ("search(3)", 7, "search() takes a string, not number 3"),
    ('exists(name, "x")', 0, "exists() takes a key only for metadata"),
    ('gt(feedback_value, "x")', 0, "gt() cannot order field 'feedback_value'"),
    ('eq(inputs, "x")', 0, "eq() does not apply to field 'inputs'; use search"),
]


@pytest.mark.parametrize(("text", "position", "message"), FIELD_ERRORS, ids=[t for t, _, _ in FIELD_ERRORS])
def test_field_errors(text: str, position: int, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        filter_clause(text.format(**IDS), runs)
    assert (info.value.field, info.value.position) == ("filter", position)
    assert info.value.message.startswith(message), info.value.message
    assert info.value.message.endswith(f" at position {position}"), info.value.message


@pytest.mark.parametrize(
    ("clause_for", "param"), [(trace_filter_clause, "trace_filter"), (tree_filter_clause, "tree_filter")]
)
def test_trace_and_tree_errors_name_their_field(clause_for: Any, param: str) -> None:
    with pytest.raises(InvalidInput) as info:
        clause_for('eq(colour, "red")', runs)
    assert (info.value.field, info.value.position) == (param, 3)
    with pytest.raises(InvalidInput) as info:
        clause_for('eq(name, "red"', runs)
    assert (info.value.field, info.value.position) == (param, 14)
