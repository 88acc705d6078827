# EMO-6M on ImageNet-1K (79.0 top-1 in the paper): the EMO-1M recipe.
_base_ = './emo_1m_in1k.py'
work_dir = './work_dirs/imagenet/emo_6m_in1k'

model = dict(
    backbone=dict(arch='6m', drop_path_rate=0.05), head=dict(in_channels=320))

# No lr noise in the EMO-5M/6M logs.
param_scheduler = dict(noise_range=None)
