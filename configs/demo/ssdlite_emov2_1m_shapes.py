# The detection demo with EMOv2-1M: SSDLite trained from scratch on the
# generated shapes (tools/misc/make_demo_coco.py), on a CPU. Everything but
# the backbone is the EMO demo's. The first block of each stage has no skip,
# and at the authors' LayerScale of 1e-6 it would scale the whole stage
# output down: it starts at 1.0. The residual blocks keep 1e-6, so they
# start as the identity; those that attend (uniformly, from scratch) grow
# their LayerScale at 1/20 of the lr, as EMO's attending blocks do their
# projections (docs/demos.md, 'Training the detectors from scratch').
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
# The attending blocks (stages 3 and 4 after their first block) learn
# slowly; no weight decay on the norms, as in the authors' EMOv2 runs.
_slow = dict(lr_mult=0.05)
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={
            'norm': dict(decay_mult=0.0),
            'backbone.stages.0.0.bn': dict(decay_mult=0.0),
            'backbone.stages.0.1.bn': dict(decay_mult=0.0),
            'conv_local.bn': dict(decay_mult=0.0),
            **{
                f'backbone.stages.3.{i}.gamma': _slow
                for i in range(1, 8)
            },
            **{
                f'backbone.stages.4.{i}.gamma': _slow
                for i in range(1, 3)
            },
        }))
# A step of EMOv2-1M takes longer than one of EMO-1M: 1500 iterations fit
# the 10 minutes of training. A warm-up of 150 iterations, a tenth of the
# run, leaves the constant-prediction start more evenly across seeds than
# EMO's 30 (docs/demos.md).
max_iters = 1500
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=150),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        T_max=max_iters,
        eta_min=0)
]
