# Mask R-CNN with EMOv2-5M on COCO2017 (authors: 42.3 bbox / 39.0 mask mAP).
_base_ = './emov2_1m_coco.py'
work_dir = './work_dirs/mask_rcnn/emov2_5m_coco'

pretrained = ('https://github.com/zhangzjn/EMOv2/raw/main/resources/Cls/'
              'EMOv2_5M_224.pth')
model = dict(
    backbone=dict(
        arch='5m', drop_path_rate=0.05, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[48, 72, 160, 288]))
