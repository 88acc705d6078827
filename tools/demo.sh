#!/usr/bin/env bash
# The built-in demo, end to end on a CPU:
#   1. set up .venv (tools/bootstrap.sh, idempotent);
#   2. check every EMO variant (tools/smoke.py: params, FLOPs, feature shapes, the
#      authors' checkpoint layout loaded through init_cfg);
#   3. generate the shapes data set in COCO format in data/shapes_coco (once);
#   4. train SSDLite-EMO-1M on it with tools/train.py, in a new
#      work_dirs/demo_ssdlite/<date_time>/ (nothing earlier is overwritten);
#   5. test the last checkpoint on the val split with tools/test.py (COCO bbox mAP),
#      writing the pictures (ground truth | prediction) to <work dir>/test_vis/;
#   6. draw the detections on one val image with tools/infer.py.
# Extra arguments go to tools/train.py, e.g. --cfg-options train_cfg.max_iters=100
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash tools/bootstrap.sh
PY=${EMO_MM_VENV:-$ROOT/.venv}/bin/python

"$PY" tools/smoke.py

DATA=data/shapes_coco
CONFIG=configs/demo/ssdlite_emo_1m_shapes.py
if [[ ! -f $DATA/annotations/val.json ]]; then
    "$PY" tools/misc/make_demo_coco.py "$DATA"
fi
WORK=work_dirs/demo_ssdlite/$(date +%Y%m%d_%H%M%S)
start=$(date +%s)
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK" "$@"
trained=$(date +%s)
CKPT=$(cat "$WORK/last_checkpoint")
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK" --show-dir "$WORK/test_vis"
"$PY" tools/infer.py "$CONFIG" "$CKPT" "$DATA/val/000000.png" --out-dir "$WORK/infer"

echo
echo "demo: trained in $(( (trained - start) / 60 )) min $(( (trained - start) % 60 )) s;" \
     "checkpoint $CKPT"
echo "demo: COCO metrics above (coco/bbox_mAP...); pictures in $WORK/test_vis/ and $WORK/infer/vis/"
