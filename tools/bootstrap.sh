#!/usr/bin/env bash
# Create or refresh the project-local virtual environment with the whole emo_mm stack.
#
#   bash tools/bootstrap.sh            # idempotent; a second run takes a second
#
# Environment:
#   EMO_MM_VENV         where the environment lives (default: <repo>/.venv)
#   EMO_MM_WHEEL_CACHE  where built mmcv wheels are kept, one folder per torch version
#                       (default: ${XDG_CACHE_HOME:-~/.cache}/emo_mm/wheels)
#   PYTHON              interpreter used to create the environment (default: python3)
#
# Every package is installed at its exact version in requirements/constraints.txt (the
# lock; setup.py declares only ranges), so the environment is the same on every machine.
#
# mmcv 2.1.0 exists only as a source package and its C++ ops are compiled against the
# installed torch. pip's own wheel cache keys on the source package alone, so it would
# silently hand back a wheel built for another torch; we bypass it (--no-cache-dir) and
# keep our own cache keyed on the torch version instead.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${EMO_MM_VENV:-$ROOT/.venv}
WHEEL_CACHE=${EMO_MM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/emo_mm/wheels}
LOCK=$ROOT/requirements/constraints.txt
MMCV_VERSION=$(sed -n 's/^mmcv==\([^ #]*\).*/\1/p' "$LOCK")

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# Everything that decides the environment's contents; a change to any of them re-runs
# the install steps (each of which is itself idempotent).
stamp_of() {
    cat "$ROOT/tools/bootstrap.sh" "$ROOT/setup.py" "$ROOT"/requirements/*.txt | sha256sum | cut -d' ' -f1
}
STAMP_FILE=$VENV/.emo_mm_stamp
if [[ -f $STAMP_FILE && "$(cat "$STAMP_FILE")" == "$(stamp_of)" ]]; then
    exit 0
fi

if [[ ! -x $VENV/bin/python ]]; then
    log "creating virtual environment in $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
PY=$VENV/bin/python
# pip warns about every missing folder of this machine's local index; keep those out.
quiet_pip() { "$PY" -m pip "$@" 2> >(grep -v "^WARNING: Location '" >&2); }
pip_install() { quiet_pip install --disable-pip-version-check -q -c "$LOCK" "$@"; }

# Build tools first: setuptools bounds are explained in requirements/constraints.txt;
# ninja lets the mmcv build use both cores.
pip_install setuptools wheel ninja

# torch before mmcv: mmcv compiles against it.
log "installing torch"
pip_install torch torchvision
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')
PY_TAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
MMCV_CACHE=$WHEEL_CACHE/torch-$TORCH_VERSION-$PY_TAG

build_mmcv_wheel() {
    local work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    # torch's extension builder calls ${CXX:-c++}; find out now, not 20 minutes in.
    if ! echo 'int main() { return 0; }' |
            "${CXX:-c++}" -std=c++20 -x c++ -o "$work/cxx_check" - 2>/dev/null; then
        log "error: no C++20 compiler (${CXX:-c++}) to build mmcv $MMCV_VERSION: install g++ >= 10 (e.g. apt install g++) or set CXX"
        exit 1
    fi
    log "building mmcv $MMCV_VERSION against torch $TORCH_VERSION (about 25 minutes on 2 cores)"
    quiet_pip download --disable-pip-version-check -q --no-cache-dir --no-deps \
        --no-binary :all: --no-build-isolation -d "$work" "mmcv==$MMCV_VERSION"
    tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
    # mmcv hard-codes C++17; the torch >= 2.10 headers need C++20.
    sed -i 's/-std=c++17/-std=c++20/g' "$work/mmcv-$MMCV_VERSION/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        quiet_pip wheel --disable-pip-version-check -q --no-cache-dir --no-deps \
        --no-build-isolation -w "$work/dist" "$work/mmcv-$MMCV_VERSION"
    mkdir -p "$MMCV_CACHE"
    # Copy then rename, so a concurrent or interrupted run never sees half a wheel.
    local built
    built=$(ls "$work"/dist/mmcv-*.whl)
    cp "$built" "$MMCV_CACHE/.$(basename "$built").part"
    mv "$MMCV_CACHE/.$(basename "$built").part" "$MMCV_CACHE/$(basename "$built")"
}

mmcv_wheel=$(ls "$MMCV_CACHE"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [[ -z $mmcv_wheel ]]; then
    build_mmcv_wheel
    mmcv_wheel=$(ls "$MMCV_CACHE"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)
fi
MMCV_MARKER=$VENV/.mmcv_built_for_torch
if [[ "$(cat "$MMCV_MARKER" 2>/dev/null)" != "$TORCH_VERSION" ]]; then
    log "installing $(basename "$mmcv_wheel") from $MMCV_CACHE"
    pip_install --no-cache-dir --no-deps --force-reinstall "$mmcv_wheel"
    echo "$TORCH_VERSION" > "$MMCV_MARKER"
fi

log "installing the OpenMMLab stack and test tools"
pip_install -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/det.txt" \
    -r "$ROOT/requirements/seg.txt" -r "$ROOT/requirements/cls.txt" \
    -r "$ROOT/requirements/tests.txt"
pip_install --no-deps --no-build-isolation -e "$ROOT"

# Fail here, not in the first test, if anything is off (mmcv.ops loads the compiled ops).
"$PY" - <<'PYEOF'
import mmcv.ops, mmdet, mmseg, mmpretrain, emo_mm, torch
print(f'[bootstrap] torch {torch.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}, emo_mm {emo_mm.__version__}')
PYEOF
stamp_of > "$STAMP_FILE"
