"""The demo's questions: arithmetic asked in varied phrasings, each with the Calculator call that answers it.

Deterministic for a seed. The traced questions and the held-out ones are drawn apart (different operand pairs),
so the held-out evaluation only ever sees questions the model was not trained on. A few traced questions divide
by zero: the app's calculator raises on them, so those traces fail, as real ones do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Operation = Literal["+", "-", "*", "/"]

# how each operation is asked; {a} is num1 and {b} num2 of the right call
PHRASINGS: dict[str, tuple[str, ...]] = {
    "+": (
        "What's {a} + {b}?",
        "Add {a} and {b}.",
        "What is the sum of {a} and {b}?",
        "How much is {a} plus {b}?",
        "Calculate {a} + {b}, please.",
        "I spent {a} on rent and {b} on utilities. What is the total?",
    ),
    "-": (
        "What's {a} - {b}?",
        "Subtract {b} from {a}.",
        "What is {a} minus {b}?",
        "How much is left if I take {b} away from {a}?",
        "Calculate {a} - {b}, please.",
        "Our revenue was {a} and costs were {b}. What is the profit?",
    ),
    "*": (
        "What's {a} * {b}?",
        "Multiply {a} by {b}.",
        "What is {a} times {b}?",
        "What is the product of {a} and {b}?",
        "Calculate {a} x {b}, please.",
        "We sold {a} units at {b} each. What is the revenue?",
    ),
    "/": (
        "What's {a}/{b}?",
        "Divide {a} by {b}.",
        "What is {a} divided by {b}?",
        "How much is {a} split {b} ways?",
        "Calculate {a} / {b}, please.",
        "A bill of {a} is shared by {b} people. How much does each pay?",
    ),
}
OPERATIONS: tuple[Operation, ...] = ("+", "-", "*", "/")


@dataclass(frozen=True)
class Question:
    text: str
    num1: int
    num2: int
    operation: Operation

    @property
    def call(self) -> dict[str, int | str]:
        """The arguments of the right Calculator call."""
        return {"num1": self.num1, "num2": self.num2, "operation": self.operation}

    @property
    def answer(self) -> float:
        """The right result (raises ZeroDivisionError on a division by zero, as the app's calculator does)."""
        return calculate(self.num1, self.num2, self.operation)


def calculate(num1: float, num2: float, operation: str) -> float:
    """The Calculator tool: one arithmetic operation on two numbers."""
    if operation == "+":
        return num1 + num2
    if operation == "-":
        return num1 - num2
    if operation == "*":
        return num1 * num2
    if operation == "/":
        return num1 / num2
    raise ValueError(f"unknown operation {operation!r}: use one of + - * /")


def _operands(rng: random.Random, operation: str) -> tuple[int, int]:
    if operation == "/":  # divisions that come out even, as an accountant's usually do
        b = rng.randint(2, 12)
        return b * rng.randint(2, 90), b
    if operation == "*":
        return rng.randint(2, 99), rng.randint(2, 40)
    return rng.randint(10, 2000), rng.randint(2, 900)


def make_questions(
    n_traced: int, n_heldout: int, *, n_failing: int = 0, seed: int = 0
) -> tuple[list[Question], list[Question]]:
    """``(traced, held_out)``: ``n_traced`` questions for the app (of which ``n_failing`` divide by zero, spread
    through the list) and ``n_heldout`` others, with operand pairs the traced ones never use. Operations and
    phrasings take turns, so every one of them is asked."""
    rng = random.Random(seed)
    seen: set[tuple[int, int, str]] = set()

    def draw(count: int, offset: int) -> list[Question]:
        out: list[Question] = []
        while len(out) < count:
            i = len(out) + offset
            op = OPERATIONS[i % len(OPERATIONS)]
            phrasing = PHRASINGS[op][(i // len(OPERATIONS)) % len(PHRASINGS[op])]
            a, b = _operands(rng, op)
            if (a, b, op) in seen:
                continue
            seen.add((a, b, op))
            out.append(Question(phrasing.format(a=a, b=b), a, b, op))
        return out

    traced = draw(n_traced - n_failing, 0)
    for k in range(n_failing):  # divisions by zero, spread evenly
        phrasing = PHRASINGS["/"][k % len(PHRASINGS["/"])]
        a = rng.randint(10, 999)
        at = (k + 1) * n_traced // (n_failing + 1)  # its place in the final list (placed in increasing order)
        traced.insert(at, Question(phrasing.format(a=a, b=0), a, 0, "/"))
    # the held-out phrasings start where the traced ones left off, so they are not all in the same order
    return traced, draw(n_heldout, 1)
