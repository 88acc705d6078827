# SSDLite with EMOv2-1M on COCO2017, 320x320: the authors' recipe (their
# run SSDLite_1M_300: 22.3 bbox mAP on 8 GPUs x 24 images).
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
work_dir = './work_dirs/ssdlite/emov2_1m_coco'
custom_imports = dict(imports=['emo_mm'], allow_failed_imports=False)

# Override with --cfg-options model.backbone.init_cfg.checkpoint=/path/x.pth
pretrained = ('https://github.com/zhangzjn/EMOv2/raw/main/resources/Cls/'
              'EMOv2_1M_224.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='EMOv2',
        arch='1m',
        channels_last=True,  # NHWC: same outputs, faster (docs/speed.md)
        out_indices=(3, 4),
        window_size=10,
        drop_path_rate=0.04036,
        frozen_stages=-1,
        norm_eval=True,
        # Plain BN (eps 1e-6), not SyncBN: the logs' backbone has
        # sync_bn=False.
        norm_cfg=dict(type='BN', eps=1e-6),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        in_channels=(80, 180), out_channels=(80, 180, 512, 256, 256, 128)),
    # SSDHead that can predict under mmdet 3.3 (docs/reproducing.md: the SSD
    # prediction bug of mmdet 3.3.0); same arguments and parameters.
    bbox_head=dict(
        type='PredictableSSDHead', in_channels=(80, 180, 512, 256, 256, 128)))

train_dataloader = dict(batch_size=24, num_workers=12)  # x 8 GPUs
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    # 2.4e-3: the authors' 0.0002 x 6 x 2 ("2lr" in their config names).
    optimizer=dict(
        type='AdamW', lr=2.4e-3, betas=(0.9, 0.999), weight_decay=0.05),
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
# 120 epochs over RepeatDataset x5 and evaluation every 5 epochs come from the
# mmdet base. The lr: a linear warmup from 1e-5 of it over 500 iterations,
# constant to epoch 60, then cosine to 0 at epoch 120.
max_epochs = 120
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
# auto_scale_lr: the base's 192 (8 GPUs x 24), off as in the logs. The logs
# record no seed (mmengine drew one), so no `randomness` here.
