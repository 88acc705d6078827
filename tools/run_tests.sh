#!/usr/bin/env bash
# Set up the environment (tools/bootstrap.sh, idempotent) and run the test suite.
#   bash tools/run_tests.sh [pytest arguments]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/bootstrap.sh"
cd "$ROOT"
exec "${EMO_MM_VENV:-$ROOT/.venv}/bin/python" -m pytest tests -ra "$@"
