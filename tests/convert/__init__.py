"""Tests of ``tracetune.convert`` (runs → chat sessions), table-driven over runs cut from real captures.

``captured(file)`` loads ``fixtures/<file>.json`` (see ``fixtures/README.md``): label → run as the SDK sent it
(nested LLM form). ``flat(run)`` is that run as the store returns it (``tracetune.query.run_view.flatten_llm``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from tracetune.query.run_view import flatten_llm

FIXTURES = Path(__file__).parent / "fixtures"


@cache
def _load(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text()


def captured(name: str) -> dict[str, dict[str, Any]]:
    """A fresh copy of the runs of ``fixtures/<name>.json``, by label."""
    return json.loads(_load(name))["runs"]  # type: ignore[no-any-return]


def run(name: str, label: str) -> dict[str, Any]:
    return captured(name)[label]


def flat(run: dict[str, Any]) -> dict[str, Any]:
    """``run`` with single-batch LLM inputs/outputs unwrapped, as ``run_view`` returns it."""
    inputs, outputs = flatten_llm(run.get("run_type"), run.get("inputs"), run.get("outputs"))
    return {**run, "inputs": inputs, "outputs": outputs}
