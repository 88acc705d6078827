# The classification demo with EMOv2-1M, trained from scratch on the
# generated shapes (tools/misc/make_demo_imagenet.py), on a CPU. Everything
# but the backbone is the EMO demo's.
_base_ = './emo_1m_shapes_cls.py'
work_dir = './work_dirs/demo/emov2_1m_shapes_cls'

model = dict(
    backbone=dict(
        _delete_=True,
        type='EMOv2',
        arch='1m',
        channels_last=True,  # NHWC: same outputs, faster (docs/speed.md)
        out_indices=(4, ),
        final_norm=True,  # the authors' last LayerNorm, before pooling
        window_size=7),
    head=dict(in_channels=180))
