"""Fields of the SDK's ``Run`` that LangSmith fills on read: token details and costs from the run's usage, and
times as tz-aware UTC whatever form the writer sent (the SDK sends ``+00:00``; naive means UTC)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from .conftest import sdk_client
from .helpers import KNOWN_CLIENT_WARNINGS

pytestmark = pytest.mark.filterwarnings(*KNOWN_CLIENT_WARNINGS)


def test_token_details_costs_and_times_read_through_the_sdk(live_server, project_name: str) -> None:
    rid = uuid.uuid4()
    usage = {
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "input_token_details": {"cache_read": 60},
        "output_token_details": {"reasoning": 5},
        "input_cost": 0.25,
        "output_cost": 0.5,
    }
    run = {
        "id": str(rid),
        "name": "ChatModel",
        "run_type": "llm",
        "start_time": "2026-12-01T09:00:00.250000",  # naive: UTC
        "end_time": "2026-12-01T09:00:01.5Z",
        "session_name": project_name,
        "inputs": {"messages": [{"role": "user", "content": "hi"}]},
        "outputs": {"answer": "hello"},
        "extra": {"metadata": {"usage_metadata": usage, "ls_model_name": "m"}},
    }
    with httpx.Client(base_url=live_server.langsmith_url, verify=False) as http:
        assert http.post("/runs", json=run).status_code == 202
    client = sdk_client(live_server)
    [listed] = list(client.list_runs(project_name=project_name))
    read = client.read_run(rid)
    for got in (listed, read):
        assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == (100, 20, 120)
        assert (got.prompt_cost, got.completion_cost, got.total_cost) == (
            Decimal("0.25"),
            Decimal("0.5"),
            Decimal("0.75"),
        )
        assert got.start_time == datetime(2026, 12, 1, 9, 0, 0, 250000, tzinfo=UTC)
        assert got.end_time == datetime(2026, 12, 1, 9, 0, 1, 500000, tzinfo=UTC)
        assert got.latency == 1.25
    # the details are outside list_runs' default select (as upstream): read_run and an explicit select give them
    assert read.prompt_token_details == {"cache_read": 60} and read.completion_token_details == {"reasoning": 5}
    selected = list(client.list_runs(project_name=project_name, select=["total_cost", "prompt_token_details"]))
    assert selected[0].total_cost == Decimal("0.75") and selected[0].prompt_token_details == {"cache_read": 60}
