"""Pure functions run → record (``tracetune.ingest.records``): table-driven, from captured SDK payloads."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.fixtures import capture_parts, load
from tracetune.errors import InvalidInput, Unprocessable
from tracetune.ingest.feedback_records import feedback_record
from tracetune.ingest.records import merge_records, run_record
from tracetune.timeutil import time_to_us, us_to_time

PLAIN_ROOT = "01a1fd4e-fe12-7607-a250-34b55229be01"
PLAIN_LLM = "01a1fd4e-fe76-709b-a454-39018d5fd50a"
STREAM_LLM = "01a1fd4e-ff0c-71f5-a5cf-9cd1d95336f5"
BOOM = "01a1fd4e-ff4d-7664-959b-e3c3a406235e"


def captured(kind: str, run_id: str) -> dict[str, Any]:
    """One operation of the zstd capture, its sub-parts folded into the run object (as the service does)."""
    run: dict[str, Any] = {}
    for name, value in capture_parts():
        op_kind, rid, *sub = name.split(".")
        if (op_kind, rid) == (kind, run_id):
            if sub:
                run[sub[0]] = value
            else:
                run.update(value)
    assert run, (kind, run_id)
    return run


def us(text: str) -> int:
    return time_to_us(text, "t")


# -- whole captured runs -------------------------------------------------------------------------------------


def test_captured_llm_post_then_patch() -> None:
    post = run_record(captured("post", PLAIN_LLM), "post", "post[0]")
    assert post["id"] == uuid.UUID(PLAIN_LLM)
    assert post["trace_id"] == post["parent_run_id"] == uuid.UUID(PLAIN_ROOT)
    assert post["name"] == "ChatOpenAI"
    assert post["run_type"] == "llm"
    assert post["session_name"] == "tracetune-capture"
    assert post["start_us"] == us("2026-11-21T08:52:55.030281+00:00")
    assert post["dotted_order"].endswith("Z" + PLAIN_LLM)
    assert "outputs" not in post  # the open run's ``outputs: {}`` must not hide the patch's
    assert "end_us" not in post
    assert "total_tokens" not in post

    patch = run_record(captured("patch", PLAIN_LLM), "patch", "patch[0]")
    assert patch["end_us"] == us("2026-11-21T08:52:55.048682+00:00")
    assert patch["outputs"]["generations"][0][0]["text"] == "Hello from the fake model."
    assert (patch["prompt_tokens"], patch["completion_tokens"], patch["total_tokens"]) == (12, 7, 19)
    assert patch["tags"] == ["seq:step:2", "variant:plain"]
    assert "session_id" not in patch  # ``session_id: null`` means "not given"
    assert "first_token_us" not in patch


def test_captured_streamed_llm_has_first_token_time() -> None:
    raw = captured("patch", STREAM_LLM)
    [token] = [e for e in raw["events"] if e["name"] == "new_token"]
    rec = run_record(raw, "patch", "patch[0]")
    assert rec["first_token_us"] == us(token["time"])
    assert rec["start_us"] < rec["first_token_us"] < rec["end_us"]


def test_captured_error_is_kept_as_the_string_sent() -> None:
    raw = captured("patch", BOOM)
    rec = run_record(raw, "patch", "patch[0]")
    assert rec["error"] == raw["error"]
    assert rec["error"].startswith("ValueError('boom in lambda')")
    assert "outputs" not in rec


def test_captured_wrap_openai_run() -> None:
    parts = load("ls_wrap.json")["parts"]
    run: dict[str, Any] = {}
    for p in parts:
        sub = p["name"].split(".")[2:]
        run.update({sub[0]: p["json"]} if sub else p["json"])
    rec = run_record(run, "post", "post[0]")
    assert (rec["run_type"], rec["name"]) == ("llm", "ChatOpenAI")
    assert rec["outputs"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["total_tokens"]) == (12, 7, 19)
    assert rec["end_us"] > rec["start_us"]


# -- tokens --------------------------------------------------------------------------------------------------

USAGE_META = {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
TOKEN_USAGE = {"prompt_tokens": 30, "completion_tokens": 40, "total_tokens": 70}
OPENAI_USAGE = {"prompt_tokens": 300, "completion_tokens": 400, "total_tokens": 700}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"extra": {"metadata": {"usage_metadata": USAGE_META}}}, (3, 4, 7), id="metadata-usage"),
        pytest.param({"outputs": {"llm_output": {"token_usage": TOKEN_USAGE}}}, (30, 40, 70), id="llm_output"),
        pytest.param({"outputs": {"usage": OPENAI_USAGE, "choices": []}}, (300, 400, 700), id="wrap_openai-usage"),
        pytest.param({"outputs": {"usage_metadata": USAGE_META}}, (3, 4, 7), id="outputs-usage_metadata"),
        pytest.param(
            {
                "extra": {"metadata": {"usage_metadata": USAGE_META}},
                "outputs": {"llm_output": {"token_usage": TOKEN_USAGE}, "usage": OPENAI_USAGE},
            },
            (3, 4, 7),
            id="metadata-first",
        ),
        pytest.param(
            {"outputs": {"llm_output": {"token_usage": TOKEN_USAGE}, "usage": OPENAI_USAGE}},
            (30, 40, 70),
            id="llm_output-before-usage",
        ),
        pytest.param(
            {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "outputs": {"usage": OPENAI_USAGE}},
            (1, 2, 3),
            id="explicit-fields-win",
        ),
        pytest.param({"outputs": {"llm_output": None, "usage": None}}, (None, None, None), id="none"),
        pytest.param({"outputs": {"usage": {"total_tokens": "7"}}}, (None, None, None), id="not-an-int"),
        pytest.param({"total_tokens": True}, (None, None, None), id="bool-is-not-a-count"),
        pytest.param({"total_tokens": 2**40}, (None, None, None), id="beyond-32-bits-ignored"),
        pytest.param({"outputs": {"usage": {"total_tokens": 9}}}, (None, None, 9), id="total-only"),
    ],
)
def test_token_extraction(fields: dict[str, Any], expected: tuple) -> None:
    run = {"id": str(uuid.uuid4()), "end_time": "2026-01-01T00:00:01Z", **fields}
    rec = run_record(run, "post", "post[0]")
    assert (rec.get("prompt_tokens"), rec.get("completion_tokens"), rec.get("total_tokens")) == expected


# -- thread id, first token ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "thread"),
    [
        ({"thread_id": "t-1"}, "t-1"),
        ({"session_id": "s-1"}, "s-1"),
        ({"conversation_id": "c-1"}, "c-1"),
        ({"conversation_id": "c", "session_id": "s", "thread_id": "t"}, "t"),  # thread_id first
        ({"session_id": "s", "conversation_id": "c"}, "s"),
        ({"thread_id": 42}, "42"),
        ({"thread_id": None, "session_id": "s"}, "s"),
        ({"user": "u1"}, None),
    ],
)
def test_thread_id_from_metadata(metadata: dict[str, Any], thread: str | None) -> None:
    rec = run_record({"id": str(uuid.uuid4()), "extra": {"metadata": metadata}}, "post", "post[0]")
    assert rec.get("thread_id") == thread


@pytest.mark.parametrize(
    ("events", "first"),
    [
        (
            [
                {"name": "start", "time": "2026-01-01T00:00:00Z"},
                {"name": "new_token", "time": "2026-01-01T00:00:01Z"},
                {"name": "new_token", "time": "2026-01-01T00:00:02Z"},
            ],
            "2026-01-01T00:00:01Z",
        ),
        ([{"name": "new_token"}], None),  # no time: nothing to record
        ([{"name": "new_token", "time": "soon"}], None),  # an unreadable time is not worth refusing the run
        ([{"name": "start", "time": "2026-01-01T00:00:00Z"}], None),
        (["not an event", None], None),
    ],
)
def test_first_token_time_from_events(events: list, first: str | None) -> None:
    rec = run_record({"id": str(uuid.uuid4()), "events": events}, "patch", "patch[0]")
    assert rec["events"] == events
    assert rec.get("first_token_us") == (us(first) if first else None)


# -- defaults ------------------------------------------------------------------------------------------------


def test_trace_id_defaults_to_the_id_of_a_root_post_only() -> None:
    rid, parent = str(uuid.uuid4()), str(uuid.uuid4())
    assert run_record({"id": rid}, "post", "p")["trace_id"] == uuid.UUID(rid)
    assert "trace_id" not in run_record({"id": rid, "parent_run_id": parent}, "post", "p")
    assert "trace_id" not in run_record({"id": rid}, "patch", "p")


GOOD = "7a2b5a52-6c32-4f0e-9a59-6b3c1e7d2a10"
PATCHED = "3f1d9c0e-2b7a-4c55-8e61-0d4b9a7c1e22"  # fixed: it names parametrized tests (xdist workers must agree)


@pytest.mark.parametrize(
    ("fields", "start"),
    [
        ({"start_time": "2026-01-01T00:00:05Z", "end_time": "2026-01-01T00:00:09Z"}, "2026-01-01T00:00:05Z"),
        (
            {
                "dotted_order": f"20260101T000000000001Z{GOOD}.20260101T000003250000Z{PATCHED}",
                "end_time": "2026-01-01T00:00:09Z",
            },
            "2026-01-01T00:00:03.25Z",
        ),
        ({"end_time": "2026-01-01T00:00:09Z"}, "2026-01-01T00:00:09Z"),
    ],
)
def test_patch_start_time_fallbacks(fields: dict[str, Any], start: str) -> None:
    assert run_record({"id": PATCHED, **fields}, "patch", "patch[0]")["start_us"] == us(start)


@pytest.mark.parametrize(
    ("dotted", "needle"),
    [
        ("garbage!!", "segment 1 ('garbage!!') is not"),
        (f"20260101T000000000001Z{GOOD}.x", "segment 2"),
        (f"20260101T000000000001Z{GOOD}", "last segment names run"),
        (f"2026-01-01T000000000001Z{PATCHED}", "segment 1"),
    ],
)
def test_a_malformed_dotted_order_is_refused_naming_it(dotted: str, needle: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(needle)) as caught:
        run_record({"id": PATCHED, "dotted_order": dotted}, "post", "post[0]")
    assert caught.value.field == "post[0].dotted_order"


def test_a_dotted_order_must_agree_with_trace_and_parent() -> None:
    dotted = f"20260101T000000000001Z{GOOD}.20260101T000003250000Z{PATCHED}"
    other = str(uuid.uuid4())
    with pytest.raises(InvalidInput, match="not the trace_id"):
        run_record({"id": PATCHED, "dotted_order": dotted, "trace_id": other}, "post", "p")
    with pytest.raises(InvalidInput, match="does not name the parent_run_id"):
        run_record({"id": PATCHED, "dotted_order": dotted, "parent_run_id": other}, "post", "p")
    rec = run_record({"id": PATCHED, "dotted_order": dotted, "trace_id": GOOD}, "post", "p")
    assert rec["parent_run_id"] == uuid.UUID(GOOD)  # read off the dotted order


@pytest.mark.parametrize("run_type", ["agent", "bogus", "LLM", ""])
def test_an_unknown_run_type_is_422_naming_it(run_type: str) -> None:
    with pytest.raises(Unprocessable, match="is not a run type") as caught:
        run_record({"id": GOOD, "run_type": run_type}, "post", "post[0]")
    assert caught.value.status_code == 422 and caught.value.field == "post[0].run_type"


def test_a_root_posted_without_a_dotted_order_gets_its_own_segment() -> None:
    rec = run_record({"id": GOOD, "start_time": "2026-01-01T00:00:03.25Z"}, "post", "p")
    assert rec["dotted_order"] == f"20260101T000003250000Z{GOOD}"
    assert rec["trace_id"] == uuid.UUID(GOOD)
    child = run_record({"id": PATCHED, "parent_run_id": GOOD, "start_time": "2026-01-01T00:00:04Z"}, "post", "p")
    assert "dotted_order" not in child and "trace_id" not in child  # the store derives them from the parent


@pytest.mark.parametrize(
    ("kind", "fields", "outputs"),
    [
        ("post", {"outputs": {}}, "absent"),  # open run: the patch will bring them
        ("post", {"outputs": {}, "end_time": "2026-01-01T00:00:01Z"}, {}),  # closed: really empty
        ("patch", {"outputs": {}}, {}),
        ("post", {"outputs": {"a": 1}}, {"a": 1}),
        ("post", {"outputs": None}, "absent"),
    ],
)
def test_empty_outputs(kind: str, fields: dict[str, Any], outputs: Any) -> None:
    rec = run_record({"id": str(uuid.uuid4()), **fields}, kind, "x")  # type: ignore[arg-type]
    assert rec.get("outputs", "absent") == outputs


@pytest.mark.parametrize("error", [5, {"type": "ValueError"}, ["x"], True])
def test_a_non_string_error_is_refused(error: object) -> None:
    with pytest.raises(InvalidInput, match="expected a string") as caught:
        run_record({"id": str(uuid.uuid4()), "error": error}, "patch", "p")
    assert caught.value.field == "p.error"


def test_null_fields_mean_not_given() -> None:
    rid = str(uuid.uuid4())
    run = {
        "id": rid,
        "session_id": None,
        "parent_run_id": None,
        "name": None,
        "inputs": None,
        "tags": None,
        "error": None,
        "end_time": None,
        "events": None,
    }
    assert set(run_record(run, "patch", "p")) == {"id", "start_us"}


# -- errors name the field -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "field", "message"),
    [
        ([GOOD], "post[3]", "must be a JSON object, got list"),
        ({"name": "x"}, "post[3].id", "needs an 'id'"),
        ({"id": None}, "post[3].id", "needs an 'id'"),
        ({"id": "nope"}, "post[3].id", "'nope' is not a UUID"),
        ({"id": 7}, "post[3].id", "7 is not a UUID"),
        ({"id": GOOD, "trace_id": "t"}, "post[3].trace_id", "not a UUID"),
        ({"id": GOOD, "parent_run_id": "p"}, "post[3].parent_run_id", "not a UUID"),
        ({"id": GOOD, "session_id": "s"}, "post[3].session_id", "not a UUID"),
        ({"id": GOOD, "reference_example_id": "r"}, "post[3].reference_example_id", "not a UUID"),
        ({"id": GOOD, "name": 5}, "post[3].name", "expected a string, got int"),
        ({"id": GOOD, "run_type": ["llm"]}, "post[3].run_type", "expected a string, got list"),
        ({"id": GOOD, "start_time": "yesterday"}, "post[3].start_time", "'yesterday' is not an ISO-8601 time"),
        ({"id": GOOD, "end_time": 1700000000}, "post[3].end_time", "expected an ISO-8601 time string, got int"),
        ({"id": GOOD, "inputs": ["a"]}, "post[3].inputs", "expected a JSON object, got list"),
        ({"id": GOOD, "outputs": "done"}, "post[3].outputs", "expected a JSON object, got str"),
        ({"id": GOOD, "extra": 1}, "post[3].extra", "expected a JSON object"),
        ({"id": GOOD, "serialized": []}, "post[3].serialized", "expected a JSON object"),
        ({"id": GOOD, "events": {}}, "post[3].events", "expected a JSON array"),
        ({"id": GOOD, "tags": "a,b"}, "post[3].tags", "expected a list of strings"),
        ({"id": GOOD, "tags": ["a", 1]}, "post[3].tags", "expected a list of strings"),
        ({"id": GOOD, "tags": ["a", "t" * 501]}, "post[3].tags[1]", "at most 500 characters"),
        ({"id": GOOD, "name": "n" * 501}, "post[3].name", "at most 500 characters allowed, got 501"),
        ({"id": GOOD, "run_type": "r" * 33}, "post[3].run_type", "at most 32 characters"),
        ({"id": GOOD, "dotted_order": "d" * 2001}, "post[3].dotted_order", "at most 2000 characters"),
        ({"id": GOOD, "session_name": "\x00"}, "post[3].session_name", "NUL"),
        ({"id": GOOD, "error": "a\x00b"}, "post[3].error", "NUL"),
        ({"id": GOOD, "extra": {"metadata": {"k\x00": 1}}}, "post[3].extra.metadata", "NUL"),
        (
            {"id": GOOD, "extra": {"metadata": {"thread_id": "t" * 501}}},
            "post[3].extra.metadata.thread_id",
            "at most 500",
        ),
    ],
)
def test_errors_name_the_field(run: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        run_record(run, "post", "post[3]")
    assert exc.value.field == field
    assert message in exc.value.message
    assert f"field {field!r}" in str(exc.value)


def test_limits_are_inclusive() -> None:
    rec = run_record(
        {
            "id": GOOD,
            "name": "n" * 500,
            "tags": ["t" * 500],
            "inputs": {"nul is fine in JSON": "\x00"},
        },
        "post",
        "p",
    )
    assert len(rec["name"]) == 500


# -- times ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1970-01-01T00:00:00+00:00", 0),
        ("1970-01-01T00:00:01Z", 1_000_000),
        ("1970-01-01T00:00:00.000001", 1),  # naive = UTC
        ("1970-01-01T01:00:00+01:00", 0),
        ("1969-12-31T23:59:59.999999Z", -1),
        ("2026-11-21T08:52:55.030281+00:00", 1_795_251_175_030_281),
        (datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5))), us("2026-01-01T05:00:00Z")),
    ],
)
def test_time_to_us(value: Any, expected: int) -> None:
    assert time_to_us(value, "t") == expected


def test_us_to_time_round_trip() -> None:
    for value in (0, 1, -1, 1_795_251_175_030_281):
        dt = us_to_time(value)
        assert dt is not None and dt.tzinfo == UTC
        assert time_to_us(dt, "t") == value
    assert us_to_time(None) is None


# -- merging operations of one request -----------------------------------------------------------------------


def _rec(rid: str, **fields: Any) -> dict[str, Any]:
    return {"id": uuid.UUID(rid), **fields}


A, B = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"


@pytest.mark.parametrize(
    ("kind", "records", "expected"),
    [
        (
            "post",
            [_rec(A, name="first"), _rec(A, name="second", inputs={"x": 1})],
            [_rec(A, name="first", inputs={"x": 1})],
        ),
        (
            "patch",
            [_rec(A, end_us=1, outputs={"a": 1}), _rec(A, end_us=2, error="E")],
            [_rec(A, end_us=2, outputs={"a": 1}, error="E")],
        ),
        (
            "post",
            [_rec(B, name="b"), _rec(A, name="a"), _rec(B, tags=["t"])],
            [_rec(B, name="b", tags=["t"]), _rec(A, name="a")],
        ),
        ("patch", [], []),
    ],
)
def test_merge_records(kind: str, records: list, expected: list) -> None:
    before = [dict(r) for r in records]
    assert merge_records(records, kind) == expected  # type: ignore[arg-type]
    assert records == before  # the inputs are not changed


# -- feedback records ----------------------------------------------------------------------------------------


def test_captured_multipart_feedback_record() -> None:
    [part] = load("ls_zstd_traces.json")["feedback_parts"]
    rec = feedback_record(part["json"], f"part {part['name']!r}")
    assert rec["id"] == uuid.UUID(part["json"]["id"])
    assert (rec["key"], rec["score"], rec["comment"]) == ("user_score", 1, "good")
    assert rec["run_id"] == rec["trace_id"] == uuid.UUID(part["json"]["run_id"])
    assert rec["created_at"] == datetime(2026, 11, 21, 8, 52, 55, 302408, tzinfo=UTC)
    assert rec["session_id"] is None


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ("x", "fb"),
        ({"score": 1}, "fb.key"),
        ({"key": 3}, "fb.key"),
        ({"key": "k", "score": "1"}, "fb.score"),
        ({"key": "k", "comment": []}, "fb.comment"),
        ({"key": "k", "run_id": "r"}, "fb.run_id"),
        ({"key": "k", "id": "i"}, "fb.id"),
        ({"key": "k", "modified_at": 5}, "fb.modified_at"),
        ({"key": "k" * 501}, "fb.key"),
    ],
)
def test_feedback_errors_name_the_field(obj: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        feedback_record(obj, "fb")
    assert exc.value.field == field


def test_feedback_boolean_score_is_a_number() -> None:
    assert feedback_record({"key": "k", "score": True}, "fb")["score"] == 1.0
