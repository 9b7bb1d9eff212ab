"""Give training records back the tool schemas a converter dropped, from the stored runs they came from.

LangChain's ``convert_messages_for_finetuning`` (the seed notebook's path from LangSmith runs to an OpenAI
fine-tuning file) keeps the messages of each run but drops the ``functions`` / ``tools`` it was offered. A model
trained on such records learns the calls with no schema in its prompt, and the app then serves it a prompt that
holds one: train/serve skew the user cannot see (issue 21 measured 25% exact calls on held-out questions).

tracetune holds the runs those records came from. :func:`recover_tools` gives each record that calls tools but
declares none the declarations (``functions`` or ``tools``, as the app offered them) of:

1. the stored LLM run whose prompt (the messages before its answer, compared by role and text) is the record's
   and which offered every tool the record calls (``"prompt"``), else
2. the newest stored LLM run that offered every tool the record calls (``"name"``).

Records that declare tools, or call none, are left as they are; a record no stored run can complete is counted in
:attr:`Recovery.missing` with the names it lacks. Only the newest :data:`MAX_RUNS` LLM runs of the workspace are
read (a job's files are recent traffic).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracetune.chat.diagnose import undeclared_calls
from tracetune.chat.scoring import split_record
from tracetune.convert.sessions import session_from_run
from tracetune.query.selection import recent_llm_runs
from tracetune.store import Store

MAX_RUNS = 5000
_DECLARATIONS = ("tools", "functions", "parallel_tool_calls")


@dataclass
class Recovery:
    """The records (declarations added where they were recovered) and what was done."""

    records: list[dict[str, Any]]
    by_prompt: int = 0  # records completed from the run with the same prompt
    by_name: int = 0  # records completed from the newest run offering the tools they call
    missing: dict[str, int] = field(default_factory=dict)  # tool name → records still calling it undeclared
    run_ids: list[str] = field(default_factory=list)  # the runs the declarations came from

    @property
    def recovered(self) -> int:
        return self.by_prompt + self.by_name

    def summary(self) -> str:
        """One sentence for a job event or the CLI."""
        parts = []
        if self.recovered:
            how = f"{self.by_prompt} by their prompt, {self.by_name} by the tools' names"
            parts.append(
                f"{self.recovered} records called tools without declaring them (a converter such as LangChain's "
                f"convert_messages_for_finetuning drops them); their declarations were recovered from "
                f"{len(self.run_ids)} stored run{'s' if len(self.run_ids) != 1 else ''} ({how}), so the model "
                "trains with the schemas in its prompt, as the app serves it"
            )
        if self.missing:
            names = ", ".join(sorted(self.missing))
            parts.append(
                f"{sum(self.missing.values())} records call {names} without declaring it and no stored run offered "
                "it: the model learns those calls without their schemas (keep the tools in every record)"
            )
        return "; ".join(parts)


def recover_tools(store: Store, workspace_id: uuid.UUID, records: Sequence[dict[str, Any]]) -> Recovery:
    """The records with the declarations of the stored runs they came from (see the module's doc)."""
    wanted = [undeclared_calls(r) for r in records]
    result = Recovery(records=list(records))
    if not any(wanted):
        return result
    by_prompt, by_name = _offers(store, workspace_id)
    sources: set[str] = set()
    for index, (record, names) in enumerate(zip(records, wanted, strict=True)):
        if not names:
            continue
        offer = by_prompt.get(_prompt_key(record))
        if offer is not None and set(names) <= _offered_names(offer):
            result.by_prompt += 1
        else:
            offer = next((o for o in by_name if set(names) <= _offered_names(o)), None)
            if offer is None:
                for name in names:
                    result.missing[name] = result.missing.get(name, 0) + 1
                continue
            result.by_name += 1
        sources.add(offer["run_id"])
        result.records[index] = {**record, **{k: offer[k] for k in _DECLARATIONS if k in offer}}
    result.run_ids = sorted(sources)
    return result


def _offers(store: Store, workspace_id: uuid.UUID) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The newest LLM runs that offered tools: by prompt key (the newest run per prompt), and newest first."""
    by_prompt: dict[str, dict[str, Any]] = {}
    newest_first: list[dict[str, Any]] = []
    for run in recent_llm_runs(store, workspace_id, MAX_RUNS):
        session: dict[str, Any] = dict(session_from_run(run))
        if "messages" not in session or not (session.get("tools") or session.get("functions")):
            continue
        offer = {k: session[k] for k in _DECLARATIONS if k in session}
        offer["run_id"] = run["id"]
        newest_first.append(offer)
        by_prompt.setdefault(_prompt_key(session), offer)
    return by_prompt, newest_first


def _offered_names(offer: Mapping[str, Any]) -> set[str]:
    names = {str(f.get("name")) for f in offer.get("functions") or [] if isinstance(f, Mapping)}
    for tool in offer.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(fn, Mapping):
            names.add(str(fn.get("name")))
    return names


def _prompt_key(record: Mapping[str, Any]) -> str:
    """The messages before the last assistant turn, by role and text only (converters differ in the rest)."""
    try:
        prompt, _ = split_record(record)
    except Exception:  # no answer to cut before: no prompt to match
        return ""
    return json.dumps([(m.get("role"), _text(m.get("content"))) for m in prompt], ensure_ascii=False)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)
