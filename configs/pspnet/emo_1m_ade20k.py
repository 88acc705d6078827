# PSPNet with EMO-1M on ADE20K, 512x512 crops, 80k iterations: the authors'
# recipe (shared reference log PSPNet_EMO_1M: 33.2 mIoU on 8 GPUs x 4 images).
# Everything but the decode head is the DeepLabV3 recipe.
_base_ = '../deeplabv3/emo_1m_ade20k.py'
work_dir = './work_dirs/pspnet/emo_1m_ade20k'

model = dict(
    decode_head=dict(
        _delete_=True,
        type='PSPHead',
        in_channels=168,
        in_index=3,
        channels=256,
        pool_scales=(1, 2, 3, 6),
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
