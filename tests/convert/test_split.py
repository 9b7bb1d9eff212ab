"""assign_split: deterministic across processes, by thread/trace group, at the requested ratio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from typing import Any

import pytest

from tracetune.convert.split import assign_split, group_fraction, group_key
from tracetune.errors import InvalidInput


def session(run_id: str, trace_id: str | None = None, thread_id: str | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {"run_ids": [run_id, "other-run"], "trace_id": trace_id}
    if thread_id is not None:
        source["thread_id"] = thread_id
    return {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "source": source,
    }


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ({"run_ids": ["r"], "trace_id": "t", "thread_id": "th"}, "thread:th"),
        ({"run_ids": ["r"], "trace_id": "t", "thread_id": None}, "trace:t"),
        ({"run_ids": ["r"], "trace_id": "t"}, "trace:t"),
        ({"run_ids": ["r1", "r2"], "trace_id": None}, "run:r1"),
        ({"run_ids": ["r"], "trace_id": "", "thread_id": ""}, "run:r"),
    ],
)
def test_group_key_prefers_thread_then_trace_then_run(source: dict[str, Any], key: str) -> None:
    assert group_key({"messages": [], "source": source}) == key


@pytest.mark.parametrize("source", [{"run_ids": [], "trace_id": None}, {}, None])
def test_group_key_needs_an_id(source: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        assign_split({"messages": [], "source": source}, 0.9, 0)
    assert err.value.field == "source"


# Pinned answers: changing the hash (or its input layout) would silently reshuffle every existing dataset's split.
@pytest.mark.parametrize(
    ("key", "seed", "fraction"),
    [
        ("trace:t1", 0, 0.8732350299),
        ("thread:thread-42", 0, 0.2172707352),
        ("trace:t1", 7, 0.6019488474),
        ("run:r1", "my-seed", 0.6946222349),
    ],
)
def test_fraction_is_pinned(key: str, seed: int | str, fraction: float) -> None:
    assert group_fraction(key, seed) == pytest.approx(fraction, abs=1e-9)


_CHILD = """
import json, sys
from tracetune.convert.split import assign_split
sessions = json.load(sys.stdin)
print(json.dumps([assign_split(s, 0.8, 3) for s in sessions]))
"""


def test_same_split_in_another_process() -> None:
    sessions = [session(f"r{i}", f"t{i % 97}", f"th{i}" if i % 3 == 0 else None) for i in range(300)]
    here = [assign_split(s, 0.8, 3) for s in sessions]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # hash() would differ; the split must not
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], input=json.dumps(sessions), capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout) == here
    assert here == [assign_split(s, 0.8, 3) for s in sessions]
    assert {"train", "validation"} == set(here)


def test_groups_never_straddle() -> None:
    sides: dict[str, set[str]] = defaultdict(set)
    for i in range(3000):
        trace = f"trace-{i % 400}"
        thread = f"thread-{i % 400 % 50}" if (i % 400) % 4 == 0 else None  # threads span several traces
        s = session(f"run-{i}", trace, thread)
        sides[group_key(s)].add(assign_split(s, 0.7, "seed"))
    assert all(len(v) == 1 for v in sides.values())
    assert len(sides) > 300


@pytest.mark.parametrize("ratio", [0.5, 0.8, 0.9, 0.95, 0.1])
@pytest.mark.parametrize("seed", [0, 42])
def test_realised_ratio_over_10k_groups(ratio: float, seed: int) -> None:
    train = sum(assign_split(session(f"r{i}", f"trace-{i}"), ratio, seed) == "train" for i in range(10_000))
    assert abs(train / 10_000 - ratio) <= 0.02


def test_ratio_bounds() -> None:
    sessions = [session(f"r{i}", f"t{i}") for i in range(2000)]
    assert {assign_split(s, 1.0, 1) for s in sessions} == {"train"}
    assert {assign_split(s, 0.0, 1) for s in sessions} == {"validation"}


def test_seed_reshuffles() -> None:
    sessions = [session(f"r{i}", f"t{i}") for i in range(500)]
    a = [assign_split(s, 0.5, 1) for s in sessions]
    b = [assign_split(s, 0.5, 2) for s in sessions]
    assert a != b


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan")])
def test_invalid_ratio(ratio: float) -> None:
    with pytest.raises(InvalidInput) as err:
        assign_split(session("r", "t"), ratio, 0)
    assert err.value.field == "ratio"
