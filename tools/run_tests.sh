#!/usr/bin/env bash
# Set up the environment (tools/bootstrap.sh, idempotent), check the lint
# (flake8, isort, yapf with setup.cfg's settings) and run the test suite.
#   bash tools/run_tests.sh [pytest arguments]
# Two worker processes (pytest-xdist), one torch thread each (tests/conftest.py);
# EMO_MM_TEST_WORKERS=0 runs in this process; EMO_MM_LINT=0 skips the lint. The
# 15 slowest tests are listed at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/bootstrap.sh"
cd "$ROOT"
PY=${EMO_MM_VENV:-$ROOT/.venv}/bin/python
if [[ ${EMO_MM_LINT:-1} != 0 ]]; then
    CODE=(emo_mm tools tests configs setup.py)
    "$PY" -m flake8 "${CODE[@]}"
    "$PY" -m isort --check-only --diff "${CODE[@]}"
    # yapf --diff exits 1 on a difference and prints it.
    "$PY" -m yapf --diff --recursive --parallel "${CODE[@]}"
    echo "lint: flake8, isort and yapf pass"
fi
exec "$PY" -m pytest tests -ra \
    -n "${EMO_MM_TEST_WORKERS:-2}" --dist loadgroup --durations=15 "$@"
