"""Canonical JSON text for values that are stored as text and compared for equality in SQL.

``run_metadata.value`` holds ``canonical_json(v)`` of each metadata value, and the filter compiler compares
against ``canonical_json(literal)``, so ``{"b": 1, "a": 2}`` and ``{"a":2,"b":1}`` are the same value.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    """``value`` as compact JSON text with sorted keys and unescaped non-ASCII (one text per value)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
