"""``/tt/v1/aliases`` on the shared live server, both dialects: set, read with history, roll back, remove; the
OpenAI model list and retrieve see them; bad input is a 4xx naming the field. On PostgreSQL a second server on the
same store sees a change on its next request (aliases are read per request, never cached)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer, drop_postgres_database, make_postgres_database
from tests.server.support import detail_of
from tracetune.models import DEFAULT_MODEL_ID


@pytest.fixture(scope="module")
def client(live_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30, verify=False) as c:
        yield c


def name() -> str:
    return f"bot-{uuid.uuid4().hex[:8]}"


def test_set_read_rollback_remove(client) -> None:
    bot, front = name(), name()
    first = client.put(f"/tt/v1/aliases/{bot}", json={"model": DEFAULT_MODEL_ID})
    assert first.status_code == 200, first.text
    assert first.json() | {"created_at": None} == {"name": bot, "model": DEFAULT_MODEL_ID, "version": 1,
                                                   "note": "set", "created_at": None}  # fmt: skip
    assert client.put(f"/tt/v1/aliases/{front}", json={"model": bot}).json()["version"] == 1  # an alias of an alias
    assert client.put(f"/tt/v1/aliases/{bot}", json={"model": front}).status_code == 409  # a cycle
    models = client.get("/v1/models").json()["data"]
    ids = [m["id"] for m in models]
    assert bot in ids and front in ids
    # each base model says which engine serves it (the built-in GGUF: llama.cpp, the CPU default)
    assert {m["id"]: m["engine"] for m in models}[DEFAULT_MODEL_ID] == "llamacpp"
    assert client.get(f"/v1/models/{DEFAULT_MODEL_ID}").json()["engine"] == "llamacpp"
    assert client.get(f"/v1/models/{front}").json()["id"] == front
    read = client.get(f"/tt/v1/aliases/{bot}").json()
    assert read["model"] == DEFAULT_MODEL_ID and [h["version"] for h in read["history"]] == [1]
    assert client.post(f"/tt/v1/aliases/{bot}/rollback").status_code == 400  # nothing earlier
    other = name()
    client.put(f"/tt/v1/aliases/{other}", json={"model": DEFAULT_MODEL_ID})
    assert client.put(f"/tt/v1/aliases/{bot}", json={"model": other}).json()["version"] == 2
    rolled = client.post(f"/tt/v1/aliases/{bot}/rollback").json()
    assert (rolled["version"], rolled["model"], rolled["note"]) == (3, DEFAULT_MODEL_ID, "rollback to v1")
    assert client.delete(f"/tt/v1/aliases/{front}").json()["model"] is None
    assert client.get(f"/tt/v1/aliases/{front}").status_code == 404
    assert client.get(f"/v1/models/{front}").status_code == 404
    assert front not in [a["name"] for a in client.get("/tt/v1/aliases").json()["data"]]


@pytest.mark.parametrize(
    ("alias", "body", "status", "words"),
    [
        ("has space", {"model": DEFAULT_MODEL_ID}, 400, "an alias name is"),
        ("ft:mine", {"model": DEFAULT_MODEL_ID}, 400, "an alias name is"),
        (DEFAULT_MODEL_ID, {"model": DEFAULT_MODEL_ID}, 409, "is a base model's id"),
        ("ok-name", {"model": "no-such-model"}, 404, "no-such-model"),
        ("ok-name", {"model": ""}, 422, "model"),  # the body's shape: 422 naming the field, as /tt/v1 does
        ("ok-name", {"model": DEFAULT_MODEL_ID, "extra": 1}, 422, "extra"),
    ],
)
def test_bad_input_names_the_field(client, alias, body, status, words) -> None:
    detail = detail_of(client.put(f"/tt/v1/aliases/{alias}", json=body), status)
    assert words in detail, detail
    assert client.get("/tt/v1/aliases/ok-name").status_code == 404  # nothing was written


@pytest.mark.postgres
def test_a_second_server_on_the_store_sees_a_change_on_its_next_request(postgres_admin_url, tmp_path) -> None:
    from tracetune.config import Settings
    from tracetune.store import open_store

    url, db = make_postgres_database(postgres_admin_url)
    servers = [LiveServer(Settings(home=tmp_path / f"home{i}", database_url=url), open_store(url)) for i in (0, 1)]
    try:
        with httpx.Client(base_url=servers[0].url, timeout=30) as a, httpx.Client(base_url=servers[1].url) as b:
            bot = name()
            assert b.get(f"/v1/models/{bot}").status_code == 404
            assert a.put(f"/tt/v1/aliases/{bot}", json={"model": DEFAULT_MODEL_ID}).status_code == 200
            assert b.get(f"/v1/models/{bot}").status_code == 200  # no wait: read per request
            a.delete(f"/tt/v1/aliases/{bot}")
            assert b.get(f"/v1/models/{bot}").status_code == 404
    finally:
        for server in servers:
            server.stop()
            server.store.close()
        drop_postgres_database(postgres_admin_url, db)


def test_a_tuned_model_is_deleted_unless_an_alias_names_it(client, live_server) -> None:
    """``DELETE /v1/models/{id}``: a base model is 403, an unknown one 404, one that a stored alias names 409 (the
    app calling the alias would break), and otherwise it is gone from the list."""
    import time

    ws = live_server.store.workspaces.ensure("default")
    short = uuid.uuid4().hex[:8]
    model_id = f"ft:{DEFAULT_MODEL_ID}:default:del:{short}"
    adapter = live_server.settings.home / "jobs" / short / "adapter"  # what serving it looks for
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    with live_server.store.db.write() as conn:
        live_server.store.models.add(conn, {"workspace_id": ws.id, "id": model_id, "base_model": DEFAULT_MODEL_ID,
                                            "job_id": None, "adapter_dir": f"jobs/{short}/adapter",
                                            "created_at": int(time.time())})  # fmt: skip
    base = client.delete(f"/v1/models/{DEFAULT_MODEL_ID}")
    assert base.status_code == 403 and base.json()["error"]["code"] == "model_not_deletable"
    assert client.delete(f"/v1/models/ft:{DEFAULT_MODEL_ID}:default:del:nope").status_code == 404
    bot = name()
    assert client.put(f"/tt/v1/aliases/{bot}", json={"model": model_id}).status_code == 200
    named = client.delete(f"/v1/models/{model_id}")
    assert named.status_code == 409 and f"alias {bot} names" in named.json()["error"]["message"]
    assert client.delete(f"/tt/v1/aliases/{bot}").status_code in (200, 204)
    gone = client.delete(f"/v1/models/{model_id}")
    assert gone.status_code == 200 and gone.json()["deleted"] is True, gone.text
    assert client.get(f"/v1/models/{model_id}").status_code == 404
