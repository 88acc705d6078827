#!/usr/bin/env bash
# Set up the environment (tools/bootstrap.sh, idempotent) and run the test suite.
#   bash tools/run_tests.sh [pytest arguments]
# Two worker processes (pytest-xdist), one torch thread each (tests/conftest.py);
# EMO_MM_TEST_WORKERS=0 runs in this process. The 15 slowest tests are listed at
# the end.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/bootstrap.sh"
cd "$ROOT"
exec "${EMO_MM_VENV:-$ROOT/.venv}/bin/python" -m pytest tests -ra \
    -n "${EMO_MM_TEST_WORKERS:-2}" --dist loadgroup --durations=15 "$@"
