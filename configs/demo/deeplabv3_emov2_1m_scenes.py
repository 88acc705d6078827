# The segmentation demo with EMOv2-1M: DeepLabV3 trained from scratch on the
# generated scenes (tools/misc/make_demo_ade20k.py), on a CPU. Everything but
# the backbone is the EMO demo's; the backbone is the authors' segmentation
# EMOv2, with LayerNorm2d + GELU after its depthwise convs.
_base_ = './deeplabv3_emo_1m_scenes.py'
work_dir = './work_dirs/demo/deeplabv3_emov2_1m_scenes'

model = dict(
    backbone=dict(
        _delete_=True,
        type='EMOv2',
        arch='1m',
        channels_last=True,  # NHWC: same outputs, faster (docs/speed.md)
        out_indices=(1, 2, 3, 4),
        window_size=10,  # as in the authors' downstream configs
        norm_cfg=dict(type='BN'),
        dw_norm_cfg=dict(type='LN2d', eps=1e-6),
        dw_act_cfg=dict(type='GELU'),
        init_cfg=None),
    decode_head=dict(in_channels=180),
    auxiliary_head=dict(in_channels=80))
# No weight decay on the backbone's norms, as in the authors' EMOv2 runs.
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={
            'norm': dict(decay_mult=0.0),
            'backbone.stages.0.0.bn': dict(decay_mult=0.0),
            'backbone.stages.0.1.bn': dict(decay_mult=0.0),
            'conv_local.ln': dict(decay_mult=0.0),
        }))
