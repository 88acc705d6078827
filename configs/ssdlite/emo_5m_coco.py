# SSDLite with EMO-5M on COCO2017 (authors: 27.9 bbox mAP); window 10 here.
_base_ = './emo_1m_coco.py'
work_dir = './work_dirs/ssdlite/emo_5m_coco'

pretrained = 'https://github.com/zhangzjn/EMO/raw/main/resources/EMO_5M/net.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='5m',
        window_size=10,
        drop_path_rate=0.05,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(
        in_channels=(160, 288), out_channels=(160, 288, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(160, 288, 512, 256, 256, 128)))
