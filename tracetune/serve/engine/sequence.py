"""One sequence being decoded by :class:`~tracetune.serve.engine.hf.HFEngine` (a row of its batch once prefilled),
and the tokens that end a reply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from tracetune.serve.engine.protocol import EventSink, GenerationRequest
from tracetune.serve.text import TextTracker

if TYPE_CHECKING:
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
