# PSPNet with EMOv2-1M on ADE20K, 512x512 crops, 80k iterations: the authors'
# recipe (their log PSPNet_1M_20240604_013444: 33.61 mIoU, 4 GPUs x 8
# images). Everything but the decode head is the DeepLabV3 recipe, in their
# config dumps as here.
_base_ = '../deeplabv3/emov2_1m_ade20k.py'
work_dir = './work_dirs/pspnet/emov2_1m_ade20k'

model = dict(
    decode_head=dict(
        _delete_=True,
        type='PSPHead',
        in_channels=180,
        in_index=3,
        channels=256,
        pool_scales=(1, 2, 3, 6),
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
