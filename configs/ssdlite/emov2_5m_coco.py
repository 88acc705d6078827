# SSDLite with EMOv2-5M on COCO2017, 320x320 (authors: 29.6 bbox mAP).
_base_ = './emov2_1m_coco.py'
work_dir = './work_dirs/ssdlite/emov2_5m_coco'

pretrained = ('https://github.com/zhangzjn/EMOv2/raw/main/resources/Cls/'
              'EMOv2_5M_224.pth')
model = dict(
    backbone=dict(
        arch='5m', drop_path_rate=0.05, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(
        in_channels=(160, 288), out_channels=(160, 288, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(160, 288, 512, 256, 256, 128)))
