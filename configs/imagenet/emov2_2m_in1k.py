# EMOv2-2M on ImageNet-1K (75.8 top-1 in the paper): the EMOv2-1M recipe
# (the settings rows of the 1M and 2M logs are the same but for the model).
_base_ = './emov2_1m_in1k.py'
work_dir = './work_dirs/imagenet/emov2_2m_in1k'

model = dict(
    backbone=dict(arch='2m', drop_path_rate=0.05),  # EMO2_2M_k5_hybrid's
    head=dict(in_channels=200))
