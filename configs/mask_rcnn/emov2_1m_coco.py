# Mask R-CNN with EMOv2-1M and FPN on COCO2017, 1x schedule, 1333x800: the
# authors' recipe (their run MaskRCNN_1M: 37.1 bbox / 35.0 mask mAP on 4 GPUs x
# 4 images).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
work_dir = './work_dirs/mask_rcnn/emov2_1m_coco'
custom_imports = dict(imports=['emo_mm'], allow_failed_imports=False)

# Override with --cfg-options model.backbone.init_cfg.checkpoint=/path/x.pth
pretrained = ('https://github.com/zhangzjn/EMOv2/raw/main/resources/Cls/'
              'EMOv2_1M_224.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='EMOv2',
        arch='1m',
        # NCHW: mmcv 2.1's RoIAlign reads NHWC maps as NCHW ones (wrong
        # RoI features), so the faster layout is off here (docs/speed.md).
        channels_last=False,
        out_indices=(1, 2, 3, 4),
        window_size=10,
        drop_path_rate=0.04036,
        frozen_stages=1,  # the stem and stage 1
        norm_eval=True,
        # Plain BN (eps 1e-6), not SyncBN: the logs' backbone has
        # sync_bn=False.
        norm_cfg=dict(type='BN', eps=1e-6),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # 256 channels, 5 outputs (max-pooled fifth): from the mmdet base.
    neck=dict(in_channels=[32, 48, 80, 180]))

train_dataloader = dict(batch_size=4, num_workers=4)  # x 4 GPUs
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    # The authors exempt every parameter whose name (theirs) holds "norm":
    # the pre-norm of each block, the norm after each depthwise conv and the
    # stem's two BNs. In emo_mm's names these are `norm`, `conv_local.bn` and
    # `stages.0.{0,1}.bn` (tests/test_configs/test_emov2_detection.py checks
    # that the set is the same). Their other two keys, absolute_pos_embed and
    # relative_position_bias_table, name no parameter of this model.
    paramwise_cfg=dict(
        custom_keys={
            'norm': dict(decay_mult=0.0),
            'conv_local.bn': dict(decay_mult=0.0),
            'backbone.stages.0.0.bn': dict(decay_mult=0.0),
            'backbone.stages.0.1.bn': dict(decay_mult=0.0),
        }))
# 12 epochs with evaluation after each: the mmdet base. The lr: a linear
# warmup from 1e-5 of it over 500 iterations, constant to epoch 6, then cosine
# to 0 at epoch 12.
max_epochs = 12
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0, end=500),
    dict(
        type='CosineAnnealingLR',
        begin=max_epochs // 2,
        T_max=max_epochs // 2,
        end=max_epochs,
        by_epoch=True,
        eta_min=0)
]
# auto_scale_lr: the base's 16 (4 GPUs x 4 images, what the logs ran), off.
# The logs record no seed (mmengine drew one), so no `randomness` here.
