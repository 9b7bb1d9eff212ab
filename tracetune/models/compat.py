"""Where an upstream package still does something its own dependency deprecated, the workaround lives here, named.

* :func:`peft_wrapping`: peft (≤ 0.21.2) reads ``model.is_gradient_checkpointing`` when it wraps a model, which
  transformers ≥ 5.2x deprecates with a ``FutureWarning`` on every wrap (training and every adapter load). Our own
  code never reads it; the one warning that peft's read raises is dropped inside the block, nothing else is.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def peft_wrapping() -> Iterator[None]:
    """Wrap a model with peft inside this block (``get_peft_model``, ``PeftModel.from_pretrained``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
        yield
