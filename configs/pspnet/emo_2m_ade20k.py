# PSPNet with EMO-2M on ADE20K (authors: 34.5 mIoU).
_base_ = './emo_1m_ade20k.py'
work_dir = './work_dirs/pspnet/emo_2m_ade20k'

pretrained = 'https://github.com/zhangzjn/EMO/raw/main/resources/EMO_2M/net.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='2m', drop_path_rate=0.05, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=200),
    auxiliary_head=dict(in_channels=120))
