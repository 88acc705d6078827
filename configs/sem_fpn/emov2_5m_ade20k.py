# Semantic FPN with EMOv2-5M on ADE20K (authors: 42.4 mIoU; their log: 42.26).
_base_ = './emov2_1m_ade20k.py'
work_dir = './work_dirs/sem_fpn/emov2_5m_ade20k'

pretrained = ('https://github.com/zhangzjn/EMOv2/raw/main/resources/Cls/'
              'EMOv2_5M_224.pth')
model = dict(
    backbone=dict(
        arch='5m', drop_path_rate=0.05, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[48, 72, 160, 288]))
