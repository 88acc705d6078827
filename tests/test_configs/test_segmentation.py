"""The six segmentation configs: build on CPU, count parameters, train,
predict (whole image and sliding window). (Their recipes: test_recipes.py.)"""
import copy
import os.path as osp

import pytest
import torch
from conftest import REPO_ROOT as REPO
from conftest import train_steps
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from emo_mm.config import sync_bn_to_bn

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
    losses, log_vars = train_steps(model, batch, steps=4, lr=1e-3)
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
