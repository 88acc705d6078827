# The detection demo with EMOv2-1M: SSDLite trained from scratch on the
# generated shapes (tools/misc/make_demo_coco.py), on a CPU. Everything but
# the backbone is the EMO demo's. EMOv2 needs no identity start for its
# attention (EMO's zero_init_attn_proj): each residual block's LayerScale
# starts at 1e-6, so it begins as the identity anyway. The first block of
# each stage has no skip, though, and at 1e-6 its LayerScale would scale
# the whole stage output down: it starts at 1.0 (docs/demos.md, 'Training
# the detectors from scratch').
_base_ = './ssdlite_emo_1m_shapes.py'
work_dir = './work_dirs/demo/ssdlite_emov2_1m_shapes'

model = dict(
    backbone=dict(
        _delete_=True,
        type='EMOv2',
        arch='1m',
        out_indices=(3, 4),
        window_size=10,  # as in the authors' downstream configs
        downsample_layer_scale_init=1.0,
        norm_cfg=dict(type='BN'),
        channels_last=True,
        # EMOv2's values are wider than its queries and keys, which sends
        # scaled_dot_product_attention to its slower general path on a CPU:
        # the plain matmul path is the same math (docs/demos.md).
        fused_attn=False,
        init_cfg=None),
    neck=dict(
        in_channels=(80, 180), out_channels=(80, 180, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(80, 180, 512, 256, 256, 128)))
# No slower projections (the EMO demo's); no weight decay on the norms, as
# in the authors' EMOv2 runs.
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={
            'norm': dict(decay_mult=0.0),
            'backbone.stages.0.0.bn': dict(decay_mult=0.0),
            'backbone.stages.0.1.bn': dict(decay_mult=0.0),
            'conv_local.bn': dict(decay_mult=0.0),
        }))
# A step of EMOv2-1M takes a little longer than one of EMO-1M: 1600
# iterations fit the 10 minutes of training (docs/demos.md).
max_iters = 1600
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        T_max=max_iters,
        eta_min=0)
]
