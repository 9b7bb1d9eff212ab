"""The OpenAI-compatible /v1 surface (files, models), driven by the unmodified ``openai`` client in strict mode,
on both dialects; errors under /v1 are OpenAI-shaped, everywhere else they stay ``{"detail": …}``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import LiveServer
from tests.server.support import detail_of
from tracetune.store.blobs import Blobs

TRAIN = b"".join(
    json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}).encode()
    + b"\n"
    for i in range(3)
)


def _client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, _strict_response_validation=True)


@pytest.fixture(scope="module")
def oai(live_server: LiveServer) -> Iterator[openai.OpenAI]:
    with _client(live_server) as client:
        yield client


def _error_body(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def _blobs(server: LiveServer) -> set[Path]:
    root = server.settings.home / "files"
    return {p for p in root.rglob("*")} if root.exists() else set()


# -- files -------------------------------------------------------------------------------------------------


def test_upload_retrieve_content_delete(oai: openai.OpenAI, live_server: LiveServer) -> None:
    created = oai.files.create(file=("train.jsonl", TRAIN, "application/jsonl"), purpose="fine-tune")
    assert created.id.startswith("file-") and len(created.id) == 5 + 24
    assert (created.object, created.filename, created.purpose, created.bytes) == (
        "file",
        "train.jsonl",
        "fine-tune",
        len(TRAIN),
    )
    assert created.status == "processed"
    assert created.expires_at is None

    assert oai.files.retrieve(created.id) == created
    assert oai.files.wait_for_processing(created.id, poll_interval=0.01).status == "processed"
    assert oai.files.content(created.id).read() == TRAIN
    blob = live_server.settings.home / "files"
    assert any(p.name == created.id for p in blob.rglob("*"))

    deleted = oai.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    assert not any(p.name == created.id for p in blob.rglob("*"))  # the blob went with the row
    with pytest.raises(openai.NotFoundError) as info:
        oai.files.retrieve(created.id)
    err = _error_body(info.value)
    assert err["type"] == "not_found_error" and err["code"] == "file_not_found"
    assert created.id in err["message"]
    with pytest.raises(openai.NotFoundError):
        oai.files.content(created.id)
    with pytest.raises(openai.NotFoundError):
        oai.files.delete(created.id)


def test_other_purposes_accept_any_bytes_and_expiry(oai: openai.OpenAI) -> None:
    data = bytes(range(256))
    f = oai.files.create(
        file=("photo.bin", data), purpose="vision", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert (f.purpose, f.bytes, f.filename) == ("vision", 256, "photo.bin")
    assert f.expires_at == f.created_at + 3600
    assert oai.files.content(f.id).read() == data


def test_list_auto_paginates_each_file_once(oai: openai.OpenAI) -> None:
    mine = [oai.files.create(file=(f"b{i}.jsonl", b'{"n": %d}\n' % i), purpose="batch").id for i in range(5)]
    for order in ("desc", "asc"):
        page = oai.files.list(purpose="batch", limit=2, order=order)  # type: ignore[arg-type]
        assert len(page.data) == 2 and page.has_more
        seen = [f.id for f in page]  # auto-pagination: after=<last id> while has_more
        assert len(seen) == len(set(seen))
        assert set(mine) <= set(seen)
        ours = [i for i in seen if i in mine]
        assert ours == (mine[::-1] if order == "desc" else mine)  # newest first by default
        assert all(f.purpose == "batch" for f in oai.files.list(purpose="batch", limit=3))
    full = oai.files.list(purpose="batch")
    assert not full.has_more and set(mine) <= {f.id for f in full.data}
    assert not {f.id for f in oai.files.list(purpose="user_data")} & set(mine)


def test_non_jsonl_fine_tune_file_is_refused_and_leaves_nothing(oai: openai.OpenAI, live_server: LiveServer) -> None:
    before = _blobs(live_server)
    count = len(list(oai.files.list()))
    bad = [
        (TRAIN + b"not json\n", 4, "not valid JSON"),
        (b'{"a": 1}\n[1, 2]\n', 2, "not an object"),
        (b'{"a": 1}\n\xff\xfe\n', 2, "not UTF-8"),
        (b'{"a": 1}\n\n{"b": 2}\n', 2, "blank line"),
        (b"", None, "empty"),
    ]
    for data, line, needle in bad:
        with pytest.raises(openai.BadRequestError) as info:
            oai.files.create(file=("train.jsonl", data), purpose="fine-tune")
        err = _error_body(info.value)
        assert (err["type"], err["param"], err["code"]) == ("invalid_request_error", "file", "invalid_file_format")
        assert needle in err["message"], err
        if line is not None:
            assert f"line {line}" in err["message"], err
        assert info.value.param == "file" and info.value.code == "invalid_file_format"
    assert _blobs(live_server) == before  # no blob, no temp file
    assert len(list(oai.files.list())) == count


def test_unknown_purpose(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.files.create(file=("a.txt", b"x"), purpose="nonsense")  # type: ignore[arg-type]
    err = _error_body(info.value)
    assert err["param"] == "purpose" and "fine-tune" in err["message"] and "'nonsense'" in err["message"]


def test_bad_expiry(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.files.create(
            file=("a.txt", b"x"), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 5}
        )
    assert _error_body(info.value)["param"] == "expires_after[seconds]"


def test_missing_file_part_and_not_multipart(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url + "/v1", timeout=20, verify=False) as http:
        r = http.post("/files", data={"purpose": "fine-tune"}, files={"other": ("x", b"1")})
        assert r.status_code == 400
        assert r.json()["error"]["param"] == "other"
        r = http.post("/files", files={"purpose": (None, b"fine-tune")})
        assert r.status_code == 400
        err = r.json()["error"]
        assert (err["param"], err["code"]) == ("file", "missing_required_parameter")
        assert "'file'" in err["message"]
        r = http.post("/files", json={"purpose": "fine-tune"})
        assert r.status_code == 400
        assert r.json()["error"]["param"] == "Content-Type"
        r = http.post("/files", files={"purpose": (None, b"fine-tune"), "file": (None, b"{}")})  # no filename
        assert r.status_code == 400 and r.json()["error"]["param"] == "file"


def test_bad_query_and_unknown_route_are_openai_shaped(oai: openai.OpenAI, live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=20, verify=False) as http:
        r = http.get("/v1/files", params={"limit": 0})
        assert r.status_code == 400
        err = r.json()["error"]
        assert (err["type"], err["param"]) == ("invalid_request_error", "limit")
        r = http.get("/v1/files", params={"after": "file-nope"})
        assert r.status_code == 404 and r.json()["error"]["param"] == "after"
        r = http.get("/v1/nothing/here")
        assert r.status_code == 404
        assert r.json()["error"] == {
            "message": "Invalid URL (GET /v1/nothing/here)",
            "type": "not_found_error",
            "param": None,
            "code": "unknown_url",
        }
        # the LangSmith surface keeps its own shape
        assert "not found" in detail_of(http.get(f"/api/v1/runs/{uuid.uuid4()}"), 404)
        detail_of(http.get("/api/v1/nothing/here"), 404)
        detail_of(http.get("/api/v1/sessions", params={"limit": 0}), 422)


def test_files_are_scoped_to_the_workspace(store, tmp_path: Path) -> None:
    from tracetune.errors import NotFound

    a, b = store.workspaces.ensure("ws-a"), store.workspaces.ensure("ws-b")
    blobs = Blobs(tmp_path)
    row = store.files.create(a.id, blobs, filename="x.jsonl", purpose="fine-tune", data=b'{"a": 1}\n')
    assert (tmp_path / "files" / row["blob_path"]).read_bytes() == b'{"a": 1}\n'
    assert store.files.get(a.id, row["id"])["bytes"] == 9
    for call in (
        lambda: store.files.get(b.id, row["id"]),
        lambda: store.files.blob(b.id, row["id"], blobs),
        lambda: store.files.delete(b.id, row["id"], blobs),
    ):
        with pytest.raises(NotFound):
            call()
    assert store.files.list(b.id) == ([], False)
    assert [r["id"] for r in store.files.list(a.id)[0]] == [row["id"]]
    store.files.delete(a.id, row["id"], blobs)
    assert not (tmp_path / "files" / row["blob_path"]).exists()


# -- body size ---------------------------------------------------------------------------------------------


def test_upload_over_the_body_limit_is_413(small_server: LiveServer) -> None:
    with _client(small_server) as oai:
        with pytest.raises(openai.APIStatusError) as info:
            oai.files.create(file=("big.jsonl", b'{"a": "' + b"x" * 6000 + b'"}\n'), purpose="fine-tune")
        assert info.value.status_code == 413
        err = _error_body(info.value)
        assert err["param"] == "body" and "4096" in err["message"]
        assert list(oai.files.list()) == []
    assert _blobs(small_server) == set()


# -- models ------------------------------------------------------------------------------------------------


def test_models_list_and_retrieve(oai: openai.OpenAI) -> None:
    models = oai.models.list()
    ids = [m.id for m in models]
    assert "smollm2-135m-instruct" in ids
    m = oai.models.retrieve("smollm2-135m-instruct")
    assert (m.id, m.object, m.owned_by) == ("smollm2-135m-instruct", "model", "tracetune")
    assert isinstance(m.created, int) and m.created > 0
    with pytest.raises(openai.NotFoundError) as info:
        oai.models.retrieve("nope")
    err = _error_body(info.value)
    assert (err["code"], err["param"], err["type"]) == ("model_not_found", "model", "not_found_error")
    assert "'nope'" in err["message"]
    assert info.value.code == "model_not_found"
