"""Runs → chat sessions: one LLM run becomes one ``ChatSession`` (its input messages + its answer) or a ``Skip``.

A run is a ``dict`` (a stored run as ``tracetune.query.run_view.run_view`` returns it, or a run as the SDK sent it)
or an object with the same attributes (``langsmith.schemas.Run``: read through its ``__dict__``, else ``getattr``;
nothing is imported).
Fields read: ``id``, ``run_type``, ``error``, ``inputs``, ``outputs``, ``extra``, ``trace_id``, ``session_id``
(the project), ``thread_id``. Both the nested form the tracer sends (``messages: [[…]]``, ``generations: [[…]]``)
and the flat form a store returns (``messages: […]``, ``generations: […]``) are accepted.

Run shapes converted (``run_type == "llm"``):

* **LangChain chat models**: ``inputs.messages`` (lc-serialized messages) → the messages; the answer is
  ``outputs.generations[0].message`` (``AIMessage``, or ``AIMessageChunk`` when streamed). Tools and functions
  offered come from ``extra.invocation_params.tools`` / ``.functions``, ``parallel_tool_calls`` from there too
  (``tool_choice`` / ``function_call`` are request settings, not part of the training record, and are dropped).
* **wrap_openai / @traceable runs** holding the raw OpenAI request and response: ``inputs.messages`` (role dicts),
  ``inputs.tools`` / ``inputs.functions`` / ``inputs.parallel_tool_calls``; the answer is
  ``outputs.choices[0].message`` (``outputs.message`` is accepted too).
* **Completion-style LLMs**: ``inputs.prompts`` with one prompt → a ``user`` message holding the prompt, and an
  ``assistant`` message holding ``outputs.generations[0].text``.

When a run has several generations (``n > 1``) the first is used: the one LangChain hands back to the caller.
Several prompts batched in one run (``messages: [[…], […]]``) are skipped ("batched").

Skip reasons: ``not_llm``, ``error``, ``no_output`` (pending run, or empty generations), ``batched``,
``unsupported_inputs`` (neither messages nor prompts), ``malformed_output``, and from the messages
(``tracetune.convert.messages``): ``malformed_message``, ``unknown_role``, ``missing_content``,
``invalid_arguments``, ``unsupported_content``. ``malformed_run`` is the last resort for a shape nothing above
names. Every detail starts with the field it is about (``inputs.messages[0][2]: …``). ``session_from_run`` never
raises.

Lineage (``source``): ``run_ids`` = [run id], ``trace_id``, ``thread_id`` (``extra.metadata.thread_id`` |
``session_id`` | ``conversation_id``, else the run's ``thread_id``), ``project_id`` (the run's ``session_id``).

For speed nothing is copied deeply: a session shares nested values (tool and function definitions, image parts)
with its run. Treat both as read-only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

from tracetune.chat.types import ChatMessage, ChatSession, SessionSource, Skip
from tracetune.convert.messages import ConversionError, message_from_any

__all__ = ["prompt_from_run", "session_from_run", "sessions_from_runs"]

_FIELDS = ("id", "run_type", "error", "inputs", "outputs", "extra", "trace_id", "session_id", "thread_id")
_THREAD_KEYS = ("thread_id", "session_id", "conversation_id")


def sessions_from_runs(runs: Iterable[Any]) -> Iterator[ChatSession | Skip]:
    """``session_from_run`` over ``runs``, lazily (one run in memory at a time)."""
    for run in runs:
        yield session_from_run(run)


def session_from_run(run: Any) -> ChatSession | Skip:
    """One LLM run (dict or ``langsmith.schemas.Run``-like object) → ``ChatSession``, or ``Skip`` saying why not."""
    return _skipping(_session, run)


def prompt_from_run(run: Any) -> ChatSession | Skip:
    """The conversation an LLM run was asked to continue — its input messages, tools and functions, without its
    answer — whatever the answer was (a failed or unanswered run too): what a teacher model is asked. Only runs of
    chat messages (``inputs.messages``); ``Skip`` saying why not."""
    return _skipping(_prompt, run)


def _skipping(convert: Any, run: Any) -> ChatSession | Skip:
    fields = run if isinstance(run, dict) else _fields(run)
    try:
        return cast(ChatSession, convert(fields))
    except ConversionError as exc:
        return {"reason": exc.reason, "detail": exc.detail, "run_id": _str(fields.get("id"))}
    except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:  # a shape nothing above names
        return {"reason": "malformed_run", "detail": f"{type(exc).__name__}: {exc}", "run_id": _str(fields.get("id"))}


def _fields(run: Any) -> dict[str, Any]:
    """An object's run fields: its ``__dict__`` when that holds them (pydantic models such as
    ``langsmith.schemas.Run``, dataclasses: no per-field ``getattr``), else ``getattr`` field by field."""
    fields = getattr(run, "__dict__", None)
    if isinstance(fields, dict) and "run_type" in fields:
        return fields
    return {k: getattr(run, k, None) for k in _FIELDS}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _llm_inputs(r: dict[str, Any]) -> dict[str, Any]:
    run_type = r.get("run_type")
    if run_type != "llm":
        raise ConversionError("not_llm", f"run_type: {run_type!r} is not 'llm'")
    inputs = r.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise ConversionError("unsupported_inputs", f"inputs: a {type(inputs).__name__}, not an object")
    return inputs


def _prompt(r: dict[str, Any]) -> ChatSession:
    inputs = _llm_inputs(r)
    messages = inputs.get("messages")
    if messages is None:
        raise ConversionError("unsupported_inputs", f"inputs: no chat 'messages' (keys: {sorted(inputs)})")
    return _offered({"messages": _input_messages(messages), "source": _source(r)}, r, inputs)


def _session(r: dict[str, Any]) -> ChatSession:
    inputs = _llm_inputs(r)
    error = r.get("error")
    if error:
        head = str(error).partition("Traceback (most recent call last):")[0].strip() or str(error).strip()
        raise ConversionError("error", f"error: {head.splitlines()[0][:200] if head else '(empty)'}")
    outputs = r.get("outputs")
    if not outputs:
        raise ConversionError("no_output", "outputs: empty (the run is pending or recorded no answer)")
    if not isinstance(outputs, dict):
        raise ConversionError("malformed_output", f"outputs: a {type(outputs).__name__}, not an object")
    messages = inputs.get("messages")
    if messages is not None:
        chat = _input_messages(messages)
        chat.append(_answer(outputs))
    elif "prompts" in inputs:
        chat = _completion(inputs["prompts"], outputs)
    else:
        raise ConversionError("unsupported_inputs", f"inputs: no 'messages' or 'prompts' (keys: {sorted(inputs)})")

    return _offered({"messages": chat, "source": _source(r)}, r, inputs)


def _offered(session: ChatSession, r: dict[str, Any], inputs: dict[str, Any]) -> ChatSession:
    """``session`` with the tools, functions and ``parallel_tool_calls`` the run offered its model."""
    extra = r.get("extra") or {}
    params = extra.get("invocation_params") or {}
    tools = inputs.get("tools") or params.get("tools")
    if tools:
        session["tools"] = _tools(tools)
    functions = inputs.get("functions") or params.get("functions")
    if functions:
        if not isinstance(functions, list):
            raise ConversionError("malformed_run", "invocation_params.functions: not a list")
        session["functions"] = functions
    parallel = params.get("parallel_tool_calls")
    if parallel is None:
        parallel = inputs.get("parallel_tool_calls")
        if parallel is None:
            parallel = ((extra.get("metadata") or {}).get("ls_invocation_params") or {}).get("parallel_tool_calls")
    if isinstance(parallel, bool):
        session["parallel_tool_calls"] = parallel
    return session


def _source(r: dict[str, Any]) -> SessionSource:
    metadata = (r.get("extra") or {}).get("metadata") or {}
    thread = None
    for key in _THREAD_KEYS:
        thread = metadata.get(key)
        if thread:
            break
    else:
        thread = r.get("thread_id")
    run_id = r.get("id")
    return {
        "run_ids": [str(run_id)] if run_id is not None else [],
        "trace_id": _str(r.get("trace_id")),
        "thread_id": _str(thread) if thread else None,
        "project_id": _str(r.get("session_id")),
    }


def _input_messages(messages: Any) -> list[ChatMessage]:
    where = "inputs.messages"
    if not isinstance(messages, list):
        raise ConversionError("malformed_message", f"{where}: not a list")
    if messages and isinstance(messages[0], list):
        if len(messages) != 1:
            raise ConversionError("batched", f"{where}: {len(messages)} prompts in one run")
        messages, where = messages[0], "inputs.messages[0]"
    out = []
    i = 0
    try:
        for i, msg in enumerate(messages):  # noqa: B007 (i names the failing message)
            out.append(message_from_any(msg))
    except ConversionError as exc:
        raise ConversionError(exc.reason, f"{where}[{i}]: {exc.detail}") from None
    return out


def _answer(outputs: dict[str, Any]) -> ChatMessage:
    """The assistant message a chat run produced (generations, OpenAI choices, or a bare message)."""
    gens = outputs.get("generations")
    if gens is not None:
        gen, where = _first_generation(gens)
        msg = gen.get("message")
        if msg is None:
            text = gen.get("text")
            if not isinstance(text, str):
                raise ConversionError("malformed_output", f"{where}: neither message nor text")
            return {"role": "assistant", "content": text}
        where += ".message"
    elif "choices" in outputs:
        choices = outputs["choices"]
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ConversionError("no_output", "outputs.choices: empty")
        msg, where = choices[0].get("message"), "outputs.choices[0].message"
        if isinstance(msg, dict) and "role" not in msg and "lc" not in msg:
            msg = {**msg, "role": "assistant"}
    elif "message" in outputs:
        msg, where = outputs["message"], "outputs.message"
    else:
        raise ConversionError(
            "malformed_output", f"outputs: no generations, choices or message (keys: {sorted(outputs)})"
        )
    try:
        answer = message_from_any(msg)
    except ConversionError as exc:
        raise ConversionError(exc.reason, f"{where}: {exc.detail}") from None
    if answer["role"] != "assistant":
        raise ConversionError("malformed_output", f"{where}: a {answer['role']} message, not the assistant's")
    return answer


def _first_generation(gens: Any) -> tuple[dict[str, Any], str]:
    where = "outputs.generations"
    if not isinstance(gens, list):
        raise ConversionError("malformed_output", f"{where}: not a list")
    if gens and isinstance(gens[0], list):
        if len(gens) != 1:
            raise ConversionError("batched", f"{where}: {len(gens)} prompts in one run")
        gens, where = gens[0], "outputs.generations[0]"
    if not gens:
        raise ConversionError("no_output", f"{where}: empty")
    if not isinstance(gens[0], dict):
        raise ConversionError("malformed_output", f"{where}[0]: not an object")
    return gens[0], f"{where}[0]"


def _completion(prompts: Any, outputs: dict[str, Any]) -> list[ChatMessage]:
    """A completion-style run: its one prompt as the user's message, the generated text as the answer."""
    if not isinstance(prompts, list) or not prompts:
        raise ConversionError("malformed_message", "inputs.prompts: not a non-empty list")
    if len(prompts) != 1:
        raise ConversionError("batched", f"inputs.prompts: {len(prompts)} prompts in one run")
    if not isinstance(prompts[0], str):
        raise ConversionError("malformed_message", "inputs.prompts[0]: not a string")
    gen, where = _first_generation(outputs.get("generations"))
    text = gen.get("text")
    if not isinstance(text, str):
        raise ConversionError("malformed_output", f"{where}.text: not a string")
    return [{"role": "user", "content": prompts[0]}, {"role": "assistant", "content": text}]


def _tools(tools: Any) -> list[dict[str, Any]]:
    """Tools offered, in OpenAI form. Bare function specs (``{"name", "parameters"|"input_schema"}``) are wrapped
    as ``{"type": "function", "function": {…}}``; anything else (already OpenAI, or a built-in tool) is kept."""
    if not isinstance(tools, list):
        raise ConversionError("malformed_run", "tools: not a list")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise ConversionError("malformed_run", f"tools[{i}]: not an object")
        if "type" not in tool and "name" in tool:
            spec = {"name": tool["name"]}
            if "description" in tool:
                spec["description"] = tool["description"]
            params = tool.get("parameters", tool.get("input_schema"))
            if params is not None:
                spec["parameters"] = params
            tool = {"type": "function", "function": spec}
        out.append(tool)
    return out
