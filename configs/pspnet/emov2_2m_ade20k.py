# PSPNet with EMOv2-2M on ADE20K (authors: 35.7 mIoU).
_base_ = './emov2_1m_ade20k.py'
work_dir = './work_dirs/pspnet/emov2_2m_ade20k'

pretrained = ('https://github.com/zhangzjn/EMOv2/raw/main/resources/Cls/'
              'EMOv2_2M_224.pth')
model = dict(
    backbone=dict(
        arch='2m', drop_path_rate=0.05, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=200),
    auxiliary_head=dict(in_channels=120))
