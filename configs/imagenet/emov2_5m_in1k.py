# EMOv2-5M on ImageNet-1K (79.4 top-1 in the paper): the EMOv2-1M recipe
# (the settings rows of the 1M and 5M logs are the same but for the model).
_base_ = './emov2_1m_in1k.py'
work_dir = './work_dirs/imagenet/emov2_5m_in1k'

model = dict(
    backbone=dict(arch='5m', drop_path_rate=0.05),  # EMO2_5M_k5_hybrid's
    head=dict(in_channels=288))
