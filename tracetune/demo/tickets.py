"""A task that needs a decision, not a copy: support tickets routed by ``route_ticket(team, priority)``.

The team (``billing``, ``tech`` or ``sales``) follows from what the ticket is about and the priority (1 urgent,
2 normal, 3 low) from how it is asked; neither value is written in the ticket, so a model that only learned the call's
format — or one answer for every ticket — scores at chance. Deterministic for a seed: tickets take turns through the
nine (team, priority) pairs, each drawing a topic, an urgency cue and the product or detail it mentions. Held-out
tickets mention products and details that no training ticket does. Each ticket is its own conversation (one trace),
so a split of the records is a split by trace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

TEAMS = ("billing", "tech", "sales")
PRIORITIES = (1, 2, 3)
SYSTEM_PROMPT = (
    "You triage customer support tickets. Route every ticket with route_ticket: team is billing (payments, "
    "invoices, refunds), tech (bugs, errors, outages) or sales (prices, plans, demos); priority is 1 when urgent, "
    "2 when normal, 3 when it can wait."
)
ROUTE_TICKET: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "route_ticket",
        "description": "Send a support ticket to the team that handles it, with a priority.",
        "parameters": {
            "type": "object",
            "properties": {
                "team": {"type": "string", "enum": list(TEAMS)},
                "priority": {"type": "integer", "enum": list(PRIORITIES)},
            },
            "required": ["team", "priority"],
        },
    },
}
TOPICS: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged twice for {product} this month.",
        "My invoice for {product} shows the wrong amount.",
        "Please refund my {product} subscription, I cancelled it last week.",
        "My card was declined when I paid for {product}.",
        "I need a receipt for my {product} payment.",
        "The tax on my last {product} bill looks wrong.",
    ),
    "tech": (
        "{product} crashes every time I open {detail}.",
        "I can't log in to {product}, it says the session expired.",
        "The {product} API returns a 500 error on {detail}.",
        "Sync between {product} and {detail} stopped working.",
        "{product} shows a blank page since the last update.",
        "Uploading {detail} to {product} fails with a timeout.",
    ),
    "sales": (
        "Do you offer a discount on {product} for a team of 40?",
        "I'd like a demo of {product} for my company.",
        "What does the enterprise plan of {product} include?",
        "Can I get a quote for 25 {product} licenses?",
        "We want to upgrade to {product} Pro, what does it cost?",
        "Is there a nonprofit price for {product}?",
    ),
}
URGENCY: dict[int, tuple[str, ...]] = {  # "{ticket}" is the topic sentence
    1: (
        "URGENT: {ticket} Please help right now.",
        "{ticket} This is blocking our whole team today!",
        "{ticket} We need this fixed immediately, it's critical.",
        "Emergency! {ticket}",
    ),
    2: (
        "{ticket}",
        "Hello, {ticket} Thanks.",
        "{ticket} Could you look into it?",
        "Hi team, {ticket}",
    ),
    3: (
        "No rush at all, but {ticket}",
        "{ticket} Whenever you have time, no hurry.",
        "Low priority: {ticket}",
        "{ticket} It can wait until next month.",
    ),
}
TRAIN_PRODUCTS = ("Ledgerly", "PayDesk", "CloudNotes", "Trackr", "ShipFast", "DocuVault")
TRAIN_DETAILS = ("the reports tab", "Google Drive", "large PDFs", "the dashboard", "Slack", "the export screen")
HELDOUT_PRODUCTS = ("InvoiceHub", "TeamSpace", "DataPilot", "MailMint")
HELDOUT_DETAILS = ("the settings page", "Dropbox", "CSV files", "the calendar view")


@dataclass(frozen=True)
class Ticket:
    text: str
    team: str
    priority: int

    @property
    def call(self) -> dict[str, Any]:
        """The arguments of the right route_ticket call."""
        return {"team": self.team, "priority": self.priority}

    def record(self) -> dict[str, Any]:
        """The ticket as an OpenAI chat fine-tuning record answered by the right call."""
        return {
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": self.text},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_route",
                            "type": "function",
                            "function": {"name": "route_ticket", "arguments": _json(self.call)},
                        }
                    ],
                },
            ],
            "tools": [ROUTE_TICKET],
        }


def make_tickets(n_traced: int, n_heldout: int, *, seed: int = 0) -> tuple[list[Ticket], list[Ticket]]:
    """``(traced, held_out)`` tickets; the held-out ones name products and details the traced ones never do."""
    rng = random.Random(f"tickets:{seed}")

    def draw(count: int, products: tuple[str, ...], details: tuple[str, ...], offset: int) -> list[Ticket]:
        out: list[Ticket] = []
        seen: set[str] = set()
        while len(out) < count:
            i = len(out) + offset
            team, priority = TEAMS[i % 3], PRIORITIES[(i // 3) % 3]
            topic = rng.choice(TOPICS[team]).format(product=rng.choice(products), detail=rng.choice(details))
            text = rng.choice(URGENCY[priority]).format(ticket=topic)
            if text in seen:
                continue
            seen.add(text)
            out.append(Ticket(text, team, priority))
        rng.shuffle(out)
        return out

    return draw(n_traced, TRAIN_PRODUCTS, TRAIN_DETAILS, 0), draw(n_heldout, HELDOUT_PRODUCTS, HELDOUT_DETAILS, 1)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
