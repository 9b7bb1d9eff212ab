"""Agent trajectories: the LLM calls of one tool loop, merged into the one conversation they build up.

An agent calls the model N times; call k+1 is sent everything call k saw plus call k's answer plus the tool
results. Each call is its own run and so its own ``ChatSession``; exported as is, the early turns would be
trained N times over. ``merge_trajectories`` folds them: within a group (one trace by default), sessions are
taken in run order, and a session whose input messages start with exactly the full conversation of an earlier
session (that session's inputs + its answer) replaces it. A tool loop of N calls thus yields ONE session: the last
call's inputs + its answer, with the union of the tools / functions offered and ``source.run_ids`` listing every
run in order. Calls that do not extend an earlier one (parallel branches, sub-agents with their own prompt) stay
separate sessions.

Run order is the run's *position*: ``run_position(run)`` = its ``dotted_order`` (``<start stamp>Z<id>`` per level;
strings compare in start order, parents before children, across traces by the root's start), else its
``start_time`` in ISO form. Pass ``positions`` (run id → position) to ``merge_trajectories``; without it the
sessions' own order is kept (as ``sessions_from_runs`` yields them from a store query ordered by start time).

Grouping (``scope``): ``"trace"`` (default: one agent invocation), ``"thread"`` (``source.thread_id``, falling back
to the trace: multi-turn chats whose every turn is its own trace), or ``"project"`` (``source.project_id``: for
loops run without a parent run, where every model call is a root trace of its own, as in the captured
``ls-agent`` tool loop).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from tracetune.chat.types import ChatSession, Skip
from tracetune.convert.sessions import session_from_run

__all__ = ["merge_trajectories", "run_position", "trajectories_from_runs"]

Scope = Literal["trace", "thread", "project"]


def run_position(run: Any) -> str | None:
    """The sortable position of ``run`` (dict or ``langsmith.schemas.Run``): ``dotted_order``, else start time."""
    if isinstance(run, dict):
        dotted, start = run.get("dotted_order"), run.get("start_time")
    else:
        dotted, start = getattr(run, "dotted_order", None), getattr(run, "start_time", None)
    if dotted:
        return str(dotted)
    if isinstance(start, datetime):
        return start.isoformat()
    return str(start) if start else None


def _group_key(session: ChatSession, scope: Scope) -> Any:
    source = session["source"]
    if scope == "trace":
        return source.get("trace_id")
    if scope == "thread":
        return ("thread", source.get("thread_id")) if source.get("thread_id") else ("trace", source.get("trace_id"))
    if scope == "project":
        return source.get("project_id")
    raise ValueError(f"scope must be 'trace', 'thread' or 'project', not {scope!r}")


def merge_trajectories(
    sessions: Iterable[ChatSession], *, positions: Mapping[str, str | None] | None = None, scope: Scope = "trace"
) -> list[ChatSession]:
    """Fold the sessions of each group into the conversations they extend (see the module docstring).

    ``positions`` maps a run id to its position (``run_position``); a session is placed by its first run's
    position (missing ones sort first; ties keep input order). The result lists groups in order of first
    appearance, and within a group the conversations in order of their first call.
    """
    groups: dict[Any, list[ChatSession]] = {}
    for session in sessions:
        groups.setdefault(_group_key(session, scope), []).append(session)
    out: list[ChatSession] = []
    for members in groups.values():
        if positions is not None:
            members.sort(key=lambda s: _position(s, positions))
        out.extend(_merge_group(members))
    return out


def _position(session: ChatSession, positions: Mapping[str, str | None]) -> str:
    run_ids = session["source"]["run_ids"]
    return (positions.get(run_ids[0]) if run_ids else None) or ""


def _merge_group(members: list[ChatSession]) -> list[ChatSession]:
    chains: list[ChatSession] = []
    for session in members:
        messages = session["messages"]
        best = -1
        best_len = -1
        for i, chain in enumerate(chains):
            n = len(chain["messages"])
            if best_len < n < len(messages) and messages[:n] == chain["messages"]:
                best, best_len = i, n
        if best < 0:
            chains.append(session)
        else:
            chains[best] = _extend(chains[best], session)
    return chains


def _extend(chain: ChatSession, call: ChatSession) -> ChatSession:
    """``call`` (whose inputs start with ``chain``'s whole conversation) carrying ``chain``'s lineage and tools."""
    merged: ChatSession = {"messages": call["messages"], "source": dict(call["source"])}  # type: ignore[typeddict-item]
    merged["source"]["run_ids"] = chain["source"]["run_ids"] + call["source"]["run_ids"]
    tools = _union(chain.get("tools"), call.get("tools"), _tool_name)
    if tools:
        merged["tools"] = tools
    functions = _union(chain.get("functions"), call.get("functions"), _function_name)
    if functions:
        merged["functions"] = functions
    parallel = call.get("parallel_tool_calls", chain.get("parallel_tool_calls"))
    if parallel is not None:
        merged["parallel_tool_calls"] = parallel
    return merged


def _tool_name(tool: dict[str, Any]) -> Any:
    fn = tool.get("function")
    return (tool.get("type"), fn.get("name") if isinstance(fn, dict) else repr(tool))


def _function_name(fn: dict[str, Any]) -> Any:
    return fn.get("name")


def _union(first: list[dict[str, Any]] | None, second: list[dict[str, Any]] | None, key: Any) -> list[dict[str, Any]]:
    """``first`` then the entries of ``second`` whose key (tool type + name) is not in it yet."""
    if not first:
        return list(second or [])
    if not second:
        return list(first)
    seen = {key(t) for t in first}
    return list(first) + [t for t in second if key(t) not in seen]


def trajectories_from_runs(runs: Iterable[Any], *, scope: Scope = "trace") -> tuple[list[ChatSession], list[Skip]]:
    """Convert ``runs`` (``session_from_run``) and merge their trajectories, ordered by ``run_position``.

    Holds every session of ``runs`` in memory (merging needs a whole group); feed it one project or time window.
    """
    sessions: list[ChatSession] = []
    skips: list[Skip] = []
    positions: dict[str, str | None] = {}
    for run in runs:
        result = session_from_run(run)
        if "reason" in result:
            skips.append(result)  # type: ignore[arg-type]
            continue
        for run_id in result["source"]["run_ids"]:
            positions[run_id] = run_position(run)
        sessions.append(result)
    return merge_trajectories(sessions, positions=positions, scope=scope), skips
