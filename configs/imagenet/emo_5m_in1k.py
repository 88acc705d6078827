# EMO-5M on ImageNet-1K (78.4 top-1 in the paper): the EMO-1M recipe.
_base_ = './emo_1m_in1k.py'
work_dir = './work_dirs/imagenet/emo_5m_in1k'

model = dict(
    backbone=dict(arch='5m', drop_path_rate=0.05), head=dict(in_channels=288))

# No lr noise in the EMO-5M/6M logs; EMO-5M's log has seed 0.
param_scheduler = dict(noise_range=None)
randomness = dict(seed=0)
