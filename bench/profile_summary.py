#!/usr/bin/env python
"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): the share of non-idle samples spent in
(inclusive) and directly on (self) each function. ``bench/ingest.py --profile --workdir D`` writes them.

  .venv/bin/python bench/profile_summary.py D/tracetune-1/profile.txt [--top 30] [--match tracetune]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "/tracetune/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/tracetune/":
                path = "tracetune/" + path
            break
    return f"{m['func']} ({path})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--match", default=None, help="only list functions whose name or file contains this")
    args = ap.parse_args()
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    total = 0
    with open(args.profile) as fh:
        lines = fh.read().splitlines()
    for line in lines:
        if not line:
            continue
        stack, _, count_s = line.rpartition(" ")
        count = int(count_s)
        frames = [short(f) for f in stack.split(";")[1:]]  # first element is the thread
        if not frames:
            continue
        total += count
        for f in set(frames):
            inclusive[f] += count
        self_[frames[-1]] += count
    print(f"{total} samples (non-idle)")
    print("\n-- inclusive --")
    for f, c in inclusive.most_common():
        if args.match and args.match not in f:
            continue
        print(f"{100 * c / total:5.1f}%  {f}")
        args.top -= 1
        if args.top <= 0:
            break
    print("\n-- self (top 25) --")
    for f, c in self_.most_common(25):
        print(f"{100 * c / total:5.1f}%  {f}")


if __name__ == "__main__":
    main()
