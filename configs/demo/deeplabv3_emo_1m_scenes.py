# The segmentation demo: DeepLabV3-EMO-1M trained from scratch on generated
# ADE20K-format outdoor scenes (tools/misc/make_demo_ade20k.py), on a CPU, in
# minutes. It keeps the ADE20K recipe's model, optimizer and pipeline, read by
# mmseg's own ADE20KDataset, and changes what a short single-process CPU run
# from scratch needs: plain BN that learns (no ImageNet weights offline), the
# nine classes the scenes contain, the ADE20K scales shrunk from 512 to 180
# px (the scenes' height) with 160x160 crops, and a higher learning rate.
_base_ = '../deeplabv3/emo_1m_ade20k.py'
work_dir = './work_dirs/demo/deeplabv3_emo_1m_scenes'

data_root = 'data/scenes_ade20k/'
# Selecting classes by name makes ADE20KDataset map their ADE20K ids to
# 0..8 (every other id to the ignore index 255).
metainfo = dict(
    classes=('building', 'sky', 'tree', 'road', 'grass', 'person', 'mountain',
             'car', 'water'),
    palette=[(180, 120, 120), (6, 230, 230), (4, 200, 3), (140, 140, 140),
             (4, 250, 7), (150, 5, 61), (143, 255, 140), (0, 102, 200),
             (61, 230, 250)])
num_classes = 9
crop_size = (160, 160)
scale = (240, 180)  # ADE20K's (2048, 512) at the scenes' size

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(norm_cfg=dict(type='BN'), drop_path_rate=0.0, init_cfg=None),
    decode_head=dict(num_classes=num_classes, norm_cfg=dict(type='BN')),
    auxiliary_head=dict(num_classes=num_classes, norm_cfg=dict(type='BN')))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=scale,
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 600
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
default_hooks = dict(
    checkpoint=dict(interval=200, max_keep_ckpts=2), logger=dict(interval=20))
auto_scale_lr = dict(base_batch_size=8)
# The random generators' states in checkpoints: --resume repeats the run.
custom_hooks = [dict(type='RandomStateHook')]
# Seeded, so that a rerun gives the same numbers (the ADE20K recipe, like the
# authors' runs, draws a random seed).
randomness = dict(seed=0)
# Pictures enlarged to a readable size, with a legend of the nine classes
# (tools/test.py --show-dir and tools/infer.py).
visualizer = dict(type='LegendSegVisualizer')
