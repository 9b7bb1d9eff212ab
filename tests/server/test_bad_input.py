"""Bad input on every route family of /api/v1: always a 4xx ``{"detail": message}`` whose message names the
part, field or position at fault; never a 500; and a request with one bad operation stores nothing."""

from __future__ import annotations

import base64
import gzip
import json
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
import zstandard

from tests.conftest import LiveServer
from tests.fixtures import multipart_body
from tests.server.support import detail_of, new_run, project_id

NOT_A_UUID = "not-a-uuid"


def _mp(api: httpx.Client, parts: list, **headers: str) -> httpx.Response:
    body, ctype = multipart_body(parts)
    return api.post("/runs/multipart", content=body, headers={"content-type": ctype, **headers})


# -- malformed JSON ------------------------------------------------------------------------------------------

ANY_ID = "0d6f3a52-7e1b-4c9d-8a24-5f3e6b1c9d70"  # fixed: it names parametrized tests (xdist workers must agree)
JSON_ROUTES = [
    ("POST", "/runs/batch"),
    ("POST", "/runs"),
    ("PATCH", f"/runs/{ANY_ID}"),
    ("POST", "/runs/query"),
    ("POST", "/sessions"),
    ("POST", "/feedback"),
    ("PATCH", f"/feedback/{ANY_ID}"),
]


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_malformed_json_names_the_body_and_the_position(api: httpx.Client, method: str, path: str) -> None:
    r = api.request(method, path, content=b'{"name": "x",, }', headers={"content-type": "application/json"})
    detail = detail_of(r, 400, 422)
    assert "malformed JSON" in detail
    assert "body" in detail
    assert re.search(r"\b(char|position) 13\b", detail), detail  # the offset of the second comma


def test_malformed_json_in_a_multipart_part_names_the_part(api: httpx.Client) -> None:
    rid = str(uuid.uuid4())
    body, ctype = multipart_body([(f"post.{rid}", {"id": rid}), (f"post.{rid}.inputs", b'{"a": ')])
    detail = detail_of(api.post("/runs/multipart", content=body, headers={"content-type": ctype}), 400)
    assert f"post.{rid}.inputs" in detail
    assert "not valid JSON" in detail


# -- multipart framing and part names -----------------------------------------------------------------------


def test_unknown_part_name(api: httpx.Client) -> None:
    detail = detail_of(_mp(api, [("bogus.123", {})]), 400)
    assert "'bogus.123'" in detail
    assert "post.<id>" in detail  # says what would have been accepted


def test_unknown_run_field_part(api: httpx.Client) -> None:
    rid = str(uuid.uuid4())
    detail = detail_of(_mp(api, [(f"post.{rid}", {"id": rid}), (f"post.{rid}.nonsense", {})]), 400)
    assert f"post.{rid}.nonsense" in detail
    assert "'nonsense'" in detail
    assert "inputs" in detail  # lists the known fields


@pytest.mark.parametrize(
    ("content_type", "needle"),
    [
        ("multipart/form-data", "no boundary"),
        ("application/json", "multipart/form-data"),
        (None, "multipart/form-data"),
    ],
)
def test_multipart_content_type_problems_name_the_header(
    api: httpx.Client, content_type: str | None, needle: str
) -> None:
    body, _ = multipart_body([(f"post.{uuid.uuid4()}", {})])
    headers = {"content-type": content_type} if content_type else {}
    detail = detail_of(api.post("/runs/multipart", content=body, headers=headers), 400)
    assert needle in detail
    assert "Content-Type" in detail


def test_multipart_without_closing_boundary(api: httpx.Client) -> None:
    rid = str(uuid.uuid4())
    body, ctype = multipart_body([(f"post.{rid}", {"id": rid, "session_name": "never-stored"})])
    truncated = body[: body.rindex(b"--" + ctype.split("=")[1].encode() + b"--")]
    detail = detail_of(api.post("/runs/multipart", content=truncated, headers={"content-type": ctype}), 400)
    assert "closing boundary" in detail
    assert api.get(f"/runs/{rid}").status_code == 404


def test_body_claiming_zstd_that_is_not(api: httpx.Client) -> None:
    body, ctype = multipart_body([(f"post.{uuid.uuid4()}", {})])  # plain, but labelled zstd
    r = api.post("/runs/multipart", content=body, headers={"content-type": ctype, "content-encoding": "zstd"})
    detail = detail_of(r, 400)
    assert "not valid zstd" in detail
    assert "Content-Encoding" in detail


def test_body_claiming_gzip_that_is_not(api: httpx.Client) -> None:
    body, ctype = multipart_body([(f"post.{uuid.uuid4()}", {})])
    r = api.post("/runs/multipart", content=body, headers={"content-type": ctype, "content-encoding": "gzip"})
    assert "not valid gzip" in detail_of(r, 400)


@pytest.mark.parametrize("encoding", ["br", "deflate", "zstd, gzip"])
@pytest.mark.parametrize("path", ["/runs/multipart", "/runs/batch", "/runs", "/feedback"])
def test_unsupported_content_encoding_is_415_naming_it(api: httpx.Client, encoding: str, path: str) -> None:
    body, ctype = multipart_body([(f"post.{uuid.uuid4()}", {})])
    if path != "/runs/multipart":
        body, ctype = json.dumps({"post": []}).encode(), "application/json"
    r = api.post(path, content=body, headers={"content-type": ctype, "content-encoding": encoding})
    detail = detail_of(r, 415)
    assert repr(encoding) in detail
    assert "Content-Encoding" in detail


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_batch_bodies_are_decoded_like_multipart_ones(api: httpx.Client, project_name: str, encoding: str) -> None:
    run = new_run(project_name, inputs={"q": "compressed é"})
    raw = json.dumps({"post": [run]}).encode()
    packed = zstandard.ZstdCompressor().compress(raw) if encoding == "zstd" else gzip.compress(raw)
    r = api.post(
        "/runs/batch", content=packed, headers={"content-type": "application/json", "content-encoding": encoding}
    )
    assert r.status_code == 202, r.text
    assert api.get(f"/runs/{run['id']}").json()["inputs"] == {"q": "compressed é"}


def test_a_truncated_zstd_body_says_the_stream_is_truncated(api: httpx.Client) -> None:
    rid = str(uuid.uuid4())
    body, ctype = multipart_body([(f"post.{rid}", {"id": rid, "inputs": {"x": "y" * 5000}})])
    packed = zstandard.ZstdCompressor().compress(body)
    r = api.post(
        "/runs/multipart",
        content=packed[: len(packed) - 7],
        headers={"content-type": ctype, "content-encoding": "zstd"},
    )
    detail = detail_of(r, 400)
    assert "zstd stream is truncated" in detail and "Content-Encoding" in detail
    assert "closing boundary" not in detail
    assert api.get(f"/runs/{rid}").status_code == 404


# -- ids that are not UUIDs ----------------------------------------------------------------------------------


def test_non_uuid_run_id_in_the_path(api: httpx.Client) -> None:
    for method in ("GET", "PATCH"):
        r = api.request(method, f"/runs/{NOT_A_UUID}", json={} if method == "PATCH" else None)
        detail = detail_of(r, 400)
        assert f"'{NOT_A_UUID}' is not a UUID" in detail
        assert "run_id" in detail


def test_patch_whose_body_id_differs_from_the_path(api: httpx.Client) -> None:
    r = api.patch(f"/runs/{uuid.uuid4()}", json={"id": str(uuid.uuid4()), "end_time": "2026-01-01T00:00:00Z"})
    assert "differs from the id in the path" in detail_of(r, 400)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/runs", {"id": NOT_A_UUID}, "body.id"),
        ("/runs", {"id": str(uuid.uuid4()), "parent_run_id": NOT_A_UUID}, "body.parent_run_id"),
        ("/runs/batch", {"post": [{"id": NOT_A_UUID}]}, "post[0].id"),
        ("/runs/batch", {"patch": [{"id": str(uuid.uuid4()), "trace_id": NOT_A_UUID}]}, "patch[0].trace_id"),
        ("/feedback", {"key": "k", "run_id": NOT_A_UUID}, "body.run_id"),
        ("/runs/query", {"session": [NOT_A_UUID]}, "session"),
        ("/runs/query", {"trace": NOT_A_UUID}, "trace"),
    ],
)
def test_non_uuid_in_a_body(api: httpx.Client, path: str, body: dict, field: str) -> None:
    detail = detail_of(api.post(path, json=body), 400, 422)
    assert field in detail
    assert "UUID" in detail


@pytest.mark.parametrize(
    "name",
    [f"post.{NOT_A_UUID}", f"patch.{NOT_A_UUID}.outputs", f"feedback.{NOT_A_UUID}", f"attachment.{NOT_A_UUID}.f"],
)
def test_non_uuid_in_a_part_name(api: httpx.Client, name: str) -> None:
    value = {"key": "k"} if name.startswith("feedback") else {}
    detail = detail_of(_mp(api, [(name, b"x" if name.startswith("attachment") else value)]), 400)
    assert f"part '{name}'" in detail
    assert f"'{NOT_A_UUID}' is not a UUID" in detail


@pytest.mark.parametrize("path", [f"/sessions/{NOT_A_UUID}", f"/feedback/{NOT_A_UUID}", f"/feedback?run={NOT_A_UUID}"])
def test_non_uuid_in_read_paths(api: httpx.Client, path: str) -> None:
    detail = detail_of(api.get(path), 400, 422)
    assert NOT_A_UUID in detail or "UUID" in detail
    assert re.search(r"session_id|feedback_id|'run'", detail), detail


# -- filters -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("param", ["filter", "trace_filter", "tree_filter"])
def test_unknown_filter_function(api: httpx.Client, param: str) -> None:
    detail = detail_of(api.post("/runs/query", json={param: 'foo(name, "x")'}), 400)
    assert "unknown function 'foo'" in detail
    assert f"field '{param}'" in detail
    assert "position 0" in detail


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ('eq(name "x")', 8),  # missing comma: the string is at offset 8
        ('and(eq(name, "x"), )', 19),  # empty argument
        ('eq(name, "x)', 9),  # unterminated string starts at 9
        ('eq(name, "x") extra', 14),  # trailing input
        ("eq(name, #)", 9),  # a character the language does not have
        ('eq(name, "x"', 12),  # ends early
    ],
)
def test_filter_syntax_error_names_the_position(api: httpx.Client, text: str, position: int) -> None:
    detail = detail_of(api.post("/runs/query", json={"filter": text}), 400)
    assert f"position {position}" in detail
    assert "'filter'" in detail


def test_filter_nested_too_deep_is_refused_not_a_crash(api: httpx.Client) -> None:
    deep = "and(" * 2000 + 'eq(name, "x")' + ")" * 2000
    detail = detail_of(api.post("/runs/query", json={"filter": deep}), 400)
    assert "deep" in detail
    assert re.search(r"position \d+", detail)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("gt(total_tokens, 99999999999999999999)", "out of range"),
        ("gt(latency, -99999999999999999)", "64-bit"),
    ],
)
def test_filter_numbers_beyond_64_bits_are_refused(api: httpx.Client, text: str, needle: str) -> None:
    detail = detail_of(api.post("/runs/query", json={"filter": text}), 400)
    assert needle in detail
    assert "position" in detail


# -- sizes ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(small_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=small_server.langsmith_url, timeout=20, verify=False) as client:
        yield client


def _big_run() -> dict:
    return new_run("sized", inputs={"blob": "x" * 6000})


def test_json_body_over_the_limit_is_413(small: httpx.Client) -> None:
    run = _big_run()
    detail = detail_of(small.post("/runs/batch", json={"post": [run]}), 413)
    assert "4096" in detail
    assert "body" in detail
    assert small.get(f"/runs/{run['id']}").status_code == 404


def test_multipart_body_over_the_limit_is_413(small: httpx.Client) -> None:
    run = _big_run()
    detail = detail_of(_mp(small, [(f"post.{run['id']}", run)]), 413)
    assert "4096" in detail


def test_chunked_body_over_the_limit_is_413(small: httpx.Client) -> None:
    """No Content-Length: the server counts while it reads, and stops at the limit."""
    data = json.dumps({"post": [_big_run()]}).encode()
    chunks = (data[i : i + 1000] for i in range(0, len(data), 1000))
    r = small.post("/runs/batch", content=chunks, headers={"content-type": "application/json"})
    assert "4096" in detail_of(r, 413)


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_compression_bomb_is_413(small: httpx.Client, encoding: str) -> None:
    run = new_run("bomb", inputs={"blob": "a" * 1_000_000})
    body, ctype = multipart_body([(f"post.{run['id']}", run)])
    packed = zstandard.ZstdCompressor().compress(body) if encoding == "zstd" else gzip.compress(body)
    assert len(packed) < 4096  # small on the wire: only decompression finds the size
    r = small.post("/runs/multipart", content=packed, headers={"content-type": ctype, "content-encoding": encoding})
    detail = detail_of(r, 413)
    assert "decompressed" in detail
    assert "4096" in detail
    assert small.get(f"/runs/{run['id']}").status_code == 404


def test_compressed_body_under_the_limit_is_accepted(small: httpx.Client) -> None:
    run = new_run("fits", inputs={"blob": "a" * 500})
    body, ctype = multipart_body([(f"post.{run['id']}", run)])
    packed = zstandard.ZstdCompressor().compress(body)
    r = small.post("/runs/multipart", content=packed, headers={"content-type": ctype, "content-encoding": "zstd"})
    assert r.status_code == 202, r.text
    assert small.get(f"/runs/{run['id']}").json()["inputs"] == {"blob": "a" * 500}


# -- feedback ------------------------------------------------------------------------------------------------


def test_feedback_that_is_not_json(api: httpx.Client) -> None:
    r = api.post("/feedback", content=b"great answer!", headers={"content-type": "text/plain"})
    detail = detail_of(r, 400)
    assert "malformed JSON" in detail
    assert "'body'" in detail


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([{"key": "k"}], "body"),
        ({"run_id": str(uuid.uuid4()), "score": 1}, "body.key"),
        ({"key": "", "score": 1}, "body.key"),
        ({"key": "k", "score": "high"}, "body.score"),
        ({"key": "k", "comment": 5}, "body.comment"),
        ({"key": "k", "created_at": "yesterday"}, "body.created_at"),
        ({"key": "k" * 501}, "body.key"),
        ({"key": "k", "comment": "nul \x00 inside"}, "body.comment"),
    ],
)
def test_bad_feedback_names_the_field(api: httpx.Client, body: object, field: str) -> None:
    detail = detail_of(api.post("/feedback", json=body), 400)
    assert f"'{field}'" in detail


def test_feedback_part_without_key_names_the_part(api: httpx.Client) -> None:
    fid = str(uuid.uuid4())
    detail = detail_of(_mp(api, [(f"feedback.{fid}", {"id": fid, "run_id": str(uuid.uuid4())})]), 400)
    assert f"feedback.{fid}" in detail
    assert "'key'" in detail
    assert api.get(f"/feedback/{fid}").status_code == 404


def test_feedback_update_with_nothing_to_change(api: httpx.Client) -> None:
    fid = api.post("/feedback", json={"key": "k", "score": 1}).json()["id"]
    detail = detail_of(api.patch(f"/feedback/{fid}", json={}), 400)
    assert "nothing to change" in detail


def test_unknown_ids_are_404_naming_them(api: httpx.Client) -> None:
    rid, fid, sid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert str(rid) in detail_of(api.get(f"/runs/{rid}"), 404)
    assert str(fid) in detail_of(api.get(f"/feedback/{fid}"), 404)
    assert str(fid) in detail_of(api.patch(f"/feedback/{fid}", json={"score": 1}), 404)
    assert str(fid) in detail_of(api.delete(f"/feedback/{fid}"), 404)
    assert str(sid) in detail_of(api.get(f"/sessions/{sid}"), 404)


# -- limits, cursors, projects -------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1, "many", None])
def test_bad_limit_on_runs_query(api: httpx.Client, limit: object) -> None:
    assert "limit" in detail_of(api.post("/runs/query", json={"limit": limit}), 400, 422)


def test_a_limit_over_the_page_size_is_one_full_page(api: httpx.Client) -> None:
    """The SDK sends list_runs(limit=N) as the page size: N over 1000 is a page of at most 1000, not an error."""
    r = api.post("/runs/query", json={"limit": 100_000})
    assert r.status_code == 200 and len(r.json()["runs"]) <= 1000


@pytest.mark.parametrize(
    "path",
    ["/sessions?limit=0", "/sessions?limit=abc", "/feedback?limit=0", "/feedback?limit=5000", "/feedback?offset=-1"],
)
def test_bad_limit_or_offset_on_lists(api: httpx.Client, path: str) -> None:
    detail = detail_of(api.get(path), 422)
    assert re.search(r"query\.(limit|offset)", detail), detail


@pytest.mark.parametrize(
    "cursor",
    ["garbage!!", "abc", base64.urlsafe_b64encode(b"not:a-cursor").decode(), base64.b64encode(b"\xff\xfe").decode()],
)
def test_unknown_cursor(api: httpx.Client, cursor: str) -> None:
    detail = detail_of(api.post("/runs/query", json={"cursor": cursor}), 400)
    assert "cursor" in detail


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 5}, "name"),
        ({"name": "a", "id": "x"}, "id"),
        ({"name": "nul\x00"}, "name"),
        ({"name": "x" * 501}, "name"),
    ],
)
def test_bad_project_creation_names_the_field(api: httpx.Client, body: dict, field: str) -> None:
    detail = detail_of(api.post("/sessions", json=body), 422)
    assert detail.startswith(f"{field}:"), detail


# -- one bad run rejects the whole request -------------------------------------------------------------------


def _assert_nothing_stored(api: httpx.Client, project: str, run_ids: list[str]) -> None:
    for rid in run_ids:
        assert api.get(f"/runs/{rid}").status_code == 404, rid
    assert project_id(api, project) is None  # not even the project was created


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"id": NOT_A_UUID}, "post[2].id"),
        ({"start_time": "yesterday"}, "post[2].start_time"),
        ({"inputs": ["not", "an", "object"]}, "post[2].inputs"),
        ({"name": "n\x00ul"}, "post[2].name"),
    ],
)
def test_batch_with_one_bad_run_stores_none(api: httpx.Client, project_name: str, bad: dict, field: str) -> None:
    good = [new_run(project_name), new_run(project_name)]
    third = {**new_run(project_name), **bad}
    detail = detail_of(api.post("/runs/batch", json={"post": [*good, third]}), 400)
    assert f"'{field}'" in detail
    _assert_nothing_stored(api, project_name, [g["id"] for g in good])


def test_batch_with_one_bad_patch_stores_none(api: httpx.Client, project_name: str) -> None:
    good = [new_run(project_name), new_run(project_name)]
    bad_patch = {"id": good[0]["id"], "end_time": "later"}
    detail = detail_of(api.post("/runs/batch", json={"post": good, "patch": [bad_patch]}), 400)
    assert "'patch[0].end_time'" in detail
    _assert_nothing_stored(api, project_name, [g["id"] for g in good])


def _runs_as_parts(runs: list[dict]) -> list[tuple[str, object]]:
    parts: list[tuple[str, object]] = []
    for run in runs:
        main = {k: v for k, v in run.items() if k != "inputs"}
        parts += [(f"post.{run['id']}", main), (f"post.{run['id']}.inputs", run["inputs"])]
    return parts


def test_multipart_with_one_bad_run_stores_none(api: httpx.Client, project_name: str) -> None:
    good = [new_run(project_name), new_run(project_name)]
    bad = {**new_run(project_name), "start_time": "yesterday"}
    fid = str(uuid.uuid4())
    parts = [
        *_runs_as_parts([good[0], bad, good[1]]),
        (f"feedback.{fid}", {"id": fid, "key": "k", "score": 1, "run_id": good[0]["id"]}),
    ]
    detail = detail_of(_mp(api, parts), 400)
    assert f"part 'post.{bad['id']}'" in detail  # names the part, not an index
    assert "start_time" in detail
    _assert_nothing_stored(api, project_name, [g["id"] for g in good])
    assert api.get(f"/feedback/{fid}").status_code == 404  # feedback of the request is not kept either


def test_multipart_with_one_bad_part_name_stores_none(api: httpx.Client, project_name: str) -> None:
    good = [new_run(project_name), new_run(project_name)]
    parts = [*_runs_as_parts(good), (f"post.{NOT_A_UUID}", {"id": NOT_A_UUID})]
    detail = detail_of(_mp(api, parts), 400)
    assert f"part 'post.{NOT_A_UUID}'" in detail
    _assert_nothing_stored(api, project_name, [g["id"] for g in good])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "n" * 501}, "body.name"),
        ({"run_type": "r" * 33}, "body.run_type"),
        ({"tags": ["ok", "t" * 501]}, "body.tags[1]"),
        ({"session_name": "s" * 501}, "body.session_name"),
        ({"error": "boom\x00"}, "body.error"),
        ({"extra": {"metadata": {"k" * 501: 1}}}, "body.extra.metadata"),
        ({"extra": {"metadata": {"thread_id": "t" * 501}}}, "body.extra.metadata.thread_id"),
    ],
)
def test_values_the_database_cannot_store_are_refused_on_both_dialects(
    api: httpx.Client, project_name: str, fields: dict, field: str
) -> None:
    """PostgreSQL refuses over-long VARCHARs and NUL in text; SQLite would keep them. Both answer 400."""
    run = new_run(project_name, **fields)
    detail = detail_of(api.post("/runs", json=run), 400)
    assert f"'{field}'" in detail
    assert api.get(f"/runs/{run['id']}").status_code == 404


# -- never a 500 ---------------------------------------------------------------------------------------------


def test_garbage_never_gets_a_500(api: httpx.Client) -> None:
    rid = str(uuid.uuid4())
    mp_body, mp_type = multipart_body([(f"post.{rid}", {"id": rid})])
    garbage: list[tuple[str, str, dict]] = [
        ("POST", "/runs/multipart", {"content": b"\x00\xff" * 50, "headers": {"content-type": mp_type}}),
        ("POST", "/runs/multipart", {"content": mp_body[:40], "headers": {"content-type": mp_type}}),
        ("POST", "/runs/multipart", {"content": b"", "headers": {"content-type": mp_type}}),
        (
            "POST",
            "/runs/multipart",
            {
                "content": b"--x\r\nContent-Disposition: form-data\r\n\r\n{}\r\n--x--\r\n",
                "headers": {"content-type": "multipart/form-data; boundary=x"},
            },
        ),
        (
            "POST",
            "/runs/multipart",
            {"content": mp_body, "headers": {"content-type": mp_type, "content-encoding": "zstd, gzip"}},
        ),
        ("POST", "/runs/batch", {"content": b"[" * 5000 + b"]" * 5000}),
        ("POST", "/runs/batch", {"content": b"null"}),
        ("POST", "/runs/batch", {"json": {"post": [None, 1, "x"]}}),
        (
            "POST",
            "/runs/batch",
            {"json": {"post": [{"id": rid, "events": [None, {"name": "new_token"}]}], "patch": "x"}},
        ),
        ("POST", "/runs", {"json": {"id": rid, "start_time": "9999-99-99"}}),
        ("POST", "/runs", {"content": json.dumps({"id": rid, "total_tokens": 10**30}).encode()}),
        ("PATCH", f"/runs/{rid}", {"json": "just a string"}),
        ("PATCH", "/runs/%00", {"json": {}}),
        ("POST", "/runs/query", {"json": {"filter": 'eq(name, "\x00")', "session": []}}),
        ("POST", "/runs/query", {"json": {"filter": "gt(total_tokens, 99999999999)"}}),
        ("POST", "/runs/query", {"json": {"select": ["no_such_field"], "order": "sideways"}}),
        ("POST", "/runs/query", {"json": {"start_time": "not a time", "limit": 1.5}}),
        ("GET", "/sessions", {"params": {"name": "nul\x00", "include_stats": "maybe"}}),
        ("GET", "/sessions", {"params": {"name": "nul\x00"}}),
        ("GET", "/feedback", {"params": {"key": "nul\x00", "run": str(uuid.uuid4())}}),
        ("POST", "/feedback", {"json": {"key": "k", "score": 1e308, "value": {"deep": [[[[]]]]}}}),
        ("POST", "/sessions", {"json": {"name": "n", "extra": "not an object"}}),
        ("DELETE", "/runs/batch", {}),
    ]
    for method, path, kwargs in garbage:
        r = api.request(method, path, **kwargs)
        assert r.status_code < 500, (method, path, r.status_code, r.text)
        if r.status_code >= 400:
            detail_of(r, r.status_code)


# -- accepted silently before, refused now (naming the field) ---------------------------------------------------


@pytest.mark.parametrize("run_type", ["agent", "bogus"])
def test_an_unknown_run_type_is_422_on_every_write_path(api: httpx.Client, project_name: str, run_type: str) -> None:
    run = new_run(project_name, run_type=run_type)
    for r in (
        api.post("/runs", json=run),
        api.post("/runs/batch", json={"post": [run]}),
        _mp(api, [(f"post.{run['id']}", run)]),
    ):
        detail = detail_of(r, 422)
        assert f"'{run_type}' is not a run type" in detail and "run_type" in detail
    assert api.patch(f"/runs/{run['id']}", json={"run_type": run_type}).status_code == 422
    assert api.get(f"/runs/{run['id']}").status_code == 404


def test_a_garbage_dotted_order_is_refused(api: httpx.Client, project_name: str) -> None:
    run = new_run(project_name, dotted_order="garbage!!")
    detail = detail_of(api.post("/runs/batch", json={"post": [run]}), 400)
    assert "'post[0].dotted_order'" in detail and "garbage!!" in detail
    assert api.get(f"/runs/{run['id']}").status_code == 404


def test_a_patch_with_a_non_string_error_is_refused(api: httpx.Client, project_name: str) -> None:
    run = new_run(project_name)
    assert api.post("/runs", json=run).status_code == 202
    detail = detail_of(api.patch(f"/runs/{run['id']}", json={"error": 5}), 400)
    assert "'body.error'" in detail and "expected a string" in detail
    assert api.get(f"/runs/{run['id']}").json()["error"] is None


def test_a_multipart_part_whose_body_names_another_run_is_refused(api: httpx.Client, project_name: str) -> None:
    run, other = new_run(project_name), str(uuid.uuid4())
    detail = detail_of(_mp(api, [(f"post.{run['id']}", {**run, "id": other})]), 400)
    assert f"post.{run['id']}" in detail and other in detail and "differs" in detail
    assert api.get(f"/runs/{run['id']}").status_code == 404
    assert api.get(f"/runs/{other}").status_code == 404


def test_an_unknown_select_field_is_refused_naming_it(api: httpx.Client) -> None:
    r = api.post("/runs/query", json={"select": ["inputs", "no_such_field"]})
    detail = detail_of(r, 422)
    assert "select.1" in detail and "'no_such_field'" in detail


@pytest.mark.parametrize("param", ["filter", "trace_filter", "tree_filter"])
def test_a_nul_in_a_filter_names_the_filter_and_position(api: httpx.Client, param: str) -> None:
    detail = detail_of(api.post("/runs/query", json={param: 'eq(name, "a\u0000b")'}), 400)
    assert f"field '{param}'" in detail and "position 9" in detail and "NUL" in detail


@pytest.mark.parametrize(("path", "param"), [("/sessions", "name"), ("/feedback", "key")])
def test_a_nul_in_a_query_parameter_is_refused_or_harmless(api: httpx.Client, path: str, param: str) -> None:
    r = api.get(path, params={param: "a\x00b"})
    if r.status_code == 200:  # SQLite compares it (no match); PostgreSQL refuses it, naming the parameter
        assert r.json() == []
    else:
        assert f"'{param}'" in detail_of(r, 400)


def test_a_huge_bad_value_is_not_echoed_whole(api: httpx.Client, project_name: str) -> None:
    huge = "x" * 100_000
    for r in (
        api.post("/runs", json={**new_run(project_name), "id": huge}),
        api.post("/runs", json={**new_run(project_name), "start_time": huge}),
        api.get(f"/runs/{huge[:60_000]}"),
        api.post("/feedback", json={"key": "k", "run_id": huge}),
        _mp(api, [(f"post.{huge[:5000]}", {})]),
    ):
        assert 400 <= r.status_code < 500, r.text[:200]
        assert len(r.content) < 3000, (r.request.url.path[:50], len(r.content))
