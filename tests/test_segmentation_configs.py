"""The six segmentation configs: build on CPU, count parameters, train,
predict (whole image and sliding window), keep the authors' recipe."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from emo_mm.utils.cli import sync_bn_to_bn

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# Measured on the authors' backbone (parity-tested) with the mmseg 1.2.2
# heads, auxiliary FCN head included; the paper prints 5.6/6.9/10.3M and
# 4.3/5.5/8.5M.
CONFIG_PARAMS = {
    'deeplabv3/emo_1m_ade20k.py': 5_653_188,
    'deeplabv3/emo_2m_ade20k.py': 6_967_156,
    'deeplabv3/emo_5m_ade20k.py': 10_355_828,
    'pspnet/emo_1m_ade20k.py': 4_374_724,
    'pspnet/emo_2m_ade20k.py': 5_557_620,
    'pspnet/emo_5m_ade20k.py': 8_585_844,
}
NUM_CLASSES = 150


def load_cpu_config(config):
    """A config as tests can run it: BN for SyncBN (no DDP here), no
    download of the ImageNet weights, no drop path (a deterministic loss)."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    # The authors' setting everywhere, before the CPU override.
    for part in ('backbone', 'decode_head', 'auxiliary_head'):
        assert cfg.model[part].norm_cfg.type == 'SyncBN', part
    sync_bn_to_bn(cfg.model)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.drop_path_rate = 0.0
    return cfg


def build_segmentor(cfg):
    init_default_scope('mmseg')
    # A copy: EncoderDecoder writes `pretrained` into the backbone's config.
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.init_weights()
    return model


def labelled_batch(model, size, num_images=2):
    """Random images whose labels are two halves, plus ignored pixels."""
    h, w = size
    inputs, samples = [], []
    for i in range(num_images):
        label = torch.full((1, h, w), 7 + i, dtype=torch.long)
        label[:, :, w // 2:] = 120
        label[:, :4] = 255  # ignore index
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w)))
        inputs.append(torch.rand(3, h, w) * 255)
        samples.append(sample)
    return model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), training=True)


def predict(model, image, mode, crop_size=None, stride=None):
    """The segmentor's prediction and logits for one (3, H, W) image."""
    h, w = image.shape[1:]
    model.test_cfg = Config(
        dict(mode=mode, crop_size=crop_size, stride=stride))
    sample = SegDataSample()
    sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w)))
    batch = model.data_preprocessor(
        dict(inputs=[image], data_samples=[sample]), training=False)
    with torch.no_grad():
        result, = model(**batch, mode='predict')
    return result


@pytest.mark.parametrize('config', sorted(CONFIG_PARAMS))
def test_config_trains_and_predicts(config):
    torch.manual_seed(0)
    cfg = load_cpu_config(config)
    # Training crops that are not multiples of 32 (the recipe's are 512).
    cfg.model.data_preprocessor.size = (136, 200)
    model = build_segmentor(cfg)
    assert sum(p.numel() for p in model.parameters()) == CONFIG_PARAMS[config]

    batch = labelled_batch(model, (130, 190))
    assert batch['inputs'].shape == (2, 3, 136, 200)  # padded to the crop
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss, log_vars = model.parse_losses(model(**batch, mode='loss'))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(log_vars)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses

    model.eval()
    image = torch.rand(3, 181, 243) * 255  # neither side a multiple of 32
    whole = predict(model, image, 'whole')
    assert whole.seg_logits.data.shape == (NUM_CLASSES, 181, 243)
    assert whole.pred_sem_seg.data.shape == (1, 181, 243)
    assert int(whole.pred_sem_seg.data.max()) < NUM_CLASSES

    # One window covering the image is the whole-image inference exactly;
    # overlapping windows are a different, still complete, prediction.
    single = predict(model, image, 'slide', (192, 256), (192, 256))
    torch.testing.assert_close(single.seg_logits.data, whole.seg_logits.data)
    slide = predict(model, image, 'slide', (96, 128), (64, 96))
    assert slide.seg_logits.data.shape == (NUM_CLASSES, 181, 243)
    assert torch.isfinite(slide.seg_logits.data).all()
    assert not torch.equal(slide.seg_logits.data, whole.seg_logits.data)


def test_configs_keep_the_authors_recipe():
    for arch, window, drop_path, channels in (('1m', 7, 0.04036, (80, 168)),
                                              ('2m', 7, 0.05, (120, 200)),
                                              ('5m', 16, 0.05, (160, 288))):
        for method in ('deeplabv3', 'pspnet'):
            cfg = Config.fromfile(
                osp.join(REPO, 'configs', method, f'emo_{arch}_ade20k.py'))
            backbone = cfg.model.backbone
            assert cfg.model.pretrained is None  # weights via init_cfg
            assert (backbone.arch, backbone.window_size,
                    backbone.drop_path_rate, backbone.out_indices,
                    backbone.frozen_stages, backbone.norm_eval) == (
                        arch, window, drop_path, (1, 2, 3, 4), -1, False)
            assert backbone.init_cfg.checkpoint.endswith(
                f'EMO_{arch.upper()}/net.pth')
            head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
            assert (head.in_channels, head.in_index, head.channels,
                    head.num_classes) == (channels[1], 3, 256, 150)
            assert (aux.type, aux.in_channels, aux.in_index, aux.channels,
                    aux.loss_decode.loss_weight) == ('FCNHead', channels[0],
                                                     2, 256, 0.4)
            if method == 'deeplabv3':
                assert head.type == 'ASPPHead'
                assert head.dilations == (1, 12, 24, 36)
            else:
                assert head.type == 'PSPHead'
                assert head.pool_scales == (1, 2, 3, 6)

    cfg = Config.fromfile(osp.join(REPO, 'configs/pspnet/emo_5m_ade20k.py'))
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == (
        'AdamW', 1.2e-4, 0.01)
    poly, = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end,
            poly.by_epoch) == ('PolyLR', 0.9, 0.0, 80000, False)
    assert cfg.train_cfg.max_iters == 80000
    assert cfg.train_cfg.val_interval == 8000
    assert cfg.default_hooks.checkpoint.interval == 8000
    assert cfg.train_dataloader.batch_size == 4  # x 8 GPUs
    assert cfg.auto_scale_lr.base_batch_size == 32
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'
    resize, crop = cfg.train_pipeline[2:4]
    assert (resize.type, resize.scale, resize.ratio_range) == (
        'RandomResize', (2048, 512), (0.5, 2.0))
    assert (crop.crop_size, crop.cat_max_ratio) == ((512, 512), 0.75)
    assert cfg.model.data_preprocessor.size == (512, 512)
    assert cfg.model.test_cfg.mode == 'whole'
    assert cfg.val_evaluator.iou_metrics == ['mIoU']


def test_no_weight_decay_on_the_authors_norm_parameters():
    from mmengine.optim import build_optim_wrapper
    cfg = load_cpu_config('deeplabv3/emo_1m_ade20k.py')
    model = build_segmentor(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {
        names[id(p)]: group['weight_decay']
        for group in wrapper.optimizer.param_groups for p in group['params']
    }
    assert len(decay) == len(names)
    assert decay['backbone.stages.1.1.norm.weight'] == 0
    assert decay['backbone.stages.4.1.norm.bias'] == 0
    assert decay['backbone.stages.3.0.conv_local.bn.weight'] == 0
    assert decay['backbone.stages.0.0.bn.weight'] == 0.01  # stem: decayed
    assert decay['backbone.stages.3.1.attn.qk.weight'] == 0.01
    assert decay['decode_head.bottleneck.bn.weight'] == 0.01
    assert decay['auxiliary_head.convs.0.bn.weight'] == 0.01


def test_encoder_decoder_pretrained_reaches_the_backbone(tmp_path):
    """mmseg's EncoderDecoder hands ``model.pretrained`` to the backbone:
    alone it loads the weights, beside an init_cfg it is a clear error."""
    cfg = load_cpu_config('deeplabv3/emo_1m_ade20k.py')
    reference = build_segmentor(cfg).backbone
    path = str(tmp_path / 'backbone.pth')
    torch.save({'state_dict': reference.state_dict()}, path)

    cfg.model.pretrained = path
    model = build_segmentor(cfg)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value)

    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=path)
    with pytest.raises(ValueError, match='not both'):
        build_segmentor(cfg)
