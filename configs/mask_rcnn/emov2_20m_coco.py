# Mask R-CNN with EMOv2-20M on COCO2017 (authors: 44.2 bbox / 40.6 mask mAP).
_base_ = './emov2_1m_coco.py'
work_dir = './work_dirs/mask_rcnn/emov2_20m_coco'

pretrained = None  # see init_cfg below
model = dict(
    backbone=dict(
        arch='20m',
        drop_path_rate=0.1,
        # The authors released no EMOv2-20M ImageNet checkpoint (their run
        # loaded ../pretrained/emo2_20M.pth), so the backbone starts from
        # random weights here. Pass yours with
        # --cfg-options \
        #   model.backbone.init_cfg="dict(type='Pretrained',checkpoint='PATH')"
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 320, 448]))
