"""API keys and workspaces: open on loopback without keys; once a key exists every request needs one, and a
key sees only its own workspace's projects, runs and feedback. Servers of their own (keys would close the
shared server to every other test)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, _need_postgres, drop_postgres_database, make_postgres_database
from tests.server.support import detail_of, get_run, new_run, project_id


def _server(home: Path, url: str) -> LiveServer:
    from tracetune.config import Settings
    from tracetune.store import open_store

    return LiveServer(Settings(home=home, database_url=url), open_store(url, sqlite_synchronous="NORMAL"))


def test_open_mode_on_loopback_uses_the_default_workspace(tmp_path: Path, project_name: str) -> None:
    server = _server(tmp_path, f"sqlite:///{tmp_path / 'open.db'}")
    try:
        with httpx.Client(base_url=server.langsmith_url, verify=False) as api:
            run = new_run(project_name)
            assert api.post("/runs", json=run).status_code == 202
            # in open mode a key is not checked: it is not needed, and a stray one does not lock anyone out
            other = new_run(project_name)
            r = api.post("/runs", json=other, headers={"x-api-key": "tt_whatever"})
            assert r.status_code == 202
            assert get_run(api, other["id"])["session_id"] == project_id(api, project_name)
        default = server.store.workspaces.get("default")
        stored = server.store.runs.get(default.id, uuid.UUID(run["id"]))
        assert stored is not None and stored["name"] == "chain"
        assert [ws.name for ws in server.store.workspaces.list()] == ["default"]
    finally:
        server.stop()
        server.store.close()


@dataclass
class KeyedServer:
    server: LiveServer
    key_a: str
    key_b: str

    def client(self, key: str | None, *, bearer: bool = False) -> httpx.Client:
        headers = {}
        if key is not None:
            headers = {"authorization": f"Bearer {key}"} if bearer else {"x-api-key": key}
        # verify=False: plain http on loopback, and it skips loading CA certificates (~30 ms a client)
        return httpx.Client(base_url=self.server.langsmith_url, headers=headers, timeout=20, verify=False)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def keyed(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[KeyedServer]:
    """A server of its own, with keys for workspaces ws-a and ws-b."""
    home = tmp_path_factory.mktemp(f"keyed-{request.param}")
    cleanup = None
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'tracetune.db'}"
    else:
        admin = _need_postgres()
        url, name = make_postgres_database(admin)
        cleanup = (admin, name)
    server = _server(home, url)
    key_a, _ = server.store.workspaces.create_key("ws-a")
    key_b, _ = server.store.workspaces.create_key("ws-b", name="b's laptop")
    try:
        yield KeyedServer(server, key_a, key_b)
    finally:
        server.stop()
        server.store.close()
        if cleanup:
            drop_postgres_database(*cleanup)


ANY_ID = "0d6f3a52-7e1b-4c9d-8a24-5f3e6b1c9d70"  # fixed: it names parametrized tests (xdist workers must agree)
PROTECTED = [
    ("GET", "/sessions", None),
    ("POST", "/sessions", {"name": "x"}),
    ("POST", "/runs/multipart", None),
    ("POST", "/runs/batch", {"post": []}),
    ("POST", "/runs", {"id": ANY_ID}),
    ("PATCH", f"/runs/{ANY_ID}", {}),
    ("POST", "/runs/query", {}),
    ("GET", f"/runs/{ANY_ID}", None),
    ("POST", "/feedback", {"key": "k"}),
    ("GET", "/feedback", None),
    ("POST", "/feedback/tokens", {"run_id": ANY_ID, "feedback_key": "k"}),
    ("GET", f"/feedback/tokens?run_id={ANY_ID}", None),
    ("GET", "/annotation-queues", None),
    ("POST", "/annotation-queues", {"name": "q"}),
    ("GET", "/datasets", None),
    ("POST", "/datasets", {"name": "d"}),
    ("GET", "/examples", None),
    ("POST", "/examples/bulk", []),
    ("GET", f"/platform/annotation-queues/{ANY_ID}/items?status=archived", None),
    # outside the LangSmith base: from the server's root
    ("POST", "/api/v2/runs/query", {"project_ids": [ANY_ID]}),
    ("GET", f"/api/v2/runs/{ANY_ID}?project_id={ANY_ID}", None),
    ("POST", "/api/v2/traces/query", {"project_id": ANY_ID}),
    ("POST", "/api/v2/threads/query", {"project_id": ANY_ID}),
    ("POST", "/api/v1/otel/v1/traces", {}),
    ("POST", "/otel/v1/traces", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_no_key_or_a_wrong_key_is_401(keyed: KeyedServer, method: str, path: str, body: object) -> None:
    for key, needle in ((None, "requires an API key"), ("tt_" + "x" * 43, "invalid"), ("", "requires")):
        with keyed.client(key) as api:
            url = keyed.server.url + path if path.startswith(("/api/", "/otel/")) else path
            r = api.request(method, url, json=body)
        assert needle in detail_of(r, 401), (key, r.text)


def test_info_and_health_stay_open(keyed: KeyedServer) -> None:
    with keyed.client(None) as api:
        assert api.get("/info").json()["instance_flags"]["zstd_compression_enabled"] is True
        assert api.get(keyed.server.url + "/healthz").json()["status"] == "ok"


def test_bearer_token_is_accepted(keyed: KeyedServer, project_name: str) -> None:
    with keyed.client(keyed.key_a, bearer=True) as api:
        assert api.post("/runs", json=new_run(project_name)).status_code == 202
        assert project_id(api, project_name) is not None


def v2_query(project: Any) -> dict[str, Any]:
    """A v2 runs query over ``project`` wide enough for the tests' fixed start time (T0)."""
    return {"project_ids": [str(project)], "min_start_time": "2000-01-01T00:00:00Z", "selects": ["ID"]}


def test_a_key_never_sees_another_workspace(keyed: KeyedServer, project_name: str) -> None:
    V2 = keyed.server.url + "/api/v2"  # the v2 API, beside the client's base /api/v1
    run = new_run(project_name, name="b-secret", inputs={"ssn": "123"})
    fid = str(uuid.uuid4())
    with keyed.client(keyed.key_b) as b:
        assert b.post("/runs", json=run).status_code == 202
        assert b.post("/feedback", json={"id": fid, "key": "k", "score": 1, "run_id": run["id"]}).is_success
        b_pid = project_id(b, project_name)
        assert b_pid is not None
        assert get_run(b, run["id"])["inputs"] == {"ssn": "123"}
        assert [r["id"] for r in b.post(V2 + "/runs/query", json=v2_query(b_pid)).json()["items"]] == [run["id"]]

    with keyed.client(keyed.key_a) as a:
        assert a.get("/sessions", params={"name": project_name}).json() == []
        assert project_name not in [p["name"] for p in a.get("/sessions", params={"limit": 1000}).json()]
        assert str(b_pid) in detail_of(a.get(f"/sessions/{b_pid}"), 404)
        assert a.post("/runs/query", json={"session": [b_pid]}).json()["runs"] == []
        assert a.post("/runs/query", json={"id": [run["id"]]}).json()["runs"] == []
        assert a.post("/runs/query", json={"trace": run["id"]}).json()["runs"] == []
        assert run["id"] in detail_of(a.get(f"/runs/{run['id']}"), 404)
        assert a.post(V2 + "/runs/query", json=v2_query(b_pid)).json()["items"] == []
        assert a.post(V2 + "/traces/query", json={**v2_query(b_pid), "project_id": b_pid}).json()["items"] == []
        assert a.post(V2 + "/threads/query", json={**v2_query(b_pid), "project_id": b_pid}).json()["items"] == []
        assert run["id"] in detail_of(a.get(f"{V2}/runs/{run['id']}", params={"project_id": b_pid}), 404)
        assert a.get(f"{V2}/traces/{run['id']}/runs", params={"project_id": b_pid}).json()["items"] == []
        assert a.get("/feedback", params={"run": run["id"]}).json() == []
        assert fid not in [f["id"] for f in a.get("/feedback", params={"limit": 1000}).json()]
        assert fid in detail_of(a.get(f"/feedback/{fid}"), 404)
        assert fid in detail_of(a.patch(f"/feedback/{fid}", json={"score": 0}), 404)
        assert fid in detail_of(a.delete(f"/feedback/{fid}"), 404)
        # writing under B's ids makes A's own records; B's are untouched
        assert a.post("/runs", json={**run, "name": "a-own", "inputs": {"mine": True}}).status_code == 202
        assert a.patch(f"/runs/{run['id']}", json={"outputs": {"by": "a"}}).status_code == 202
        assert get_run(a, run["id"])["name"] == "a-own"
        assert a.post("/feedback", json={"id": fid, "key": "k", "score": 0}).status_code == 409

    with keyed.client(keyed.key_b) as b:
        mine = get_run(b, run["id"])
        assert (mine["name"], mine["inputs"], mine["outputs"]) == ("b-secret", {"ssn": "123"}, None)
        assert mine["feedback_stats"] == {"k": {"n": 1, "avg": 1.0}}
        assert b.get(f"/feedback/{fid}").json()["score"] == 1.0


def test_a_feedback_token_is_its_own_key_and_stays_in_its_workspace(keyed: KeyedServer, project_name: str) -> None:
    run = new_run(project_name)
    with keyed.client(keyed.key_a) as a:
        assert a.post("/runs", json=run).status_code == 202
        token = a.post("/feedback/tokens", json={"run_id": run["id"], "feedback_key": "thumbs"}).json()
    with httpx.Client() as anonymous:  # no key at all: the token is the credential
        assert anonymous.get(token["url"], params={"score": 1}).status_code == 200
    with keyed.client(keyed.key_b) as b:
        assert b.get("/feedback/tokens", params={"run_id": run["id"]}).json() == []
        assert b.get("/feedback", params={"run": run["id"]}).json() == []
    with keyed.client(keyed.key_a) as a:
        assert [t["id"] for t in a.get("/feedback/tokens", params={"run_id": run["id"]}).json()] == [token["id"]]
        (fb,) = a.get("/feedback", params={"run": run["id"]}).json()
        assert (fb["key"], fb["score"]) == ("thumbs", 1.0)


def test_annotation_queues_stay_in_their_workspace(keyed: KeyedServer, project_name: str) -> None:
    run = new_run(project_name)
    with keyed.client(keyed.key_a) as a:
        assert a.post("/runs", json=run).status_code == 202
        queue = a.post("/annotation-queues", json={"name": "a-review"}).json()
        assert a.post(f"/annotation-queues/{queue['id']}/runs", json=[run["id"]]).status_code == 200
    with keyed.client(keyed.key_b) as b:
        assert b.get("/annotation-queues").json() == []
        assert queue["id"] in detail_of(b.get(f"/annotation-queues/{queue['id']}"), 404)
        assert b.post(f"/annotation-queues/{queue['id']}/runs", json=[run["id"]]).status_code == 404
        items = b.get(f"/platform/annotation-queues/{queue['id']}/items", params={"status": "needs_my_review"})
        assert items.status_code == 404
        # B's own queue cannot take A's run either
        own = b.post("/annotation-queues", json={"name": "b-review"}).json()
        assert run["id"] in detail_of(b.post(f"/annotation-queues/{own['id']}/runs", json=[run["id"]]), 404)


def test_datasets_examples_and_experiments_stay_in_their_workspace(keyed: KeyedServer) -> None:
    with keyed.client(keyed.key_a) as a:
        ds = a.post("/datasets", json={"name": "shared-name"}).json()
        (ex,) = a.post("/examples/bulk", json=[{"dataset_id": ds["id"], "inputs": {"q": "a's"}}]).json()
        exp = [a.post("/sessions", json={"name": f"exp-{i}", "reference_dataset_id": ds["id"]}).json() for i in (1, 2)]
        ids = [e["id"] for e in exp]
        comparison = {"experiment_ids": ids, "reference_dataset_id": ds["id"]}
        assert a.post("/datasets/comparative", json=comparison).status_code == 200
    with keyed.client(keyed.key_b) as b:
        assert b.get("/datasets").json() == [] and b.get("/examples").json() == []
        assert b.get("/sessions", params={"reference_dataset": ds["id"]}).json() == []
        for path in (f"/datasets/{ds['id']}", f"/datasets/{ds['id']}/versions", f"/datasets/{ds['id']}/openai_ft",
                     f"/examples/{ex['id']}", f"/datasets/{ds['id']}/comparative"):  # fmt: skip
            assert ds["id"] in detail_of(b.get(path), 404) or ex["id"] in detail_of(b.get(path), 404)
        assert b.get("/examples", params={"dataset": ds["id"]}).status_code == 404
        assert b.post("/examples", json={"dataset_id": ds["id"], "inputs": {}}).status_code == 404
        assert b.patch(f"/examples/{ex['id']}", json={"inputs": {"q": "b's"}}).status_code == 404
        assert b.delete(f"/examples/{ex['id']}").status_code == 404
        assert b.delete(f"/datasets/{ds['id']}").status_code == 404
        assert b.post("/sessions", json={"name": "exp-b", "reference_dataset_id": ds["id"]}).status_code == 404
        assert b.post("/datasets/comparative", json=comparison).status_code == 404
        assert b.post("/datasets", json={"name": "shared-name"}).status_code == 200  # names are per workspace
        assert b.post("/examples", json={"dataset_id": ds["id"], "id": ex["id"], "inputs": {}}).status_code == 404
    with keyed.client(keyed.key_a) as a:
        (still,) = a.get("/examples", params={"dataset": ds["id"]}).json()
        assert still["inputs"] == {"q": "a's"}
        assert len(a.get("/datasets/" + ds["id"] + "/comparative").json()) == 1


def test_revoked_key_is_refused(keyed: KeyedServer, project_name: str) -> None:
    store = keyed.server.store
    key, info = store.workspaces.create_key("ws-a", name="short-lived")
    with keyed.client(key) as api:
        assert api.post("/runs", json=new_run(project_name)).status_code == 202
        assert store.workspaces.revoke_key(info.prefix) == 1
        assert "invalid" in detail_of(api.get("/sessions"), 401)
    with keyed.client(keyed.key_a) as api:  # the workspace's other key still works
        assert project_id(api, project_name) is not None


# -- `tracetune serve` refuses to run open on a non-loopback address -----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACETUNE_")}
    env["TRACETUNE_HOME"] = str(home)
    return env


def test_serve_on_all_interfaces_without_keys_refuses_to_start(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "tracetune", "serve", "--host", "0.0.0.0", "--port", str(_free_port())]
    proc = subprocess.run(cmd, env=_cli_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "refusing to listen on 0.0.0.0 without API keys" in proc.stderr
    assert "tracetune keys create" in proc.stderr


def test_serve_on_all_interfaces_with_a_key_starts_and_requires_it(tmp_path: Path) -> None:
    env = _cli_env(tmp_path)
    created = subprocess.run(
        [sys.executable, "-m", "tracetune", "keys", "create", "--workspace", "team"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracetune", "serve", "--host", "0.0.0.0", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", verify=False, timeout=5) as http:
            deadline = time.time() + 30
            while True:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.time() < deadline, "server did not start"
                time.sleep(0.1)
            assert http.get("/api/v1/sessions").status_code == 401
            assert http.get("/api/v1/sessions", headers={"x-api-key": key}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- revocation: immediate on every server sharing the store; the last key's revocation never opens it --------


def _served(home: Path, url: str, host: str = "127.0.0.1") -> LiveServer:
    """A server whose settings say ``host`` (it listens on loopback either way)."""
    from tracetune.config import Settings
    from tracetune.store import open_store

    settings = Settings(home=home, database_url=url, host=host)
    return LiveServer(settings, open_store(url, sqlite_synchronous="NORMAL"))


def test_revoking_from_another_process_takes_effect_at_once_and_never_opens(
    tmp_path: Path, db_url: str, project_name: str
) -> None:
    from tracetune.store import open_store

    server = _served(tmp_path, db_url)
    other = open_store(db_url, sqlite_synchronous="NORMAL")  # what `tracetune keys …` in another process sees
    key, info = server.store.workspaces.create_key("team")
    try:
        with httpx.Client(base_url=server.langsmith_url, verify=False, timeout=20) as api:
            ok = {"x-api-key": key}
            assert api.post("/runs", json=new_run(project_name), headers=ok).status_code == 202
            assert api.get("/sessions", headers=ok).status_code == 200  # the key is known (and was cached before)
            assert other.workspaces.revoke_key(info.prefix) == 1
            # the very next request: the revoked key is refused, and no key is not an open door either
            assert "invalid or revoked" in detail_of(api.get("/sessions", headers=ok), 401)
            assert "requires an API key" in detail_of(api.get("/sessions"), 401)
            assert "requires an API key" in detail_of(api.post("/runs", json=new_run(project_name)), 401)
            r = api.get(server.url + "/v1/models")
            assert r.status_code == 401 and "requires an API key" in r.json()["error"]["message"]
            time.sleep(0.2)
            assert api.get("/sessions").status_code == 401  # still closed later
            # only an operator opens it again, and only once no key is active
            key2, info2 = other.workspaces.create_key("team")
            with pytest.raises(Exception, match="still active"):
                other.workspaces.open_without_keys()
            assert api.get("/sessions", headers={"x-api-key": key2}).status_code == 200
            other.workspaces.revoke_key(info2.prefix)
            other.workspaces.open_without_keys()
            assert api.get("/sessions").status_code == 200
            assert api.get("/sessions", headers=ok).status_code == 200  # a stray old key in open mode: let in
            other.workspaces.create_key("team")
            assert "requires an API key" in detail_of(api.get("/sessions"), 401)
    finally:
        other.close()
        server.stop()
        server.store.close()


def test_a_server_on_another_address_refuses_an_opened_store_for_its_whole_life(tmp_path: Path, db_url: str) -> None:
    server = _served(tmp_path, db_url, host="0.0.0.0")
    key, info = server.store.workspaces.create_key("team")
    try:
        with httpx.Client(base_url=server.langsmith_url, verify=False, timeout=20) as api:
            assert api.get("/sessions", headers={"x-api-key": key}).status_code == 200
            server.store.workspaces.revoke_key(info.prefix)
            server.store.workspaces.open_without_keys()  # an operator opens the store while this server runs
            for method, path in (("GET", "/sessions"), ("POST", "/runs/batch")):
                r = api.request(method, path, json={"post": []} if method == "POST" else None)
                assert "listens on 0.0.0.0" in detail_of(r, 401)
            assert "listens on 0.0.0.0" in api.get(server.url + "/v1/models").json()["error"]["message"]
    finally:
        server.stop()
        server.store.close()


def test_keys_open_from_the_cli(tmp_path: Path) -> None:
    env = _cli_env(tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tracetune", "keys", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)

    created = cli("create", "--workspace", "team")
    key = created.stdout.strip()
    refused = cli("open")
    assert refused.returncode == 2 and "still active" in refused.stderr and key[:10] in refused.stderr
    assert cli("revoke", key[:10]).returncode == 0
    from tracetune.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'tracetune.db'}")
    try:
        assert store.workspaces.auth_required()  # revoked the last key: still keyed
        opened = cli("open")
        assert opened.returncode == 0, opened.stderr
        assert not store.workspaces.auth_required()
    finally:
        store.close()
