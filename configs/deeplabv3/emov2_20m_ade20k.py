# DeepLabV3 with EMOv2-20M on ADE20K (authors: 43.3 mIoU).
_base_ = './emov2_1m_ade20k.py'
work_dir = './work_dirs/deeplabv3/emov2_20m_ade20k'

pretrained = None  # see init_cfg below
model = dict(
    backbone=dict(
        arch='20m',
        drop_path_rate=0.1,
        # The authors released no EMOv2-20M ImageNet weights (their run
        # loaded its own ../pretrained/emo2_20M.pth), so this config starts
        # the backbone from random weights, which will not reach their
        # mIoU. Give a checkpoint with
        # --cfg-options \
        #   model.backbone.init_cfg="dict(type='Pretrained',checkpoint='PATH')"
        init_cfg=None),
    decode_head=dict(in_channels=448),
    auxiliary_head=dict(in_channels=320))
