#!/usr/bin/env bash
# Distributed testing through torchrun (PyTorch DDP).
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as for dist_train.sh, which
# starts the processes (test.py takes CHECKPOINT after --launcher as well).
set -euo pipefail
EMO_MM_DIST_TOOL=test.py exec bash "$(dirname "$0")/dist_train.sh" "$1" "$3" "$2" "${@:4}"
