#!/usr/bin/env bash
# The test command: set up .venv with the test extra, start a throw-away PostgreSQL, install chromium (the UI's
# browser test), run lint, types and the suite on both SQLite and PostgreSQL. Pytest's "no tests collected"
# (exit 5) counts as a failure.
#   scripts/test.sh          the default suite (everything but the slow tier): under 15 minutes on 2 cores
#   scripts/test.sh --slow   the slow tier (marker "slow": real SmolLM2 fine-tuning acceptance, ~7 minutes)
# CI (.ci/run) runs both. Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=(-m "not slow")
if [ "${1:-}" = "--slow" ]; then
  shift
  tier=(-m slow)
  export TRACETUNE_TEST_SLOW=1
fi
scripts/setup.sh test
export TRACETUNE_TEST_POSTGRES_URL="${TRACETUNE_TEST_POSTGRES_URL:-$(scripts/start-postgres.sh)}"
# The UI's browser test drives Debian's chromium through playwright (never `playwright install`): install it when
# missing, as start-postgres.sh does for PostgreSQL.
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium from Debian packages" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
export HF_HUB_OFFLINE=1
.venv/bin/ruff check tracetune tests bench
.venv/bin/ruff format --check tracetune tests bench
.venv/bin/mypy
set +e
# Two worker processes (CI has 2 cores), a test file per worker: a file's module-scoped servers and models are
# built once. TRACETUNE_TEST_WORKERS=0 runs serially. The 25 slowest steps are listed at the end: the suite must
# stay under 15 minutes on 2 cores, and that list is where time goes.
.venv/bin/pytest -n "${TRACETUNE_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder --durations=25 "${tier[@]}" "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit "$rc"
