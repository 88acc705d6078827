# The detection demo with EMOv2-1M: SSDLite trained from scratch on the
# generated shapes (tools/misc/make_demo_coco.py), on a CPU. Everything but
# the backbone is the EMO demo's. EMOv2 needs no identity start for its
# attention (EMO's zero_init_attn_proj): each block's LayerScale starts at
# 1e-6, so every block begins as the identity anyway.
_base_ = './ssdlite_emo_1m_shapes.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='EMOv2',
        arch='1m',
        out_indices=(3, 4),
        window_size=10,  # as in the authors' downstream configs
        norm_cfg=dict(type='BN'),
        channels_last=True,
        init_cfg=None),
    neck=dict(
        in_channels=(80, 180),
        out_channels=(80, 180, 512, 256, 256, 128)),
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
