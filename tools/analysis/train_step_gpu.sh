#!/usr/bin/env bash
# Whole training steps against the authors' per-GPU batches, on one GPU:
# SSDLite-EMO-5M and -EMOv2-5M (24 images at 320x320), DeepLabV3-EMO-5M (4 at
# 512x512) and -EMOv2-5M (8); fp32 and bf16 autocast; NCHW (as before) and
# channels-last (the configs' default); ms per step and the CUDA allocator's
# peak memory.
#
#     bash tools/analysis/train_step_gpu.sh [REPEAT]
#
# What the authors logged: EMO (zhangzjn/EMO resources/*_EMO_5M/*.log,
# A100-40GB) SSDLite-EMO-5M 0.250 s/iter and 6.5 GB, DeepLabV3-EMO-5M about
# 0.35 s/iter and 6.1 GB; EMOv2 (zhangzjn/EMOv2 resources/Det, resources/Seg,
# L40S) SSDLite-EMOv2-5M 0.258 s/iter and 5.7 GB, DeepLabV3-EMOv2-5M 0.557
# s/iter and 10.2 GB. Their times include data loading and the SyncBN exchange
# between GPUs; a step here does not.
# mmdet needs mmcv's compiled ops for this Python and torch (tools/bootstrap.sh
# builds them; CPU ops are enough: neither step runs an mmcv CUDA op).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repeat=${1:-20}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for dtype in fp32 bf16; do
    for run in ssdlite/emo_5m_coco.py:24 ssdlite/emov2_5m_coco.py:24 \
               deeplabv3/emo_5m_ade20k.py:4 deeplabv3/emov2_5m_ade20k.py:8; do
        python tools/analysis/benchmark.py --config "configs/${run%%:*}" \
            --train --compare --device cuda --dtype "$dtype" \
            --batches "${run##*:}" --repeat "$repeat" --warmup 5
    done
done
