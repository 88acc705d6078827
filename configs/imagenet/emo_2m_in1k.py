# EMO-2M on ImageNet-1K (75.1 top-1 in the paper): the EMO-1M recipe.
_base_ = './emo_1m_in1k.py'
work_dir = './work_dirs/imagenet/emo_2m_in1k'

model = dict(
    backbone=dict(arch='2m', drop_path_rate=0.05), head=dict(in_channels=200))
