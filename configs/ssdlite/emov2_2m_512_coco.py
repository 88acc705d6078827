# SSDLite with EMOv2-2M on COCO2017, 512x512 (authors: 30.7 bbox mAP).
_base_ = './emov2_1m_512_coco.py'
work_dir = './work_dirs/ssdlite/emov2_2m_512_coco'

pretrained = ('https://github.com/zhangzjn/EMOv2/raw/main/resources/Cls/'
              'EMOv2_2M_224.pth')
model = dict(
    backbone=dict(
        arch='2m', drop_path_rate=0.05, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(
        in_channels=(120, 200), out_channels=(120, 200, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(120, 200, 512, 256, 256, 128)))
