# RetinaNet with EMO-5M on COCO2017 (authors: 38.9 bbox mAP); window 10 here.
_base_ = './emo_1m_coco.py'
work_dir = './work_dirs/retinanet/emo_5m_coco'

pretrained = 'https://github.com/zhangzjn/EMO/raw/main/resources/EMO_5M/net.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='5m',
        window_size=10,
        drop_path_rate=0.05,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[48, 72, 160, 288]))
