"""One sequence being decoded by :class:`~tracetune.serve.engine.hf.HFEngine` (a row of its batch once prefilled),
and the tokens that end a reply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from tracetune.chat.format import get_template
from tracetune.serve.engine.protocol import EventSink, GenerationRequest
from tracetune.serve.text import TextTracker

if TYPE_CHECKING:
    from tracetune.models.tokenizer import ModelTokenizer
    from tracetune.serve.engine.grammar import ConstraintState


@dataclass(eq=False)
class Choice:
    """Choice ``index`` of ``request``: its adapter, text, random generator, constraint state and counts."""

    request: GenerationRequest
    index: int
    sink: EventSink
    adapter: str
    text: TextTracker
    generator: torch.Generator | None
    state: ConstraintState | None
    prompt_tokens: int
    last: int = -1
    generated: int = 0
    pending_ids: list[int] = field(default_factory=list)


def stop_token_ids(tokenizer: ModelTokenizer, chat_template: str) -> frozenset[int]:
    """Tokens that end a reply: the tokenizer's eos, the template's end of turn and start of turn."""
    template = get_template(chat_template)
    found = {tokenizer.eos_token_id}
    for marker in (template.turn_end, template.turn_start, "<|endoftext|>"):
        found.add(tokenizer.token_id(marker))
    return frozenset(i for i in found if i is not None)
