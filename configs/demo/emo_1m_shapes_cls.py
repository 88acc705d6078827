# The classification demo: EMO-1M trained from scratch on generated
# ImageNet-format shapes (tools/misc/make_demo_imagenet.py), on a CPU, in
# minutes. It keeps the ImageNet recipe's model, optimizer, loss and EMA and
# changes what a short single-process CPU run from scratch needs: 64x64
# images, 8 classes, fp32 (AMP needs a GPU), a higher learning rate, an EMA
# that follows within ~50 steps, a short schedule, and no RandAugment (it
# kept 300 steps at chance level here).
_base_ = '../imagenet/emo_1m_in1k.py'
work_dir = './work_dirs/demo/emo_1m_shapes_cls'

data_root = 'data/shapes_imagenet'
metainfo = dict(
    classes=('circle', 'ring', 'square', 'bar', 'triangle', 'cross', 'star',
             'hexagon'))
size = 64

model = dict(backbone=dict(drop_path_rate=0.0), head=dict(num_classes=8))
data_preprocessor = dict(num_classes=8)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=size,
        crop_ratio_range=(0.5, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=size,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,  # the generated sets are small: keep every image
    dataset=dict(
        type='ImageNet',
        data_root=data_root,
        split='train',
        metainfo=metainfo,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        type='ImageNet',
        data_root=data_root,
        split='val',
        metainfo=metainfo,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 24
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=True,
        end=2,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=2,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
custom_hooks = [
    dict(type='AuthorsCheckpointHook'),
    dict(
        type='EMAHook',
        momentum=0.02,
        update_buffers=True,
        evaluate_on_ema=True,
        evaluate_on_origin=True,
        priority='ABOVE_NORMAL'),
    # Random generators' states in checkpoints: --resume repeats the run.
    dict(type='RandomStateHook'),
]
default_hooks = dict(
    checkpoint=dict(interval=8, max_keep_ckpts=2),
    logger=dict(interval=5),
    # tools/test.py --show-dir: the true and predicted classes written on a
    # copy enlarged to 256 px (on the 64 px image the text is unreadable).
    visualization=dict(resize=256))
auto_scale_lr = dict(base_batch_size=32)
