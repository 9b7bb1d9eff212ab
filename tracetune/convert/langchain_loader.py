"""``TracetuneChatLoader``: LangChain's chat-loader interface over tracetune's converter.

A drop-in for ``langchain_community``'s ``LangSmithRunChatLoader`` that keeps what that one loses: it yields
LangChain chat sessions ``{"messages": [BaseMessage…], "functions": [...], "tools": [...]}`` with the functions
AND tools offered, and every assistant tool call both in ``AIMessage.tool_calls`` (parsed) and in
``additional_kwargs["tool_calls"]`` (OpenAI form), so ``convert_messages_for_finetuning`` keeps the calls. It
takes flat or nested runs, ``wrap_openai`` runs and completion-style runs, and skips (never raises on) runs it
cannot convert; the skips of the last ``lazy_load`` are in ``loader.skipped``.

Lazy import pattern: this module imports without langchain-core. ``TracetuneChatLoader`` is built on first
attribute access through the module's ``__getattr__`` (PEP 562), which imports langchain-core then, subclasses
``langchain_core.chat_loaders.BaseChatLoader`` and caches the class in the module; ``to_langchain_message`` and
``to_langchain_session`` import it when called. Without langchain-core installed, ``import`` succeeds and using
the loader raises ``ImportError`` saying what to install.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any, cast

from tracetune.chat.types import ChatMessage, ChatSession, Skip
from tracetune.convert.sessions import sessions_from_runs
from tracetune.convert.trajectories import Scope, trajectories_from_runs

# TracetuneChatLoader is made on first access by __getattr__ below (no langchain-core import before that).
__all__ = ["TracetuneChatLoader", "to_langchain_message", "to_langchain_session"]  # noqa: F822

logger = logging.getLogger(__name__)


def _messages_module() -> Any:
    try:
        import langchain_core.messages as messages
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
        raise ImportError("TracetuneChatLoader needs langchain-core: pip install langchain-core") from exc
    return messages


def to_langchain_message(message: ChatMessage) -> Any:
    """An OpenAI chat message (``ChatMessage``) → the LangChain ``BaseMessage`` that converts back to it."""
    lc = _messages_module()
    role, content = message["role"], message.get("content")
    name = message.get("name")
    named: dict[str, Any] = {"name": name, "additional_kwargs": {"name": name}} if name else {}
    if role == "system":
        return lc.SystemMessage(content=content, **named)
    if role == "user":
        return lc.HumanMessage(content=content, **named)
    if role == "developer":
        return lc.ChatMessage(role="developer", content=content, **named)
    if role == "tool":
        return lc.ToolMessage(content=content, tool_call_id=message["tool_call_id"])
    if role == "function":
        return lc.FunctionMessage(content=content, name=message["name"])
    if role != "assistant":
        raise ValueError(f"role {role!r} has no LangChain message class")
    extra: dict[str, Any] = {"name": name} if name else {}
    parsed = []
    if "tool_calls" in message:
        extra["tool_calls"] = message["tool_calls"]
        for call in message["tool_calls"]:
            fn = call["function"]
            parsed.append(
                {"name": fn["name"], "args": json.loads(fn["arguments"]), "id": call["id"], "type": "tool_call"}
            )
    if "function_call" in message:
        extra["function_call"] = message["function_call"]
    return lc.AIMessage(
        content=content or "", tool_calls=parsed, additional_kwargs=extra, **({"name": name} if name else {})
    )


def to_langchain_session(session: ChatSession) -> dict[str, Any]:
    """A tracetune ``ChatSession`` → LangChain's ``ChatSession`` dict (plus ``tools``, which LangChain's lacks)."""
    out: dict[str, Any] = {"messages": [to_langchain_message(m) for m in session["messages"]]}
    if session.get("functions"):
        out["functions"] = session["functions"]
    if session.get("tools"):
        out["tools"] = session["tools"]
    return out


def _build_loader_class() -> type:
    try:
        from langchain_core.chat_loaders import BaseChatLoader
    except ImportError as exc:
        raise ImportError("TracetuneChatLoader needs langchain-core: pip install langchain-core") from exc

    class TracetuneChatLoader(BaseChatLoader):
        """Chat sessions from LangSmith-style runs, tool calls and tools kept.

        ``runs``: run objects (``langsmith.schemas.Run``) or dicts, flat or nested; with ``client``, strings are
        run ids read with ``client.read_run``. Or no ``runs`` and ``client`` + ``project_name``: the project's LLM
        runs (``client.list_runs(project_name=…, run_type="llm")``). ``merge=True`` folds agent tool loops into
        one session each (``trajectories_from_runs``, grouped by ``scope``).
        """

        def __init__(
            self,
            runs: Iterable[Any] | None = None,
            *,
            client: Any = None,
            project_name: str | None = None,
            merge: bool = False,
            scope: Scope = "trace",
        ) -> None:
            if runs is None and (client is None or project_name is None):
                raise ValueError("give runs, or a langsmith client and a project_name")
            self.runs = runs
            self.client = client
            self.project_name = project_name
            self.merge = merge
            self.scope = scope
            self.skipped: list[Skip] = []

        def _iter_runs(self) -> Iterator[Any]:
            if self.runs is None:
                yield from self.client.list_runs(project_name=self.project_name, run_type="llm")
                return
            for run in self.runs:
                yield self.client.read_run(run) if isinstance(run, str) and self.client is not None else run

        def lazy_load(self) -> Iterator[Any]:
            self.skipped = []
            if self.merge:
                sessions, skips = trajectories_from_runs(self._iter_runs(), scope=self.scope)
                self.skipped.extend(skips)
                for session in sessions:
                    yield to_langchain_session(session)
                return
            for result in sessions_from_runs(self._iter_runs()):
                if "reason" not in result:
                    yield to_langchain_session(result)
                    continue
                skip = cast(Skip, result)
                logger.debug("skipped run %s: %s", skip["run_id"], skip["detail"])
                self.skipped.append(skip)

    return TracetuneChatLoader


def __getattr__(name: str) -> Any:
    if name == "TracetuneChatLoader":
        cls = _build_loader_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
