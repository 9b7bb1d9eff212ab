"""The alias repository on both dialects: versions, chains, history, one-step rollback, removal, cycles refused,
workspaces apart."""

from __future__ import annotations

import pytest

from tracetune.errors import Conflict, InvalidInput, NotFound


def test_versions_chain_rollback_and_removal(store) -> None:
    ws = store.workspaces.ensure("default").id
    aliases = store.aliases
    assert aliases.get(ws, "bot") is None and aliases.resolve(ws, "bot") == "bot"  # not an alias: itself
    first = aliases.set(ws, "bot", "ft:m:default:a:1")
    assert (first["version"], first["model"], first["note"]) == (1, "ft:m:default:a:1", "set")
    aliases.set(ws, "bot", "ft:m:default:b:2")
    aliases.set(ws, "front", "bot")  # an alias of an alias
    assert aliases.resolve(ws, "front") == "ft:m:default:b:2"
    rolled = aliases.rollback(ws, "bot")
    assert (rolled["version"], rolled["model"], rolled["note"]) == (3, "ft:m:default:a:1", "rollback to v1")
    assert aliases.resolve(ws, "front") == "ft:m:default:a:1"  # the chain follows at once
    assert [r["model"] for r in aliases.history(ws, "bot")] == ["ft:m:default:a:1", "ft:m:default:b:2",
                                                                 "ft:m:default:a:1"]  # fmt: skip
    assert [(r["name"], r["model"]) for r in aliases.list(ws)] == [("bot", "ft:m:default:a:1"), ("front", "bot")]
    removed = aliases.remove(ws, "front")
    assert removed["model"] is None and aliases.get(ws, "front") is None and aliases.resolve(ws, "front") == "front"
    assert [r["name"] for r in aliases.list(ws)] == ["bot"]
    assert [r["version"] for r in aliases.history(ws, "front")] == [2, 1]  # the history stays
    with pytest.raises(NotFound):
        aliases.remove(ws, "front")
    with pytest.raises(InvalidInput, match="no earlier model"):
        aliases.set(ws, "solo", "x") and aliases.rollback(ws, "solo")
    other = store.workspaces.ensure("other").id
    assert aliases.get(other, "bot") is None and aliases.list(other) == []


def test_a_cycle_is_refused_and_a_failed_check_writes_nothing(store) -> None:
    ws = store.workspaces.ensure("default").id
    aliases = store.aliases
    aliases.set(ws, "a", "b")
    aliases.set(ws, "b", "c")
    with pytest.raises(Conflict, match="alias cycle: c → a → b → c"):
        aliases.set(ws, "c", "a")
    with pytest.raises(Conflict, match="alias cycle: a → a"):
        aliases.set(ws, "a", "a")

    def refuse(model: str) -> None:
        raise NotFound(f"The model '{model}' does not exist", field="model")

    with pytest.raises(NotFound):
        aliases.set(ws, "a", "gone", check=refuse)
    assert aliases.resolve(ws, "a") == "c" and len(aliases.history(ws, "a")) == 1
