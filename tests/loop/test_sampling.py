"""An automation's sampling: by a hash of run id and automation id, so a resumed firing decides the same, each
automation samples independently, and the kept share is the rate."""

from __future__ import annotations

import uuid

from tracetune.loop.firing import sampled


def test_sampling_keeps_the_rate_and_decides_the_same_every_time() -> None:
    automation, other = uuid.uuid4(), uuid.uuid4()
    runs = [uuid.uuid4() for _ in range(4000)]
    kept = [r for r in runs if sampled(r, automation, 0.25)]
    assert 0.22 < len(kept) / len(runs) < 0.28
    assert kept == [r for r in runs if sampled(r, automation, 0.25)]  # deterministic
    assert kept != [r for r in runs if sampled(r, other, 0.25)]  # per automation
    assert all(sampled(r, automation, 1.0) for r in runs[:100])
    assert set(kept) <= {r for r in runs if sampled(r, automation, 0.5)}  # a higher rate keeps a superset
