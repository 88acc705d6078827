# DeepLabV3 with EMO-5M on ADE20K (authors: 37.8 mIoU), window 16.
_base_ = './emo_1m_ade20k.py'
work_dir = './work_dirs/deeplabv3/emo_5m_ade20k'

pretrained = 'https://github.com/zhangzjn/EMO/raw/main/resources/EMO_5M/net.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='5m',
        window_size=16,
        drop_path_rate=0.05,
        init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=288),
    auxiliary_head=dict(in_channels=160))
