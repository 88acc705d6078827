"""Parameters and FLOPs of EMO models, and the paper's numbers beside them.

Counting uses mmengine's ``FlopAnalyzer`` (fvcore-style: one FLOP is one
multiply-add) on the model's tensor mode, ``model(inputs, mode='tensor')``:
backbone, neck and head, without data pre-processing or post-processing
(box decoding, NMS, resizing of logits), as mmdet's own ``get_flops.py``
counts. The counted ops are convolutions, matmul/linear, norms, upsampling
and adaptive average pooling; element-wise ops (activations, additions,
softmax) are not counted and are listed per model.
"""
import glob
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer

from ..config import build_model, input_shape, load_config
from ..models import EMO

# Folders under configs/ that hold no complete model config.
SKIP_DIRS = ('_base_', 'demo')

# Numbers reported in the EMO paper (ICCV 2023): per config folder, the
# parameters of the 1M, 2M, 5M (and 6M) models and, for the ImageNet
# classifiers at 224x224 (which also label the bare backbones), their FLOPs.
_PAPER_PARAMS = dict(imagenet=('1.3M', '2.3M', '5.1M', '6.1M'),
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


class TensorMode(nn.Module):
    """Calls ``model(inputs, mode='tensor')``: backbone + neck + head, no
    post-processing (``_forward`` in mmdet and mmseg, ``extract_feat`` + head
    in mmpretrain)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        return self.model(inputs, mode='tensor')


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
    # q @ k^T and attn @ v path gives the same result and is counted.
    for module in model.modules():
        if hasattr(module, 'fused_attn'):
            module.fused_attn = False
    analyzer = FlopAnalyzer(model, (inputs, ))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        flops = analyzer.total()
    return dict(params=sum(p.numel() for p in model.parameters()),
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
        source = '--shape'
    else:
        shape, source = input_shape(cfg)
    model = build_model(cfg)
    result = count(TensorMode(model), torch.randn(1, 3, *shape))
    # mmseg's auxiliary head is trained but never run in tensor mode or at
    # test time: it is in ``params`` but not in ``flops``, so say how much.
    aux = getattr(model, 'auxiliary_head', None)
    result.update(aux_params=0 if aux is None else sum(
        p.numel() for p in aux.parameters()),
                  shape=tuple(shape),
                  shape_source=source,
                  scope=cfg.default_scope,
                  model_type=type(model).__name__)
    return result


def count_backbone(arch: str, size: int = 224) -> Dict:
    """Count a bare EMO backbone as the paper's ImageNet classifier.

    The backbone with its final norm, plus a
    1000-class linear head (``width * 1000`` multiply-adds, ``(width + 1) *
    1000`` parameters) added by hand; global pooling is not counted.

    Args:
        arch (str): '1m', '2m', '5m' or '6m'.
        size (int): Square input size. Defaults to 224.

    Returns:
        dict: ``params`` and ``flops`` (ints), as :func:`count` gives.
    """
    backbone = EMO(arch=arch, final_norm=True)
    width = backbone.out_channels[-1]
    result = count(backbone, torch.randn(1, 3, size, size))
    result['params'] += (width + 1) * 1000
    result['flops'] += width * 1000
    return result


def paper_numbers(path: str) -> Tuple[Optional[str], Optional[str]]:
    """The paper's (params, FLOPs) for a config file named
    ``<folder>/emo_<arch>[_<anything>].py``, or Nones."""
    folder = osp.basename(osp.dirname(osp.abspath(path)))
    stem = f'{folder}/{osp.splitext(osp.basename(path))[0]}'
    for key, values in PAPER.items():
        if stem == key or stem.startswith(key + '_'):
            return values
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
    paper_params, paper_flops = paper_numbers(path)
    if paper_params:
        lines.append(f'paper:   {paper_params} params' +
                     (f', {paper_flops} FLOPs' if paper_flops else ''))
    return '\n'.join(lines)
