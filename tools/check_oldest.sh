#!/usr/bin/env bash
# Run the backbone, checkpoint and safe-loading tests on the oldest versions emo_mm
# declares.
#
#   bash tools/check_oldest.sh [PYTEST_ARGS...]
#
# setup.py's lower bounds are the versions in requirements/oldest.txt; this proves them.
# The environment is built once per content of that file, outside the clone (a fresh
# clone or CI run on the same machine reuses it), and emo_mm is imported from this
# clone (PYTHONPATH), never installed into it, so one environment serves every clone.
#
# Arguments go to pytest (default: the backbone, checkpoint and safe-loading test files).
#
# Environment:
#   EMO_MM_OLDEST_CACHE     where the environments live, one folder per content of
#                           requirements/oldest.txt (default: ${XDG_CACHE_HOME:-~/.cache}/emo_mm)
#   EMO_MM_OLDEST_DESELECT  pytest -k expression for the tests left out (default: those
#                           that need mmdet, mmseg or mmpretrain, which the oldest
#                           environment does not have; '' runs everything)
#   PYTHON                  interpreter used to create the environment (default: python3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OLDEST=$ROOT/requirements/oldest.txt
CACHE=${EMO_MM_OLDEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/emo_mm}
BASE_PY=${PYTHON:-python3}
DESELECT=${EMO_MM_OLDEST_DESELECT-not downstream_scope and not custom_imports_config and not refuse_with_one_line}
# Bump when the install steps below change, so that the environment is rebuilt.
RECIPE=1

log() { printf '[check_oldest] %s\n' "$*" >&2; }

# The interpreter's version is part of the key: a venv breaks when it changes.
KEY=$({ echo "recipe $RECIPE"; "$BASE_PY" -VV; cat "$OLDEST"; } | sha256sum | cut -c1-16)
VENV=$CACHE/oldest-$KEY
PY=$VENV/bin/python
DONE=$VENV/.complete

# Concurrent runs (two clones, or CI beside a developer) build one environment, once.
mkdir -p "$CACHE"
exec 9> "$VENV.lock"
flock 9

# pip warns about every missing folder of this machine's local index; keep those out.
quiet_pip() { "$PY" -m pip "$@" 2> >(grep -v "^WARNING: Location '" >&2); }
pip_install() { quiet_pip install --disable-pip-version-check -q "$@"; }

build() {
    local start=$SECONDS
    # A half-built environment (interrupted run) is never reused: start afresh.
    rm -rf "$VENV"
    log "building the oldest-versions environment in $VENV (a few minutes: torch's"
    log "PyPI wheel is a CUDA build and pulls about 3 GB of nvidia packages)"
    "$BASE_PY" -m venv "$VENV"
    # --no-cache-dir: the wheels are needed once per environment; pip's cache would keep
    # another 3 GB of them.
    pip_install --no-cache-dir -r "$OLDEST"
    touch "$DONE"
    log "built in $((SECONDS - start)) s"
}

if [[ ! -f $DONE ]]; then
    build
fi

# Environments of older contents of requirements/oldest.txt (about 5 GB each) go once
# unused for a week (their lock file's time is their last use); one in use right now
# holds its lock and stays. A branch still on one rebuilds it.
for lock in "$CACHE"/oldest-*.lock; do
    if [[ $lock != "$VENV.lock" && -n $(find "$lock" -mtime +7) ]] &&
        flock -n "$lock" rm -rf "${lock%.lock}"; then
        log "removed ${lock%.lock}, unused for a week"
        rm -f "$lock"
    fi
done

# What was proven on; the tests parse this line.
"$PY" - <<'PYEOF'
import platform, mmcv, mmengine, numpy, torch
print(f'[check_oldest] torch {torch.__version__}, mmengine {mmengine.__version__}, '
      f'mmcv {mmcv.__version__}, numpy {numpy.__version__}, python {platform.python_version()}',
      flush=True)
PYEOF

if [[ $# -eq 0 ]]; then
    # The safe loader's tests are what needs torch 2.6, mmengine 0.10.3 and numpy 1.25.
    set -- tests/test_models/test_backbones/test_emo.py tests/test_models/test_checkpoint.py \
        tests/test_utils/test_safe_load.py
fi
cd "$ROOT"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
exec "$PY" -m pytest -p no:cacheprovider ${DESELECT:+-k "$DESELECT"} "$@"
