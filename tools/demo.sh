#!/usr/bin/env bash
# Set up the environment (tools/bootstrap.sh, idempotent) and run the built-in demo:
# every EMO variant built, an authors-layout checkpoint loaded, params/FLOPs/shapes printed.
#   bash tools/demo.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/bootstrap.sh"
cd "$ROOT"
exec "${EMO_MM_VENV:-$ROOT/.venv}/bin/python" tools/smoke.py "$@"
