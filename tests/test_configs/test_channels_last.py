"""The shipped configs build EMO/EMOv2 with ``channels_last=True``: the
backbone then hands NHWC feature maps to the necks and heads. These tests
show that every head family gives the same outputs and the same gradients
(within 1e-5 of the largest magnitude) as with NCHW features, so the faster
layout changes no result."""
import copy
import functools
import glob
import os.path as osp

import pytest
import torch
from conftest import REPO_ROOT, build_cpu_model

from emo_mm.analysis.benchmark import set_layer_scales
from emo_mm.codebases import flatten_outputs

TOL = 1e-5

# One config per head family, at a size no window divides.
FAMILIES = {
    'ssdlite': ('ssdlite/emo_1m_coco.py', (2, 3, 150, 166)),
    'ssdlite-v2': ('ssdlite/emov2_1m_coco.py', (2, 3, 150, 166)),
    'retinanet': ('retinanet/emo_1m_coco.py', (2, 3, 150, 166)),
    'deeplabv3': ('deeplabv3/emo_1m_ade20k.py', (2, 3, 118, 134)),
    'pspnet': ('pspnet/emo_1m_ade20k.py', (2, 3, 118, 134)),
    'segformer': ('segformer/emov2_1m_ade20k.py', (2, 3, 118, 134)),
    'sem_fpn': ('sem_fpn/emov2_1m_ade20k.py', (2, 3, 118, 134)),
    'classifier': ('imagenet/emo_1m_in1k.py', (2, 3, 118, 134)),
    'classifier-v2': ('imagenet/emov2_1m_in1k.py', (2, 3, 118, 134)),
}


def test_every_config_builds_channels_last():
    from emo_mm.config import load_config
    paths = sorted(glob.glob(osp.join(REPO_ROOT, 'configs', '*', '*.py')))
    assert len(paths) > 50
    layouts = {
        osp.relpath(p, REPO_ROOT):
        load_config(p).model.backbone.get('channels_last')
        for p in paths
    }
    # Mask R-CNN stays NCHW: test_roi_align_misreads_nhwc below.
    nchw = sorted(p for p, v in layouts.items() if v is not True)
    assert nchw == sorted(p for p in layouts if 'mask_rcnn' in p)
    assert all(layouts[p] is False for p in nchw)


def _max_rel(a, b):
    """The largest difference, relative to the largest magnitude above 1."""
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


def _global_rel(grads_b, grads_a):
    """The norm of all gradients' difference relative to theirs."""
    diff = sum(float((grads_b[k] - grads_a[k]).norm()**2) for k in grads_a)
    return (diff / sum(float(g.norm()**2) for g in grads_a.values()))**0.5


@functools.lru_cache(maxsize=None)
def _built(config):
    """The config's model with NCHW features, dropout off so that it draws
    nothing at random; built once for the three tests of its family
    (_pair hands out copies: they train and cast them)."""
    torch.manual_seed(0)
    _, model = build_cpu_model(config, channels_last=False)
    # EMOv2's LayerScales as a trained model could have them: at their
    # initial 1e-6 every later feature and gradient is close to zero.
    set_layer_scales(model)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
    return model


@pytest.fixture(scope='module', autouse=True)
def _free_built_models():
    yield
    _built.cache_clear()  # the rest of the session needs them no more


def _pair(config):
    """A fresh copy of the config's NCHW model and an exact copy of it with
    NHWC features."""
    nchw = copy.deepcopy(_built(config))
    nhwc = copy.deepcopy(nchw)
    nhwc.backbone.channels_last = True
    return nchw, nhwc


def _run(model, x, train):
    """Outputs and, in training mode, the parameters' gradients of a loss
    that weighs every output element differently (a transposed or shuffled
    element would change them)."""
    model.train(train)
    model.zero_grad(set_to_none=True)
    outs = flatten_outputs(model(x, mode='tensor'))
    grads = {}
    if train:
        gen = torch.Generator().manual_seed(1)
        loss = sum(
            (o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum()
            for o in outs)
        loss.backward()
        grads = {
            k: p.grad.clone()
            for k, p in model.named_parameters() if p.grad is not None
        }
    return [o.detach() for o in outs], grads


def _check_layout_reached_heads(model, x):
    model.eval()  # a training-mode run would move the BN statistics
    assert any(o.dim() == 4 and not o.is_contiguous() and o.is_contiguous(
        memory_format=torch.channels_last) for o in model.backbone(x))


@pytest.mark.parametrize('family', sorted(FAMILIES))
@pytest.mark.parametrize('train', [False, True])
def test_nhwc_features_give_same_outputs(family, train):
    """float32, as models run: inference and training-mode outputs."""
    config, shape = FAMILIES[family]
    nchw, nhwc = _pair(config)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    outs_a, _ = _run(nchw, x, train)
    outs_b, _ = _run(nhwc, x, train)
    _check_layout_reached_heads(nhwc, x)
    assert len(outs_a) == len(outs_b) > 0
    for a, b in zip(outs_a, outs_b):
        assert a.shape == b.shape
        assert _max_rel(b, a) <= TOL


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_nhwc_features_give_same_gradients(family):
    """float64, so that only a layout error could part the two: in float32
    a depthwise weight's gradient sums ~1e4 products in an order that
    depends on the layout, and the two layouts' gradients differ by up to
    4e-3 of their norm from random weights, neither of them closer to the
    float64 result than the other (measured; docs/speed.md)."""
    config, shape = FAMILIES[family]
    nchw, nhwc = _pair(config)
    nchw.double()
    nhwc.double()
    x = torch.randn(
        *shape,
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64)
    outs_a, grads_a = _run(nchw, x, True)
    outs_b, grads_b = _run(nhwc, x, True)
    _check_layout_reached_heads(nhwc, x)
    assert max(_max_rel(b, a) for a, b in zip(outs_a, outs_b)) <= 1e-10
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    assert _global_rel(grads_b, grads_a) <= 1e-10
    worst = max(_max_rel(grads_b[k], grads_a[k]) for k in grads_a)
    assert worst <= 1e-9


def test_roi_align_misreads_nhwc():
    """Why the Mask R-CNN configs keep NCHW: mmcv 2.1's compiled RoIAlign
    indexes its input as contiguous NCHW, so NHWC feature maps give wrong
    RoI features. When this fails, mmcv reads NHWC right: switch those
    configs to channels_last=True."""
    from mmcv.ops import RoIAlign
    feats = torch.randn(
        1, 16, 20, 24, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0, 3.0, 5.0, 90.0, 70.0],
                         [0, 10.5, 11.5, 30.5, 33.5]])
    op = RoIAlign((7, 7), 1 / 8, sampling_ratio=0, aligned=True)
    nchw = op(feats, rois)
    nhwc = op(feats.contiguous(memory_format=torch.channels_last), rois)
    assert torch.allclose(op(feats.clone(), rois), nchw)
    assert _max_rel(nhwc, nchw) > 0.1
