"""Pure functions between dataset examples (LangSmith's ``inputs``/``outputs``/``splits``) and training records.

A tracetune export stores each record as an example: ``example_from_record`` puts every turn but the last, and the
record's other keys (``tools``…), in ``inputs`` and the last turn in ``outputs`` (``{"message": …}`` for the
``openai``/``hf`` formats' ``messages``, ``{"conversation": …}`` for sharegpt's ``conversations``);
``record_from_example`` joins them back, byte for byte the record that was exported. A preference (DPO) line is
stored with its ``input`` (messages, tools) as the inputs and its ``preferred_output`` and ``non_preferred_output``
as the outputs.

An example written through LangSmith's API is converted instead (``record_from_example`` again, one entry point):
its inputs and outputs are read as an LLM run's would be (``tracetune.convert.sessions``), so every shape a traced
run has works, plus the shapes LangSmith's dataset helpers write:

* chat datasets (``create_chat_example``, ``create_example_from_run`` on a chat dataset):
  ``{"input": [messages]}`` → ``{"output": message}``;
* llm datasets (``create_llm_example``): ``{"input": "prompt"}`` → ``{"output": "text"}``;
* kv datasets holding a run's inputs and outputs (``create_example_from_run`` on a kv dataset), or our own
  ``{"messages": [...], "tools": [...]}`` → ``{"message": {...}}``.

The result is an OpenAI chat fine-tuning record (``{"messages", "tools"?}``). An example that holds no
conversation raises ``InvalidInput`` naming the example and what is missing.

``iter_dataset_records`` streams a stored dataset version as training records (``tracetune.store.datasets``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from tracetune.chat.preference import OUTPUTS
from tracetune.chat.types import ChatSession
from tracetune.convert.records import record_from_session
from tracetune.convert.sessions import session_from_run
from tracetune.errors import InvalidInput

if TYPE_CHECKING:
    from tracetune.store import Store

_TURN_LISTS = {"messages": "message", "conversations": "conversation"}


def example_from_record(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(inputs, outputs) of one exported record; a record without a turn list is all inputs."""
    if "preferred_output" in record and isinstance(record.get("input"), dict):
        return dict(record["input"]), {k: record[k] for k in OUTPUTS}
    for many, one in _TURN_LISTS.items():
        turns = record.get(many)
        if isinstance(turns, list) and turns:
            return {**record, many: turns[:-1]}, {one: turns[-1]}
    return dict(record), None


def _as_record(inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any] | None:
    """The exported record an example holds, when it is one (inputs' turn list + outputs' single last turn)."""
    if set(outputs) == set(OUTPUTS):
        return {"input": inputs, **{k: outputs[k] for k in OUTPUTS}}
    if len(outputs) != 1:
        return None
    for many, one in _TURN_LISTS.items():
        if isinstance(inputs.get(many), list) and one in outputs:
            return {**inputs, many: [*inputs[many], outputs[one]]}
    return None


def _run_shape(inputs: dict[str, Any], outputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The example's inputs/outputs in a shape ``session_from_run`` reads."""
    given = inputs.get("input")
    if isinstance(given, list):  # chat dataset
        return {"messages": given, **{k: v for k, v in inputs.items() if k != "input"}}, {"message": outputs["output"]}
    if isinstance(given, str) and isinstance(outputs.get("output"), str):  # llm dataset
        return {"prompts": [given]}, {"generations": [{"text": outputs["output"]}]}
    return inputs, outputs


def run_example_io(run: dict[str, Any]) -> tuple[Any, Any]:
    """``(inputs, outputs)`` of the example a run becomes (LangSmith's ``use_source_run_io``): the run's own, with
    the tools it offered added to the inputs (LangSmith's ``extract_tools_from_run``: they train too)."""
    inputs, outputs = run.get("inputs"), run.get("outputs")
    tools = ((run.get("extra") or {}).get("invocation_params") or {}).get("tools")
    if isinstance(inputs, dict) and tools and "tools" not in inputs:
        inputs = {**inputs, "tools": tools}
    return inputs, outputs


def record_from_example(example: dict[str, Any]) -> dict[str, Any]:
    """One example (``id``, ``inputs``, ``outputs``) → a training record; raises ``InvalidInput`` (field
    ``examples``) when it holds no conversation to train on."""
    inputs = example.get("inputs") or {}
    outputs = example.get("outputs") or {}
    where = f"example {example.get('id')}"
    if not isinstance(inputs, dict) or not isinstance(outputs, dict):
        raise InvalidInput(f"{where}: inputs and outputs must be objects", field="examples")
    record = _as_record(inputs, outputs)
    if record is not None:
        return record
    if "output" in outputs and "input" in inputs:
        run_inputs, run_outputs = _run_shape(inputs, outputs)
    else:
        run_inputs, run_outputs = inputs, outputs
    session = session_from_run(
        {"id": example.get("id"), "run_type": "llm", "inputs": run_inputs, "outputs": run_outputs}
    )
    if "messages" not in session:
        raise InvalidInput(f"{where} holds no conversation to train on: {session['detail']}", field="examples")
    return record_from_session(cast(ChatSession, session), "openai")


def iter_dataset_records(
    store: Store, workspace_id: uuid.UUID, version_id: uuid.UUID, *, split: str | None = None
) -> Iterator[dict[str, Any]]:
    """A stored dataset version's examples as training records, in line order (see ``DatasetStore.iter_records``)."""
    return store.datasets.iter_records(workspace_id, version_id, record_from_example, split=split)  # type: ignore[arg-type]
