# RetinaNet with EMOv2-2M on COCO2017 (authors: 39.3 bbox mAP).
_base_ = './emov2_1m_coco.py'
work_dir = './work_dirs/retinanet/emov2_2m_coco'

pretrained = ('https://github.com/zhangzjn/EMOv2/raw/main/resources/Cls/'
              'EMOv2_2M_224.pth')
model = dict(
    backbone=dict(
        arch='2m', drop_path_rate=0.05, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[32, 48, 120, 200]))
