"""Leakage-safe train/validation split: by conversation group, never by row.

A session's group is its explicit ``source.group`` when it has one (a preference pair of two traces' runs: its
input), else its thread (``source.thread_id``), else its trace (``source.trace_id``), else its first LLM run
(``source.run_ids[0]``). ``assign_split`` hashes ``seed`` + the group key with BLAKE2b
(not Python's per-process salted ``hash()``), so the answer is the same in every process, on every machine and
whatever the order or number of the other sessions: all sessions of one thread or trace land on the same side,
and the realised share of groups in ``train`` converges on ``ratio``.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from tracetune.chat.types import ChatSession
from tracetune.errors import InvalidInput

Split = Literal["train", "validation"]
SPLITS: tuple[Split, ...] = ("train", "validation")

_SCALE = float(2**53)  # 53 bits: exactly representable, so the fraction is always < 1.0


def group_key(session: ChatSession) -> str:
    """``"group:<group>"``, ``"thread:<id>"``, ``"trace:<id>"`` or ``"run:<id>"``: what must not straddle the
    split."""
    source = session.get("source") or {}
    if source.get("group"):
        return f"group:{source['group']}"
    thread_id = source.get("thread_id")
    if thread_id:
        return f"thread:{thread_id}"
    trace_id = source.get("trace_id")
    if trace_id:
        return f"trace:{trace_id}"
    run_ids = source.get("run_ids")
    if run_ids:
        return f"run:{run_ids[0]}"
    raise InvalidInput("session has no thread, trace or run id to group by", field="source")


def group_fraction(key: str, seed: int | str = 0) -> float:
    """A uniform number in [0, 1) fixed by ``seed`` and ``key``."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / _SCALE


def assign_split(session: ChatSession, ratio: float = 0.9, seed: int | str = 0) -> Split:
    """``"train"`` for about ``ratio`` of the groups, else ``"validation"``; ``ratio`` 1.0 → always train."""
    if not 0.0 <= ratio <= 1.0:
        raise InvalidInput(f"ratio must be between 0 and 1, got {ratio!r}", field="ratio")
    return "train" if group_fraction(group_key(session), seed) < ratio else "validation"
