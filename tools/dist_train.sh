#!/usr/bin/env bash
# Distributed training through torchrun (PyTorch DDP).
#   bash tools/dist_train.sh CONFIG GPUS [train.py options]
# Multi-node: run on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.1.1.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
# tools/dist_test.sh runs tools/test.py through this script (EMO_MM_DIST_TOOL=test.py).
set -euo pipefail
CONFIG=$1
GPUS=$2

exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$GPUS" \
    --master_port="${PORT:-29500}" \
    "$(dirname "$0")/${EMO_MM_DIST_TOOL:-train.py}" "$CONFIG" --launcher pytorch "${@:3}"
