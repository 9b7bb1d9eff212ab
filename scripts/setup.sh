#!/usr/bin/env bash
# Create .venv and install tracetune with the extras named in $1 (comma-separated, e.g. "test").
# torch, when a later extra needs it, is installed first from the local CPU build (torch==2.13.0).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install -q -e ".[${extras}]"
else
  .venv/bin/python -m pip install -q -e .
fi
