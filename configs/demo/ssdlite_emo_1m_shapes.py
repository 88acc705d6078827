# The built-in demo: SSDLite-EMO-1M trained from scratch on a generated
# COCO-format set of shapes (tools/misc/make_demo_coco.py: 1600 train / 80
# val images), on a CPU, in under 10 minutes of training on 2 cores. It keeps
# the SSDLite recipe's model and optimizer and changes what a short
# single-process CPU run from scratch needs: plain BN that learns (no
# ImageNet weights offline), 160x160 inputs with the anchors scaled to match
# (4x less compute per image than 320x320, so 4x more steps in the same
# minutes), a lighter augmentation, an iteration-based schedule at a higher
# lr for batch 8, the fastest exact CPU layout (channels-last EMO, data loaded
# in the training process), and a from-scratch start for EMO's attention
# (below). docs/demos.md: what each change measured.
_base_ = '../ssdlite/emo_1m_coco.py'
work_dir = './work_dirs/demo/ssdlite_emo_1m_shapes'

data_root = 'data/shapes_coco/'
metainfo = dict(
    classes=('circle', 'square', 'triangle', 'cross'),
    palette=[(220, 20, 60), (0, 120, 255), (255, 170, 0), (50, 190, 70)])

model = dict(
    backbone=dict(
        norm_cfg=dict(type='BN'),
        norm_eval=False,
        drop_path_rate=0.0,
        # Same values, ~9% less time per training step here.
        channels_last=True,
        # From scratch, EMO's window attention is uniform and its blocks are
        # blind to position: start the attending blocks as the identity,
        # their output projections learning at 1/20 of the lr (optim_wrapper
        # below), so that the local path learns first (docs/demos.md,
        # 'Training the detectors from scratch').
        zero_init_attn_proj=True,
        init_cfg=None),
    bbox_head=dict(
        num_classes=4,
        # The SSDLite anchors at half the input size: feature maps of 10, 5,
        # 3, 2, 1 and 1 cells.
        anchor_generator=dict(
            strides=[16, 32, 53, 80, 160, 160],
            min_sizes=[24, 50, 75, 101, 126, 152],
            max_sizes=[50, 75, 101, 126, 152, 160])))
input_size = 160

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=8,
    # On 2 cores, loader processes take the cores from the training step:
    # 0.45 s per iteration with 2 workers, 0.39 s without (measured).
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

max_iters = 1750
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        T_max=max_iters,
        eta_min=0)
]
# The output projections of EMO-1M's attending blocks (stages 3 and 4 after
# their first, downsampling block) learn slowly: see zero_init_attn_proj.
_slow = dict(lr_mult=0.05)
optim_wrapper = dict(
    # fused: the same AdamW update in one kernel per parameter group; the
    # per-tensor loop cost ~10 ms of each ~280 ms step (docs/demos.md).
    optimizer=dict(lr=4e-3, fused=True),
    paramwise_cfg=dict(
        custom_keys={
            **{
                f'backbone.stages.3.{i}.proj.': _slow
                for i in range(1, 8)
            },
            **{
                f'backbone.stages.4.{i}.proj.': _slow
                for i in range(1, 3)
            },
        }))
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=500, max_keep_ckpts=2),
    logger=dict(interval=50))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=8)
# mmdet's two hooks, and the random generators' states in checkpoints, so
# that --resume repeats the run.
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
    dict(type='RandomStateHook'),
]
