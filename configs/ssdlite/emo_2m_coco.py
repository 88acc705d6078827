# SSDLite with EMO-2M on COCO2017 (authors: 25.2 bbox mAP).
_base_ = './emo_1m_coco.py'
work_dir = './work_dirs/ssdlite/emo_2m_coco'

pretrained = 'https://github.com/zhangzjn/EMO/raw/main/resources/EMO_2M/net.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='2m', drop_path_rate=0.05, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(
        in_channels=(120, 200), out_channels=(120, 200, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(120, 200, 512, 256, 256, 128)))
