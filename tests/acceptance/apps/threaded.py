"""A chat app traced with ``@traceable``: ``<threads>`` conversations of ``<turns>`` turns each, the conversation
named by the ``thread_id`` metadata key (LangSmith's thread grouping); the last turn of the first thread fails.

Run as ``python threaded.py <threads> <turns>``; configured by LANGSMITH_* variables. Prints, per thread id,
the root run ids of its turns in order.
"""

from __future__ import annotations

import contextlib
import json
import sys
import uuid

from langsmith import traceable
from langsmith.run_trees import get_cached_client


@traceable(run_type="llm", name="reply-model")
def model(question: str) -> dict[str, object]:
    return {"answer": question.upper(), "usage_metadata": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}


@traceable(name="chat-turn")
def turn(question: str, fail: bool) -> dict[str, object]:
    answer = model(question)["answer"]
    if fail:
        raise RuntimeError("the assistant gave up")
    return {"answer": answer}


def main(threads: int, turns: int) -> dict[str, object]:
    out: dict[str, list[str]] = {}
    for t in range(threads):
        thread_id = str(uuid.uuid4())
        ids: list[str] = []
        for i in range(turns):
            fail = t == 0 and i == turns - 1
            run_id = uuid.uuid4()
            ids.append(str(run_id))
            extra = {"metadata": {"thread_id": thread_id}, "run_id": run_id}
            with contextlib.suppress(RuntimeError):  # the failed turn is traced with its error
                turn(f"question {i} of thread {t}", fail, langsmith_extra=extra)
        out[thread_id] = ids
    get_cached_client().flush()
    return {"threads": out}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))))
