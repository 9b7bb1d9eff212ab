"""A user's app traced with ``@traceable`` alone: ``<traces>`` root runs with ``<children>`` child runs each.

Run as ``python many_runs.py <traces> <children>``; configured by LANGSMITH_* variables. Prints the root ids.
"""

from __future__ import annotations

import json
import sys

from langsmith import traceable
from langsmith.run_helpers import get_current_run_tree
from langsmith.run_trees import get_cached_client


@traceable(run_type="tool", name="lookup")
def lookup(i: int) -> dict[str, int]:
    return {"square": i * i}


@traceable(name="batch-job")
def job(n: int) -> dict[str, str | int]:
    total = sum(lookup(i)["square"] for i in range(n))
    run = get_current_run_tree()
    return {"total": total, "id": str(run.id) if run else ""}


def main(traces: int, children: int) -> dict[str, object]:
    roots = [job(children)["id"] for _ in range(traces)]
    get_cached_client().flush()
    return {"roots": roots}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
