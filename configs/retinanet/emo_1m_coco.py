# RetinaNet with EMO-1M and FPN on COCO2017, 1x schedule, 1333x800: the
# authors' recipe (shared reference log RetinaNet_EMO_1M: 34.4 bbox mAP on
# 8 GPUs x 4 images).
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
work_dir = './work_dirs/retinanet/emo_1m_coco'
custom_imports = dict(imports=['emo_mm'], allow_failed_imports=False)

# Override with --cfg-options model.backbone.init_cfg.checkpoint=/path/net.pth
pretrained = 'https://github.com/zhangzjn/EMO/raw/main/resources/EMO_1M/net.pth'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='EMO',
        arch='1m',
        channels_last=True,  # NHWC: same outputs, faster (docs/speed.md)
        out_indices=(1, 2, 3, 4),
        window_size=7,
        drop_path_rate=0.04036,
        frozen_stages=1,
        norm_eval=True,
        norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # start_level=1, extra convs on the input, 5 outputs: from the mmdet base.
    neck=dict(in_channels=[32, 48, 80, 168]))

train_dataloader = dict(batch_size=4, num_workers=4)  # x 8 GPUs
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    # No weight decay where the authors' model names a parameter "norm": the
    # iRMB pre-norms and the BN after each depthwise conv (conv_local.bn in
    # emo_mm). The stem BN and the neck/head norms are decayed, as in their
    # runs.
    paramwise_cfg=dict(custom_keys={
        '.norm.': dict(decay_mult=0.0),
        '.conv_local.bn.': dict(decay_mult=0.0),
    }))
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='CosineAnnealingLR',
        begin=0,
        T_max=max_epochs,
        end=max_epochs,
        by_epoch=True,
        eta_min=0)
]
auto_scale_lr = dict(enable=False, base_batch_size=32)
# The authors' mmdet logs: "Set random seed to 0, deterministic: False".
randomness = dict(seed=0, deterministic=False)
