"""Constrained decoding, the engine's half: a :class:`~tracetune.serve.constrain.ConstraintSpec` (made from the
request by ``serve.constrain``) compiled for one tokenizer by llguidance (:func:`compile_constraint`, LRU-cached),
and one :class:`ConstraintState` per generated sequence that masks logits and advances token by token. Imports
llguidance, numpy and torch on first use only."""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

from tracetune.errors import InvalidInput
from tracetune.serve.constrain import SCHEMA_FIELD, ConstraintSpec

if TYPE_CHECKING:
    import llguidance
    import numpy as np
    import torch

COMPILED_CACHE_SIZE = 128


class ConstraintViolation(ValueError):
    """The engine fed a token the constraint does not allow (a bug in the caller: it must mask first)."""


# -- compiled constraints and per-sequence state ---------------------------------------------------------------


class _TokenizerInfo:
    """llguidance's view of one tokenizer (building it reads the whole vocabulary: ~0.5 s, so it is memoized)."""

    def __init__(self, tokenizer: Any) -> None:
        import llguidance

        backend = getattr(tokenizer, "backend", None) or getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or not hasattr(backend, "to_str"):
            raise TypeError("compile_constraint needs a ModelTokenizer or a fast Hugging Face tokenizer")
        eos = getattr(tokenizer, "eos_token_id", None)
        if not isinstance(eos, int):
            raise ValueError("the tokenizer has no end-of-turn (eos) token")
        self.vocab_size = int(backend.get_vocab_size(with_added_tokens=True))
        self.eos = eos
        self.ll = llguidance.LLTokenizer(backend.to_str(), n_vocab=self.vocab_size, eos_token=eos)
        self.words = (self.vocab_size + 31) // 32


_tokenizer_infos: dict[int, tuple[Any, _TokenizerInfo]] = {}
_infos_lock = threading.Lock()


def _tokenizer_info(tokenizer: Any) -> _TokenizerInfo:
    with _infos_lock:
        hit = _tokenizer_infos.get(id(tokenizer))
        if hit is not None and hit[0] is tokenizer:
            return hit[1]
        info = _TokenizerInfo(tokenizer)
        if len(_tokenizer_infos) >= 8:
            _tokenizer_infos.pop(next(iter(_tokenizer_infos)))
        _tokenizer_infos[id(tokenizer)] = (tokenizer, info)  # holds the tokenizer: its id is not reused
        return info


class Constraint:
    """A grammar compiled for one tokenizer; :meth:`start` gives a fresh state per generated sequence."""

    def __init__(self, spec: ConstraintSpec, info: _TokenizerInfo, matcher: llguidance.LLMatcher) -> None:
        self.spec = spec
        self.eos_token_id = info.eos
        self._info = info
        self._template = matcher

    def start(self) -> ConstraintState:
        return ConstraintState(self, self._template.deep_copy())


class ConstraintState:
    """Where one sequence is in the grammar. Not thread-safe (one sequence, one thread at a time)."""

    def __init__(self, constraint: Constraint, matcher: llguidance.LLMatcher) -> None:
        import numpy as np

        self.constraint = constraint
        self._matcher = matcher
        self._info = constraint._info
        self._mask_words: np.ndarray = np.zeros(self._info.words, dtype=np.uint32)
        self._mask_fresh = False

    def _mask(self) -> np.ndarray:
        """The allowed next tokens as packed bits (token ``i`` is bit ``i % 32`` of word ``i // 32``)."""
        if not self._mask_fresh:
            words = self._mask_words
            if self._matcher.is_stopped():  # complete and end-of-turn consumed: only end-of-turn again
                words[:] = 0
                words[self._info.eos >> 5] = 1 << (self._info.eos & 31)
            else:
                self._matcher.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)
            self._mask_fresh = True
        return self._mask_words

    def allowed(self, token_id: int) -> bool:
        """Whether ``token_id`` may come next."""
        if not 0 <= token_id < self._info.vocab_size:
            return False
        return bool(self._mask()[token_id >> 5] >> (token_id & 31) & 1)

    def allowed_mask(self, device: Any = None) -> torch.Tensor:
        """A bool tensor over the tokenizer's vocabulary: True where the token may come next."""
        import numpy as np
        import torch

        bits = np.unpackbits(self._mask().view(np.uint8), count=self._info.vocab_size, bitorder="little")
        mask = torch.from_numpy(bits.view(np.bool_))
        return mask if device is None else mask.to(device, non_blocking=True)

    def mask_logits(self, logits: torch.Tensor) -> None:
        """Set every disallowed token's logit to -inf, in place. ``logits`` is 1-D over the model's vocabulary,
        which may be larger than the tokenizer's (those extra ids are never allowed).

        On CPU the work is done by numpy on the tensor's memory, single-threaded: for one 49k-entry row torch's
        ``masked_fill_`` costs several times more (intra-op thread hand-offs), and on a busy 2-core machine it
        sometimes waits milliseconds for its pool."""
        import numpy as np
        import torch

        if logits.dim() != 1:
            raise ValueError(f"mask_logits takes a 1-D tensor, got shape {tuple(logits.shape)}")
        n = min(self._info.vocab_size, logits.shape[0])
        if logits.shape[0] > n:
            logits[n:] = float("-inf")
        if logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.float64, torch.float16):
            denied = np.unpackbits((~self._mask()).view(np.uint8), count=n, bitorder="little").view(np.bool_)
            np.copyto(logits.detach().numpy()[:n], -np.inf, where=denied)
            return
        allowed = self.allowed_mask(logits.device)[:n]
        logits[:n].masked_fill_(~allowed, float("-inf"))

    def advance(self, token_id: int) -> None:
        """Consume the generated token; :class:`ConstraintViolation` if it was not allowed."""
        if not self.allowed(token_id):
            kind = self.constraint.spec.kind
            raise ConstraintViolation(f"token {token_id} is not allowed here by the {kind} constraint")
        if self._matcher.is_stopped():
            return  # end-of-turn again after the end: nothing to consume
        if not self._matcher.consume_token(token_id):
            raise ConstraintViolation(f"token {token_id} rejected: {self._matcher.get_error()}")
        self._mask_fresh = False

    def is_accepting(self) -> bool:
        """The output so far is complete: end-of-turn may come next (or has come)."""
        return bool(self._matcher.is_accepting() or self._matcher.is_stopped())

    def is_finished(self) -> bool:
        """Nothing but end-of-turn may follow (or it has been consumed): stop generating."""
        if self._matcher.is_stopped():
            return True
        if not self._matcher.is_accepting():
            return False
        mask = self._mask().copy()
        eos = self._info.eos
        mask[eos >> 5] &= ~(1 << (eos & 31)) & 0xFFFFFFFF
        return not mask.any()


def compile_constraint(tokenizer: Any, spec: ConstraintSpec) -> Constraint:
    """Compile ``spec`` for ``tokenizer`` (a ``ModelTokenizer`` or a fast HF tokenizer whose ``eos_token_id``
    is the end-of-turn token). Compiled grammars are kept in an LRU keyed by (grammar text, tokenizer)."""
    return _compile(spec, _tokenizer_info(tokenizer))


@functools.lru_cache(maxsize=COMPILED_CACHE_SIZE)
def _compile(spec: ConstraintSpec, info: _TokenizerInfo) -> Constraint:
    import llguidance

    matcher = llguidance.LLMatcher(info.ll, spec.grammar, log_level=0)
    if matcher.is_error():
        raise InvalidInput(
            f"the constraint cannot be compiled: {matcher.get_error()}", field=_spec_field(spec), code="invalid_value"
        )
    return Constraint(spec, info, matcher)


def _spec_field(spec: ConstraintSpec) -> str:
    return "tool_choice" if spec.kind == "tool_call" else SCHEMA_FIELD
