#!/usr/bin/env bash
# The built-in demos, end to end on a CPU:
#   bash tools/demo.sh [det|seg|cls] [emov2] [extra tools/train.py arguments]
#   det (default): SSDLite-EMO-1M on generated shapes (COCO format);
#   seg:           DeepLabV3-EMO-1M on generated outdoor scenes (ADE20K format);
#   cls:           EMO-1M classifier on generated shapes (ImageNet format);
#   emov2:         the same with EMOv2-1M (configs/demo/*emov2*); alone, the
#                  detection demo.
# Steps:
#   1. set up .venv (tools/bootstrap.sh, idempotent);
#   2. check every EMO and EMOv2 variant (tools/smoke.py: params, FLOPs, feature shapes, the
#      authors' checkpoint layout loaded through init_cfg);
#   3. generate the data set under data/ (once);
#   4. train with tools/train.py in a new work_dirs/demo_<model>/<date_time>/
#      (nothing earlier is overwritten);
#   5. test the last checkpoint on the val split with tools/test.py (COCO bbox mAP,
#      mIoU or top-1/top-5), writing the pictures (ground truth | prediction) to
#      <work dir>/test_vis/;
#   6. draw the predictions on one val image with tools/infer.py.
# e.g. bash tools/demo.sh seg --cfg-options train_cfg.max_iters=100
# Environment:
#   EMO_MM_DEMO_DIR        where data/ and work_dirs/ go (default: the repository)
#   EMO_MM_DEMO_SMOKE      0 skips step 2 (e.g. when running a second demo)
#   EMO_MM_DEMO_DATA_ARGS  extra arguments for the data generator, e.g.
#                          "--num-train-per-class 4" (a fresh EMO_MM_DEMO_DIR only:
#                          existing data is reused)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${EMO_MM_DEMO_DIR:-$ROOT}
TASK=det
if [[ $# -gt 0 && $1 != -* && $1 != emov2 ]]; then
    TASK=$1
    shift
fi
case $TASK in
    det)
        DATA=$OUT/data/shapes_coco
        DATA_ROOT=$DATA/
        CONFIG=configs/demo/ssdlite_emo_1m_shapes.py
        MAKE_DATA=tools/misc/make_demo_coco.py
        DATA_DONE=$DATA/annotations/val.json
        IMAGE=$DATA/val/000000.png
        WORK=$OUT/work_dirs/demo_ssdlite
        METRICS='COCO metrics above (coco/bbox_mAP...)'
        SHOWS='each val image: ground truth (left) | the boxes scoring >= 0.3 (right), named with class and score';;
    seg)
        DATA=$OUT/data/scenes_ade20k
        DATA_ROOT=$DATA/
        CONFIG=configs/demo/deeplabv3_emo_1m_scenes.py
        MAKE_DATA=tools/misc/make_demo_ade20k.py
        IMAGE=$DATA/images/validation/ADE_val_00000001.jpg
        DATA_DONE=$DATA/annotations/validation/ADE_val_00000050.png
        WORK=$OUT/work_dirs/demo_deeplabv3
        METRICS='per-class IoU and mIoU above'
        SHOWS='each val scene enlarged: ground truth (left) | prediction (right), with the legend of the nine classes';;
    cls)
        DATA=$OUT/data/shapes_imagenet
        DATA_ROOT=$DATA
        CONFIG=configs/demo/emo_1m_shapes_cls.py
        MAKE_DATA=tools/misc/make_demo_imagenet.py
        IMAGE=$DATA/val/ILSVRC2012_val_00000001.JPEG
        DATA_DONE=$DATA/meta/val.txt
        WORK=$OUT/work_dirs/demo_cls
        METRICS='accuracy/top1 and top5 above (EMA and *_origin: raw weights)'
        SHOWS='each val image enlarged to 256 px, with its true and predicted class';;
    *)
        echo "error: unknown demo '$TASK'; expected 'det', 'seg' or 'cls', then optionally 'emov2'" >&2
        exit 2;;
esac
if [[ $# -gt 0 && $1 == emov2 ]]; then
    shift
    # configs/demo/ssdlite_emo_1m_shapes.py -> ssdlite_emov2_1m_shapes.py
    CONFIG=$(dirname "$CONFIG")/$(basename "$CONFIG" | sed 's/emo_1m/emov2_1m/')
    WORK=${WORK}_emov2
fi

bash tools/bootstrap.sh
PY=${EMO_MM_VENV:-$ROOT/.venv}/bin/python

if [[ ${EMO_MM_DEMO_SMOKE:-1} != 0 ]]; then
    "$PY" tools/smoke.py
fi

if [[ ! -f $DATA_DONE ]]; then
    # shellcheck disable=SC2086  (word splitting of the extra arguments)
    "$PY" "$MAKE_DATA" "$DATA" ${EMO_MM_DEMO_DATA_ARGS:-}
fi
WORK=$WORK/$(date +%Y%m%d_%H%M%S)
start=$(date +%s)
# The configs read data/... relative to the repository; point them at $DATA.
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK" --cfg-options "data_root=$DATA_ROOT" "$@"
trained=$(date +%s)
CKPT=$(cat "$WORK/last_checkpoint")
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK" --show-dir "$WORK/test_vis" \
    --cfg-options "data_root=$DATA_ROOT"
"$PY" tools/infer.py "$CONFIG" "$CKPT" "$IMAGE" --out-dir "$WORK/infer"

echo
echo "demo: trained in $(( (trained - start) / 60 )) min $(( (trained - start) % 60 )) s;" \
     "checkpoint $CKPT"
echo "demo: $METRICS"
echo "demo: pictures in $WORK/test_vis/: $SHOWS"
echo "demo: and $WORK/infer/vis/: tools/infer.py on $IMAGE"
