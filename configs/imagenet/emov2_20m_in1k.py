# EMOv2-20M on ImageNet-1K. The authors released no 20M log, checkpoint or
# ImageNet result: the recipe is their configs/emo2/emo2_224.py, which gives
# the same settings as the 1M/2M/5M logs (so the EMOv2-1M recipe here), with
# their EMO2_20M_k5_hybrid constructor (window 7, drop path 0.1).
_base_ = './emov2_1m_in1k.py'
work_dir = './work_dirs/imagenet/emov2_20m_in1k'

model = dict(
    backbone=dict(arch='20m', drop_path_rate=0.1), head=dict(in_channels=448))
