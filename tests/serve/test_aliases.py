"""Model aliases: the setting (JSON in the environment), the serve option, the one lookup of a served model id."""

from __future__ import annotations

import uuid

import pytest

from tracetune.errors import NotFound
from tracetune.models.registry import resolve_alias
from tracetune.serve.lookup import lookup_model
from tracetune.store.blobs import Blobs


def test_resolve_alias_is_one_step():
    aliases = {"gpt-4o-mini": "smollm2-135m-instruct", "a": "b", "b": "c"}
    assert resolve_alias(aliases, "gpt-4o-mini") == "smollm2-135m-instruct"
    assert resolve_alias(aliases, "smollm2-135m-instruct") == "smollm2-135m-instruct"
    assert resolve_alias(aliases, "a") == "b"  # an alias names a model, not another alias
    assert resolve_alias({}, "x") == "x"


def test_the_setting_reads_a_json_object(monkeypatch):
    from tracetune.config import load_settings

    monkeypatch.setenv("TRACETUNE_MODEL_ALIASES", '{"gpt-4o-mini": "ft:smollm2-135m-instruct:default:w:abc"}')
    assert load_settings().model_aliases == {"gpt-4o-mini": "ft:smollm2-135m-instruct:default:w:abc"}
    monkeypatch.delenv("TRACETUNE_MODEL_ALIASES")
    assert load_settings().model_aliases == {}


def test_serve_option_parses_name_equals_model():
    import typer

    from tracetune.cli.serve import parse_aliases

    assert parse_aliases(["gpt-4o-mini=smollm2-135m-instruct", "x = ft:a:b:c:d"]) == {
        "gpt-4o-mini": "smollm2-135m-instruct",
        "x": "ft:a:b:c:d",
    }
    with pytest.raises(typer.Exit):
        parse_aliases(["no-equals-sign"])


def test_serve_help_shows_the_option():
    from typer.testing import CliRunner

    from tracetune.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert "--model-alias" in out.output and "NAME=MODEL" in out.output


def test_lookup_of_base_alias_and_unknown_ids(tmp_path):
    served = lookup_model(
        "gpt-4o-mini",
        blobs=Blobs(tmp_path),
        store=None,
        workspace_id=None,
        aliases={"gpt-4o-mini": "smollm2-135m-instruct"},
    )
    assert (served.requested, served.id, served.base_id, served.adapter_dir) == (
        "gpt-4o-mini",
        "smollm2-135m-instruct",
        "smollm2-135m-instruct",
        None,
    )
    with pytest.raises(NotFound) as err:
        lookup_model("gpt-5", blobs=Blobs(tmp_path), store=None, workspace_id=None)
    assert err.value.code == "model_not_found" and err.value.field == "model"
    with pytest.raises(NotFound, match="alias of 'nothing'"):
        lookup_model("mine", blobs=Blobs(tmp_path), store=None, workspace_id=None, aliases={"mine": "nothing"})


def test_lookup_of_a_fine_tuned_model(store, tmp_path):
    ws = store.workspaces.ensure(f"ws-{uuid.uuid4().hex[:6]}")
    model_id = "ft:smollm2-135m-instruct:ws:weather:abcd1234"
    adapter = tmp_path / "jobs" / "j1" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    with store.db.write() as conn:
        store.models.add(
            conn,
            {
                "workspace_id": ws.id,
                "id": model_id,
                "base_model": "smollm2-135m-instruct",
                "job_id": "ftjob-1",
                "adapter_dir": "jobs/j1/adapter",
                "created_at": 1,
            },
        )
    served = lookup_model("tuned", blobs=Blobs(tmp_path), store=store, workspace_id=ws.id, aliases={"tuned": model_id})
    assert (served.id, served.base_id, served.adapter_dir) == (model_id, "smollm2-135m-instruct", adapter)
    other = store.workspaces.ensure(f"other-{uuid.uuid4().hex[:6]}")
    with pytest.raises(NotFound):  # another workspace's model is not found
        lookup_model(model_id, blobs=Blobs(tmp_path), store=store, workspace_id=other.id)
    (adapter / "adapter_config.json").unlink()
    with pytest.raises(NotFound, match="adapter"):
        lookup_model(model_id, blobs=Blobs(tmp_path), store=store, workspace_id=ws.id)


def test_a_stored_alias_is_looked_up_after_the_static_ones(store, tmp_path):
    from tracetune.errors import Conflict
    from tracetune.serve.lookup import set_alias

    ws = store.workspaces.ensure(f"ws-{uuid.uuid4().hex[:6]}")
    set_alias("support", "smollm2-135m-instruct", blobs=Blobs(tmp_path), store=store, workspace_id=ws.id)
    served = lookup_model("support", blobs=Blobs(tmp_path), store=store, workspace_id=ws.id)
    assert (served.requested, served.id, served.base_id) == (
        "support",
        "smollm2-135m-instruct",
        "smollm2-135m-instruct",
    )
    with pytest.raises(NotFound, match="no-such"):  # the target must be served: nothing is written
        set_alias("support", "no-such", blobs=Blobs(tmp_path), store=store, workspace_id=ws.id)
    assert store.aliases.resolve(ws.id, "support") == "smollm2-135m-instruct"
    with pytest.raises(Conflict, match="static alias"):  # a static alias would shadow it
        set_alias(
            "x", "smollm2-135m-instruct", blobs=Blobs(tmp_path), store=store, workspace_id=ws.id, aliases={"x": "y"}
        )
    with pytest.raises(NotFound, match="alias of 'nope'"):  # the static alias (an override) is read first
        lookup_model("support", blobs=Blobs(tmp_path), store=store, workspace_id=ws.id, aliases={"support": "nope"})


def test_chat_completions_read_the_stored_alias_on_every_request(tiny_server, v1):
    """Set, then removed, through the API: the very next chat request follows each change (no restart)."""
    alias = f"bot-{uuid.uuid4().hex[:6]}"
    body = {"model": alias, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert v1.post("/chat/completions", json=body).status_code == 404
    tt = f"{tiny_server.url}/tt/v1/aliases/{alias}"
    assert v1.put(tt, json={"model": "gpt-4o-mini"}).status_code == 200  # a stored alias of a static one
    answered = v1.post("/chat/completions", json=body)
    assert answered.status_code == 200 and answered.json()["model"] == alias, answered.text
    assert v1.delete(tt).status_code == 200
    gone = v1.post("/chat/completions", json=body)
    assert gone.status_code == 404 and alias in gone.text
