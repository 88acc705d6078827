# SSDLite with EMO-1M on COCO2017, 320x320: the authors' recipe
# (shared reference log SSDLite_EMO_1M: 22.0 bbox mAP on 8 GPUs x 24 images).
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
work_dir = './work_dirs/ssdlite/emo_1m_coco'
custom_imports = dict(imports=['emo_mm'], allow_failed_imports=False)

# Override with --cfg-options model.backbone.init_cfg.checkpoint=/path/net.pth
pretrained = 'https://github.com/zhangzjn/EMO/raw/main/resources/EMO_1M/net.pth'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='EMO',
        arch='1m',
        channels_last=True,  # NHWC: same outputs, faster (docs/speed.md)
        out_indices=(3, 4),
        window_size=7,
        drop_path_rate=0.04036,
        frozen_stages=-1,
        norm_eval=True,
        norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        in_channels=(80, 168), out_channels=(80, 168, 512, 256, 256, 128)),
    # SSDHead that can predict under mmdet 3.3
    # (emo_mm/models/dense_heads/ssd_head.py).
    bbox_head=dict(
        type='PredictableSSDHead', in_channels=(80, 168, 512, 256, 256, 128)))

train_dataloader = dict(batch_size=24, num_workers=8)  # x 8 GPUs
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1.2e-3, betas=(0.9, 0.999), weight_decay=0.05),
    # No weight decay where the authors' model names a parameter "norm": the
    # iRMB pre-norms and the BN after each depthwise conv (conv_local.bn in
    # emo_mm). The stem BN and the neck/head norms are decayed, as in their
    # runs.
    paramwise_cfg=dict(custom_keys={
        '.norm.': dict(decay_mult=0.0),
        '.conv_local.bn.': dict(decay_mult=0.0),
    }))
# 120 epochs over RepeatDataset x5, cosine after a 500-iteration warmup, and
# evaluation every 5 epochs all come from the mmdet base.
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=3))
auto_scale_lr = dict(enable=False, base_batch_size=192)
# The authors' mmdet logs: "Set random seed to 0, deterministic: False".
randomness = dict(seed=0, deterministic=False)
