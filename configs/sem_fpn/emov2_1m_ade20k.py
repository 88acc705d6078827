# Semantic FPN with EMOv2-1M on ADE20K, 512x512 crops, 160k iterations: the
# authors' recipe (their log FPN_1M_20240607_225438: 37.10 mIoU, 4 GPUs x 8
# images).
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
work_dir = './work_dirs/sem_fpn/emov2_1m_ade20k'
custom_imports = dict(imports=['emo_mm'], allow_failed_imports=False)

# The released ImageNet weights (the authors' runs load the same network as
# ../pretrained/emo2_1M.pth). Override with
# --cfg-options model.backbone.init_cfg.checkpoint=/path/EMOv2_1M_224.pth
pretrained = ('https://github.com/zhangzjn/EMOv2/raw/main/resources/Cls/'
              'EMOv2_1M_224.pth')
model = dict(
    # EncoderDecoder hands `pretrained` to the backbone; the weights come
    # through the backbone's init_cfg instead.
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='EMOv2',
        arch='1m',
        channels_last=True,  # NHWC: same outputs, faster (docs/speed.md)
        out_indices=(1, 2, 3, 4),
        window_size=10,
        drop_path_rate=0.04036,
        frozen_stages=-1,
        norm_eval=False,
        # Plain BN in the backbone (the authors' sync_bn=False); only the
        # head uses SyncBN (the base's norm_cfg).
        norm_cfg=dict(type='BN', eps=1e-6),
        # The authors' mmseg backbone has LayerNorm2d + GELU after every
        # depthwise conv where their ImageNet model has BN + SiLU: those
        # LayerNorms start at their initial values (the backbone logs them).
        dw_norm_cfg=dict(type='LN2d', eps=1e-6),
        dw_act_cfg=dict(type='GELU'),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # The base's FPN (256 channels, 4 outputs, no norm) on the four stages
    # and its FPNHead (128 channels).
    neck=dict(in_channels=[32, 48, 80, 180]))

# 8 images per GPU on 4 GPUs; 8 loader workers per GPU, 2 for evaluation.
train_dataloader = dict(batch_size=8, num_workers=8)
val_dataloader = dict(num_workers=2)
test_dataloader = dict(num_workers=2)
auto_scale_lr = dict(enable=False, base_batch_size=32)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    # The authors' keys: 10x lr for the decode head ('head'; not the neck;
    # the head's norms, `bn`, keep their weight decay) and no weight decay on
    # every norm of their backbone: the blocks' pre-norms (`norm` here too),
    # the stem's two BNs and the LayerNorm after each depthwise conv, which
    # emo_mm names differently. Their 'pos_block' key matches no parameter.
    # No gradient clipping.
    paramwise_cfg=dict(
        custom_keys={
            'head': dict(lr_mult=10.0),
            'norm': dict(decay_mult=0.0),
            'backbone.stages.0.0.bn': dict(decay_mult=0.0),
            'backbone.stages.0.1.bn': dict(decay_mult=0.0),
            'conv_local.ln': dict(decay_mult=0.0),
        }))
# Linear warm-up over 1500 iterations, the full lr until 80k, then cosine
# decay to 0 at 160k. The base's 16k-iteration evaluation and checkpoint
# intervals are theirs too.
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(
        type='CosineAnnealingLR',
        T_max=80000,
        eta_min=0,
        begin=80000,
        end=160000,
        by_epoch=False)
]
