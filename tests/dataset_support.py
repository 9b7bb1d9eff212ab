"""Helpers of the dataset/export tests: runs to store (built, or fresh-id copies of captured ones), ingesting them,
the target model."""

from __future__ import annotations

import copy
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.models import shared_smollm2_tokenizer, smollm2_home
from tracetune.convert.export import TargetModel
from tracetune.convert.token_count import TokenCounter
from tracetune.models import DEFAULT_MODEL_ID
from tracetune.models.registry import SMOLLM2_CONTEXT_LENGTH
from tracetune.models.tokenizer import tokenizer_dir
from tracetune.store.blobs import Blobs


def reid(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deep copies of ``runs`` with every run id (``id``, ``trace_id``, ``parent_run_id``, inside ``dotted_order``)
    replaced by a fresh one, consistently: the same runs can be stored again in a shared database."""
    fresh: dict[str, str] = {}
    for run in runs:
        for key in ("id", "trace_id", "parent_run_id"):
            if run.get(key):
                fresh.setdefault(str(run[key]), str(uuid.uuid4()))
    out = []
    for run in runs:
        new = copy.deepcopy(run)
        for key in ("id", "trace_id", "parent_run_id"):
            if new.get(key):
                new[key] = fresh[str(new[key])]
        if new.get("dotted_order"):
            for old, replacement in fresh.items():
                new["dotted_order"] = new["dotted_order"].replace(old, replacement)
        out.append(new)
    return out


def ingest(store: Any, workspace_id: uuid.UUID, runs: list[dict[str, Any]], project: str) -> None:
    """Store ``runs`` (as the SDK sends them) in ``project`` through the real ingest path."""
    from tracetune.ingest.service import IngestService

    posts = [{**run, "session_name": project, "session_id": None} for run in runs]
    IngestService(store, Blobs(Path("/nonexistent"))).batch(workspace_id, {"post": posts})


def export_records(db_url: str, home: Path, project: str, out: Path) -> list[dict[str, Any]]:
    """``tracetune export --project`` through the CLI into ``out``; its records (the command must succeed)."""
    import orjson
    from typer.testing import CliRunner

    from tracetune.cli import app

    result = CliRunner().invoke(
        app, ["export", "--database-url", db_url, "--home", str(home), "--project", project, "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def smollm2_target(tmp_path_factory: pytest.TempPathFactory) -> TargetModel:
    """The built-in base model as the exporter's target (the session's shared tokenizer)."""
    tokenizer = shared_smollm2_tokenizer(tmp_path_factory)
    return TargetModel(DEFAULT_MODEL_ID, SMOLLM2_CONTEXT_LENGTH, TokenCounter(tokenizer))


def tokenizer_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data home whose SmolLM2 tokenizer is already converted (for the CLI's ``--home``)."""
    shared_smollm2_tokenizer(tmp_path_factory)
    return smollm2_home(tmp_path_factory)


def give_tokenizer(tmp_path_factory: pytest.TempPathFactory, home: Path) -> None:
    """Copy the converted SmolLM2 tokenizer into ``home`` (a server's data home), so nothing converts it again."""
    source = tokenizer_dir(tokenizer_home(tmp_path_factory), DEFAULT_MODEL_ID)
    shutil.copytree(source, tokenizer_dir(home, DEFAULT_MODEL_ID), dirs_exist_ok=True)


def chat_run(
    question: str, answer: str, *, trace: dict[str, Any] | None = None, thread: str | None = None, n: int = 0
) -> dict[str, Any]:
    """A ``wrap_openai``-style LLM run (raw OpenAI request and response); a child of ``trace`` when given."""
    rid = str(uuid.uuid4())
    stamp = f"20261121T0800{n // 1000 % 60:02d}{n % 1000:03d}000Z"
    run: dict[str, Any] = {
        "id": rid,
        "name": "ChatOpenAI",
        "run_type": "llm",
        "start_time": f"2026-11-21T08:00:{n // 1000 % 60:02d}.{n % 1000:03d}000+00:00",
        "end_time": "2026-11-21T09:00:00+00:00",
        "inputs": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]},
        "outputs": {"choices": [{"message": {"role": "assistant", "content": answer}}]},
        "extra": {"metadata": {"thread_id": thread}} if thread else {},
    }
    if trace is None:
        run |= {"trace_id": rid, "dotted_order": f"{stamp}{rid}"}
    else:
        run |= {
            "trace_id": trace["id"],
            "parent_run_id": trace["id"],
            "dotted_order": f"{trace['dotted_order']}.{stamp}{rid}",
        }
    return run


def chain_root(n: int = 0) -> dict[str, Any]:
    rid = str(uuid.uuid4())
    return {
        "id": rid,
        "trace_id": rid,
        "name": "agent",
        "run_type": "chain",
        "start_time": "2026-11-21T07:00:00+00:00",
        "dotted_order": f"20261121T0700{n % 60:02d}000000Z{rid}",
        "inputs": {"q": n},
    }


def ticket_runs(n_traced: int = 40, *, rare_team: str = "sales") -> list[dict[str, Any]]:
    """LLM runs of ``tracetune.demo.tickets`` support tickets answered by their ``route_ticket`` call, with only the
    urgent tickets of ``rare_team`` kept (so that team has few examples)."""
    from tracetune.demo.tickets import make_tickets

    runs = []
    kept = (t for t in make_tickets(n_traced, 0)[0] if t.team != rare_team or t.priority == 1)
    for n, ticket in enumerate(kept):
        record = ticket.record()
        run = chat_run(ticket.text, "", n=n)
        run["inputs"] = {"messages": record["messages"][:2], "tools": record["tools"]}
        run["outputs"] = {"choices": [{"message": record["messages"][2]}]}
        runs.append(run)
    return runs
