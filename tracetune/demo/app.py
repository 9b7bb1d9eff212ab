"""The demo's application: an accounting assistant built with LangChain, traced with the ``langsmith`` SDK.

It is written as a user's app would be, against the public packages only (``langchain-openai``, ``langsmith``):
a chat model bound to one ``Calculator`` tool, the tool run on the model's call, the answer returned, the trace
sent to the LangSmith-compatible endpoint it is given, and the user's thumbs up or down recorded as feedback.
Its teacher model is any OpenAI-compatible endpoint; the demo uses tracetune's own base model with the call
forced (constrained decoding guarantees a well-formed call; whether its numbers are right is up to the model,
which is what the feedback records).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from tracetune.demo.questions import Question, calculate

SYSTEM_PROMPT = "You are an accounting assistant."
FEEDBACK_KEY = "correct"
APP_NAME = "accounting-assistant"


class Calculator(BaseModel):
    """Apply one arithmetic operation to two numbers."""

    num1: float = Field(description="The first operand.")
    num2: float = Field(description="The second operand.")
    operation: Literal["+", "-", "*", "/"] = Field(description="The operation: + - * or /.")


@dataclass
class Outcome:
    """One question put to the app: its trace, whether it raised, and the feedback it got."""

    question: Question
    run_id: uuid.UUID  # the trace's root run (the app)
    llm_run_id: uuid.UUID  # its LLM run
    answer: float | None = None
    error: str | None = None
    correct: bool = False
    corrected: bool = False  # a reviewer fixed the model's call


class AccountingAssistant:
    """``app.ask(question)``: the model calls Calculator, the app runs it and answers; every step is traced."""

    def __init__(
        self, *, base_url: str, model: str, api_key: str, force_call: bool = True, max_tokens: int = 64
    ) -> None:
        from langchain_core.tools import StructuredTool
        from langchain_openai import ChatOpenAI

        llm = ChatOpenAI(
            model=model, base_url=base_url, api_key=api_key,  # type: ignore[arg-type]
            temperature=0, max_completion_tokens=max_tokens, max_retries=0,
        )  # fmt: skip
        self.llm = llm.bind_tools([Calculator], tool_choice="Calculator" if force_call else None)
        self.tool = StructuredTool.from_function(
            func=lambda num1, num2, operation: calculate(num1, num2, operation),
            name="Calculator",
            description=Calculator.__doc__ or "",
            args_schema=Calculator,
        )

    def ask(self, text: str, llm_run_id: uuid.UUID | None = None) -> float:
        """The answer to ``text``: one model call (its run id ``llm_run_id``), one tool run. Raises when the model
        makes no call, or when the calculator does (a division by zero)."""
        from langchain_core.messages import HumanMessage, SystemMessage

        reply = self.llm.invoke([SystemMessage(SYSTEM_PROMPT), HumanMessage(text)], config={"run_id": llm_run_id})
        calls = getattr(reply, "tool_calls", None) or []
        if not calls:
            raise ValueError(f"the model answered without calling Calculator: {reply.content!r}")
        return float(self.tool.invoke(calls[0]["args"]))


def run_app(
    app: AccountingAssistant,
    questions: Sequence[Question],
    *,
    client: Any,
    project: str,
    concurrency: int = 8,
    review_every: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """Ask every question (``concurrency`` at a time, as users would), each in its own trace of project
    ``project`` sent through the ``langsmith`` ``client``, and rate each answer as its user would: feedback
    ``correct`` on the trace, 1 when the answer is right, 0 when it is wrong or the app failed.

    Then a reviewer goes through the wrong answers (as in an annotation queue) and fixes some of them: of every
    ``review_every`` wrong answers, all but the last get feedback ``correct`` = 1 on their LLM run with a
    ``correction``, the call the model should have made (0: no review). Returns once every trace and feedback has
    been sent."""
    import langsmith
    from langsmith.utils import ContextThreadPoolExecutor  # copies the tracing context into its threads

    @langsmith.traceable(name=APP_NAME, run_type="chain")
    def answer(text: str, llm_run_id: uuid.UUID) -> dict[str, float]:
        return {"answer": app.ask(text, llm_run_id)}

    def one(question: Question) -> Outcome:
        outcome = Outcome(question, uuid.uuid4(), uuid.uuid4())
        try:
            extra = langsmith.run_helpers.LangSmithExtra(run_id=outcome.run_id)
            outcome.answer = answer(question.text, outcome.llm_run_id, langsmith_extra=extra)["answer"]
            outcome.correct = abs(outcome.answer - question.answer) < 1e-6
        except Exception as exc:  # the trace records the error; the user sees the app fail
            outcome.error = f"{type(exc).__name__}: {exc}"
        return outcome

    outcomes: list[Outcome] = []
    with (
        langsmith.tracing_context(enabled=True, client=client, project_name=project),
        ContextThreadPoolExecutor(max_workers=concurrency) as pool,
    ):
        for outcome in pool.map(one, questions):
            outcomes.append(outcome)
            if progress is not None:
                progress(len(outcomes))
    client.flush()  # the runs first: feedback refers to them
    project_id = client.read_project(project_name=project).id
    wrong = 0
    for outcome in outcomes:
        # with the trace and project ids the SDK sends feedback in the background, batched with runs
        ids = {"trace_id": outcome.run_id, "session_id": project_id}
        client.create_feedback(
            run_id=outcome.run_id, key=FEEDBACK_KEY, score=1 if outcome.correct else 0, **ids,
            comment=outcome.error or f"expected {outcome.question.answer:g}, got {outcome.answer:g}",
        )  # fmt: skip
        if outcome.correct or outcome.error:
            continue
        wrong += 1
        if review_every and wrong % review_every:
            client.create_feedback(
                run_id=outcome.llm_run_id, key=FEEDBACK_KEY, score=1, correction=corrected_call(outcome.question),
                comment="corrected by a reviewer", **ids,
            )  # fmt: skip
            outcome.corrected = True
    client.flush()
    return outcomes


def corrected_call(question: Question) -> dict[str, Any]:
    """A correction (the assistant message the LLM run should have produced): the right Calculator call."""
    call = {"name": "Calculator", "arguments": json.dumps(question.call)}
    return {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": call}]}
