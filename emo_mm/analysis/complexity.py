"""Parameters and FLOPs of EMO and EMOv2 models, and the papers' numbers
beside them.

Counting uses mmengine's ``FlopAnalyzer`` (fvcore-style: one FLOP is one
multiply-add) on the model's tensor mode, ``model(inputs, mode='tensor')``:
backbone, neck and head, without data pre-processing or post-processing
(box decoding, NMS, resizing of logits), as mmdet's own ``get_flops.py``
counts. The counted ops are convolutions, matmul/bmm/linear, norms, upsampling
and adaptive average pooling; element-wise ops (activations, additions,
softmax) are not counted and are listed per model. Two-stage detectors
(Mask R-CNN) run their RoI heads on the RPN's proposals, as mmdet's
``get_flops.py`` does (:class:`TensorMode`).
"""
import glob
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer

from ..config import build_model, input_shape, load_config
from ..models import FAMILIES

# Folders under configs/ that hold no complete model config.
SKIP_DIRS = ('_base_', 'demo')

# Numbers reported in the EMO paper (ICCV 2023): per config folder, the
# parameters of the 1M, 2M, 5M (and 6M) models and, for the ImageNet
# classifiers at 224x224 (which also label the bare backbones), their FLOPs.
_PAPER_PARAMS = dict(
    imagenet=('1.3M', '2.3M', '5.1M', '6.1M'),
    ssdlite=('2.3M', '3.3M', '6.0M'),
    retinanet=('10.4M', '11.5M', '14.4M'),
    deeplabv3=('5.6M', '6.9M', '10.3M'),
    pspnet=('4.3M', '5.5M', '8.5M'))
_PAPER_FLOPS = dict(imagenet=('261M', '439M', '903M', '961M'))
# Keyed by "<folder>/emo_<arch>", so that any config file named
# "<folder>/emo_<arch>_<anything>.py" matches. Values: (params, FLOPs);
# FLOPs are None where the paper has no number.
PAPER = {
    f'{folder}/emo_{arch}': (params[i], _PAPER_FLOPS.get(folder,
                                                         (None, ) * 4)[i])
    for folder, params in _PAPER_PARAMS.items()
    for i, arch in enumerate(('1m', '2m', '5m', '6m')[:len(params)])
}
# EMOv2 (TPAMI 2025), from the tables of the authors' README
# (github.com/zhangzjn/EMOv2): per config name ("{}" is the arch), the
# params and FLOPs of the 1M, 2M, 5M and 20M models. Their ImageNet table
# has no 20M row. The dense FLOPs are the README's, counted by the authors'
# tools at their sizes (SSDLite is listed at "300x300"; its configs run at
# 320), so they need not match ours; ImageNet's are fvcore's at 224, as
# ours.
_EMOV2_ARCHES = ('1m', '2m', '5m', '20m')
_EMOV2_PAPER = {
    'imagenet/emov2_{}':
    (('1.4M', '2.3M', '5.1M', None), ('285M', '487M', '1035M', None)),
    'ssdlite/emov2_{}':
    (('2.4M', '3.3M', '6.0M', '21.2M'), ('0.7G', '1.2G', '2.4G', '9.1G')),
    'ssdlite/emov2_{}_512':
    (('2.4M', '3.3M', '6.0M', '21.2M'), ('2.3G', '4.0G', '8.0G', '30.3G')),
    'retinanet/emov2_{}':
    (('10.5M', '11.5M', '14.4M', '29.8M'), ('142G', '146G', '158G', '220G')),
    'mask_rcnn/emov2_{}': (('21.2M', '22.1M', '24.8M', '39.8M'),
                           ('165G', '170G', '181G', '244G')),
    'deeplabv3/emov2_{}': (('5.6M', '6.6M', '9.9M', '26.0M'),
                           ('3.3G', '5.0G', '9.1G', '31.6G')),
    'sem_fpn/emov2_{}': (('5.3M', '6.2M', '8.9M', '23.9M'),
                         ('23.4G', '25.1G', '29.1G', '51.5G')),
    'segformer/emov2_{}': (('1.4M', '2.6M', '5.3M', '20.4M'),
                           ('5.0G', '10.3G', '14.4G', '36.8G')),
    'pspnet/emov2_{}': (('4.2M', '5.2M', '8.1M', '23.6M'), ('2.9G', '4.6G',
                                                            '8.6G', '30.9G')),
}
PAPER.update({
    key.format(arch): (params[i], flops[i])
    for key, (params, flops) in _EMOV2_PAPER.items()
    for i, arch in enumerate(_EMOV2_ARCHES) if params[i] or flops[i]
})
# The 5M classifier fine-tuned at 512x512 (with distillation).
PAPER['imagenet/emov2_5m_512'] = ('5.1M', '5627M')


def tensor_mode_samples(model: nn.Module,
                        inputs: torch.Tensor) -> Optional[list]:
    """What ``model``'s tensor mode needs beside the images: None, except
    for mmdet's two-stage detectors (Mask R-CNN), whose RPN places its
    proposals in the image: one test-time data sample per image, its meta
    data those of the unscaled, unpadded input."""
    if not hasattr(model, 'roi_head') or not hasattr(model, 'rpn_head'):
        return None
    from mmdet.structures import DetDataSample
    h, w = inputs.shape[-2:]
    meta = dict(
        img_shape=(h, w),
        ori_shape=(h, w),
        pad_shape=(h, w),
        batch_input_shape=(h, w),
        scale_factor=(1.0, 1.0))
    return [DetDataSample(metainfo=meta) for _ in range(inputs.shape[0])]


class TensorMode(nn.Module):
    """Calls ``model(inputs, mode='tensor')``: backbone + neck + head, no
    post-processing (``_forward`` in mmdet and mmseg, ``extract_feat`` + head
    in mmpretrain). A two-stage detector gets test data samples
    (:func:`tensor_mode_samples`): its RoI heads run on the RPN's proposals (at
    most ``test_cfg.rpn.max_per_img``; the mask head on the first 100), as
    in mmdet's own ``get_flops.py``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        return self.model(
            inputs, tensor_mode_samples(self.model, inputs), mode='tensor')


def count(model: nn.Module, inputs: torch.Tensor) -> Dict:
    """Parameters and FLOPs of ``model`` on ``inputs``.

    Args:
        model (nn.Module): Its forward takes ``inputs`` alone.
        inputs (torch.Tensor): A batch of one image.

    Returns:
        dict: ``params`` (int), ``flops`` (int, multiply-adds),
        ``by_operator`` (counted FLOPs per op kind) and ``uncounted``
        (the ops the counter skipped, with how often they ran).
    """
    model.eval()
    # The fused attention kernel is invisible to the counter; the explicit
    # q @ k^T and attn @ v path gives the same result and is counted. The
    # caller's setting is put back after.
    fused = {
        m: m.fused_attn
        for m in model.modules() if hasattr(m, 'fused_attn')
    }
    for module in fused:
        module.fused_attn = False
    try:
        analyzer = FlopAnalyzer(model, (inputs, ))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(
            False)
        with torch.no_grad():
            flops = analyzer.total()
    finally:
        for module, value in fused.items():
            module.fused_attn = value
    return dict(
        params=sum(p.numel() for p in model.parameters()),
        flops=flops,
        by_operator=dict(analyzer.by_operator()),
        uncounted=dict(analyzer.unsupported_ops()))


def analyze_config(path: str,
                   shape: Optional[Sequence[int]] = None,
                   cfg_options: Optional[dict] = None) -> Dict:
    """Count one config's model.

    Args:
        path (str): Config file.
        shape (Sequence[int], optional): (H, W) or (S,) for SxS; defaults to
            the config's size (:func:`input_shape`).
        cfg_options (dict, optional): Config overrides.

    Returns:
        dict: :func:`count`'s result plus ``aux_params`` (parameters of an
        mmseg auxiliary head, included in ``params``), ``shape`` (H, W),
        ``shape_source``, ``scope`` and ``model_type``.
    """
    cfg = load_config(path, cfg_options)
    if shape:
        shape = tuple(shape) if len(shape) == 2 else (shape[0], shape[0])
        source = 'the shape argument'
    else:
        shape, source = input_shape(cfg)
    model = build_model(cfg)
    result = count(TensorMode(model), torch.randn(1, 3, *shape))
    # mmseg's auxiliary head is trained but never run in tensor mode or at
    # test time: it is in ``params`` but not in ``flops``, so say how much.
    aux = getattr(model, 'auxiliary_head', None)
    result.update(
        aux_params=0 if aux is None else sum(p.numel()
                                             for p in aux.parameters()),
        shape=tuple(shape),
        shape_source=source,
        scope=cfg.default_scope,
        model_type=type(model).__name__)
    return result


def count_backbone(arch: str, size: int = 224, family: str = 'EMO') -> Dict:
    """Count a bare EMO or EMOv2 backbone as the paper's ImageNet classifier.

    The backbone with its final norm, plus a
    1000-class linear head (``width * 1000`` multiply-adds, ``(width + 1) *
    1000`` parameters) added by hand; global pooling is not counted.

    Args:
        arch (str): An arch of the family: EMO '1m', '2m', '5m', '6m';
            EMOv2 '1m', '2m', '5m', '20m'.
        size (int): Square input size. Defaults to 224.
        family (str): 'EMO' or 'EMOv2'. Defaults to 'EMO'.

    Returns:
        dict: ``params`` and ``flops`` (ints), as :func:`count` gives.
    """
    if family not in FAMILIES:
        raise ValueError(f'unknown backbone family {family!r}; allowed: '
                         f'{list(FAMILIES)}')
    backbone = FAMILIES[family](arch=arch, final_norm=True)
    width = backbone.out_channels[-1]
    result = count(backbone, torch.randn(1, 3, size, size))
    result['params'] += (width + 1) * 1000
    result['flops'] += width * 1000
    return result


def paper_numbers(path: str) -> Tuple[Optional[str], Optional[str]]:
    """The paper's (params, FLOPs) for a config file named
    ``<folder>/emo_<arch>[_<anything>].py`` or
    ``<folder>/emov2_<arch>[_<anything>].py``, or Nones. The longest key
    that matches wins (``ssdlite/emov2_1m_512`` before ``ssdlite/emov2_1m``);
    ``emo_`` keys never match ``emov2_`` files, nor ``2m`` keys ``20m``
    files."""
    folder = osp.basename(osp.dirname(osp.abspath(path)))
    stem = f'{folder}/{osp.splitext(osp.basename(path))[0]}'
    for key in sorted(PAPER, key=len, reverse=True):
        if stem == key or stem.startswith(key + '_'):
            return PAPER[key]
    return None, None


def all_configs(config_root: str) -> list:
    """Every model config under ``config_root`` (a ``configs/`` folder),
    sorted; demo configs and ``_base_`` left out."""
    paths = sorted(glob.glob(osp.join(config_root, '*', '*.py')))
    return [p for p in paths if osp.basename(osp.dirname(p)) not in SKIP_DIRS]


def _ops_text(by_operator: dict) -> str:
    return ', '.join(
        f'{op} {n / 1e9:.3f}G'
        for op, n in sorted(by_operator.items(), key=lambda kv: -kv[1]))


def describe(path: str, result: Dict) -> str:
    """The report of one config's counts (``tools/analysis/get_flops.py
    CONFIG``): :func:`analyze_config`'s ``result`` for the file ``path``."""
    h, w = result['shape']
    lines = []
    lines.append(f'config:  {path} ({result["scope"]} {result["model_type"]})')
    lines.append(f'input:   1x3x{h}x{w} (N x C x H x W; '
                 f'from {result["shape_source"]})')
    lines.append(
        f'params:  {result["params"]:,} ({result["params"] / 1e6:.2f}M)')
    if result['aux_params']:
        lines.append(
            f'         of which {result["aux_params"]:,} in the auxiliary '
            'head (training only, not run when counting FLOPs)')
    lines.append(f'FLOPs:   {result["flops"] / 1e9:.3f}G ({result["flops"]:,} '
                 'multiply-adds)')
    lines.append(
        "counted: mmengine FlopAnalyzer (fvcore-style, 1 FLOP = 1 "
        "multiply-add) on model(inputs, mode='tensor'): backbone + neck + "
        'head, no pre/post-processing, fused attention off')
    lines.append(f'  by op: {_ops_text(result["by_operator"])}')
    uncounted = ', '.join(sorted(result['uncounted']))
    lines.append(f'  not counted: {uncounted or "none"}')
    numbers = [
        f'{n} {what}'
        for n, what in zip(paper_numbers(path), ('params', 'FLOPs')) if n
    ]
    if numbers:
        lines.append(f'paper:   {", ".join(numbers)}')
    return '\n'.join(lines)
