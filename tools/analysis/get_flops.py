"""Count the parameters and FLOPs of the models that emo_mm's configs build.

    python tools/analysis/get_flops.py CONFIG [--shape H [W]]
        [--cfg-options KEY=VALUE ...]
    python tools/analysis/get_flops.py --all

One config: the model is built in the config's ``default_scope`` (mmdet,
mmseg or mmpretrain) and counted at the config's own input size (see
:func:`input_shape`). ``--all``: a table of every config under ``configs/``,
then the bare EMO backbones at 224x224 in the paper's classifier form.

Counting uses mmengine's ``FlopAnalyzer`` (fvcore-style: one FLOP is one
multiply-add) on the model's tensor mode, ``model(inputs, mode='tensor')``:
backbone, neck and head, without data pre-processing or post-processing
(box decoding, NMS, resizing of logits), as mmdet's own ``get_flops.py``
counts. The counted ops are convolutions, matmul/linear,
norms, upsampling and adaptive average pooling; element-wise ops
(activations, additions, softmax) are not counted and are listed per config.
"""
import argparse
import glob
import importlib
import os.path as osp
import sys
import time
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config, DictAction
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

from emo_mm.models import EMO

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_ROOT = osp.join(REPO_ROOT, 'configs')
# Folders under configs/ that hold no complete model config.
SKIP_DIRS = ('_base_', 'demo')

# Numbers reported in the EMO paper (ICCV 2023), keyed by "<folder>/emo_<arch>"
# so that any config file named "<folder>/emo_<arch>_<anything>.py" matches.
# Values: (params, FLOPs); FLOPs are None where we have no paper number. The
# imagenet entries (the classifier at 224x224) also label the bare backbones.
PAPER = {
    'imagenet/emo_1m': ('1.3M', '261M'),
    'imagenet/emo_2m': ('2.3M', '439M'),
    'imagenet/emo_5m': ('5.1M', '903M'),
    'imagenet/emo_6m': ('6.1M', '961M'),
    'ssdlite/emo_1m': ('2.3M', None),
    'ssdlite/emo_2m': ('3.3M', None),
    'ssdlite/emo_5m': ('6.0M', None),
    'retinanet/emo_1m': ('10.4M', None),
    'retinanet/emo_2m': ('11.5M', None),
    'retinanet/emo_5m': ('14.4M', None),
    'deeplabv3/emo_1m': ('5.6M', None),
    'deeplabv3/emo_2m': ('6.9M', None),
    'deeplabv3/emo_5m': ('10.3M', None),
    'pspnet/emo_1m': ('4.3M', None),
    'pspnet/emo_2m': ('5.5M', None),
    'pspnet/emo_5m': ('8.5M', None),
}
# A keep-ratio resize such as mmdet's (1333, 800) gives each image its own
# size; count a 16:10 landscape image instead, as mmdet's get_flops default
# of 1280x800 does.
KEEP_RATIO_ASPECT = 1.6


class NoInputSizeError(ValueError):
    """The config names no input size; ``--shape`` must give one."""


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config (which imports emo_mm through ``custom_imports``).

    Args:
        path (str): Config file.
        cfg_options (dict, optional): Overrides, as from ``--cfg-options``.

    Returns:
        Config: The merged config.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _test_pipeline(cfg: Config) -> list:
    """The test pipeline: from the test dataloader's (possibly wrapped)
    dataset, else the top-level ``test_pipeline``."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    while dataset and 'pipeline' not in dataset:
        # Dataset wrappers nest the real dataset one level down.
        if 'dataset' in dataset:
            dataset = dataset['dataset']
        elif dataset.get('datasets'):
            dataset = dataset['datasets'][0]
        else:
            break
    return dataset.get('pipeline') or cfg.get('test_pipeline') or []


def _find(pipeline: list, name: str, key: str) -> Optional[dict]:
    """The first transform of type ``name`` (any scope) that sets ``key``."""
    for transform in pipeline:
        kind = transform.get('type', '').split('.')[-1]
        if kind == name and key in transform:
            return transform
    return None


def _pair(size) -> Tuple[int, int]:
    """An int or a 2-sequence as a pair of ints (order kept)."""
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def input_shape(cfg: Config) -> Tuple[Tuple[int, int], str]:
    """The (H, W) at which to count a config's model, and where it came from.

    Order: mmseg's ``crop_size`` (h, w); a test-pipeline ``CenterCrop``
    ``crop_size`` (w, h, mmpretrain); a test-pipeline ``Resize`` ``scale``
    (w, h): used as is without ``keep_ratio``, and with it the short side
    with a 16:10 landscape width capped by the long side and rounded down to
    a multiple of 32 (1333x800 -> 1280x800). The result is padded up to the
    data preprocessor's ``pad_size_divisor`` (mmdet) as the model would see.

    Args:
        cfg (Config): The config.

    Returns:
        tuple: ``((H, W), description)``.

    Raises:
        NoInputSizeError: When no input size can be found (use ``--shape``).
    """
    pipeline = _test_pipeline(cfg)
    center_crop = _find(pipeline, 'CenterCrop', 'crop_size')
    resize = _find(pipeline, 'Resize', 'scale')
    if cfg.get('default_scope') == 'mmseg' and cfg.get('crop_size'):
        shape = _pair(cfg.crop_size)
        source = f'crop_size={shape}'
    elif center_crop:
        w, h = _pair(center_crop['crop_size'])
        shape = (h, w)
        source = f'test pipeline CenterCrop crop_size={(w, h)}'
    elif resize:
        w, h = _pair(resize['scale'])
        source = f'test pipeline Resize scale={(w, h)}'
        if resize.get('keep_ratio', False):
            short, long = min(w, h), max(w, h)
            width = min(long, int(short * KEEP_RATIO_ASPECT)) // 32 * 32
            shape = (short, width)
            source += (" keep_ratio=True: a 16:10 image, as mmdet's "
                       'get_flops 1280x800')
        else:
            shape = (h, w)
    else:
        raise NoInputSizeError(
            'no input size found in the config (crop_size, test pipeline '
            'CenterCrop/Resize); pass --shape H W')
    divisor = cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1)
    padded = tuple(-(-s // divisor) * divisor for s in shape)
    if padded != shape:
        source += f', padded to a multiple of {divisor}'
    return padded, source


def build_model(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` in the config's scope, ready to be counted.

    The weights stay random: ``init_weights`` is never called, so the
    backbone's ``Pretrained`` init_cfg downloads nothing.

    Args:
        cfg (Config): The config.

    Returns:
        nn.Module: The model in eval mode.
    """
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    # mmdet.registry / mmseg.registry / mmpretrain.registry
    registry = importlib.import_module(f'{scope}.registry')
    model = registry.MODELS.build(cfg.model)
    # SyncBN needs a process group to run; BN counts the same.
    model = revert_sync_batchnorm(model)
    return model.eval()


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
        shape = _pair(shape if len(shape) == 2 else shape[0])
        source = '--shape'
    else:
        shape, source = input_shape(cfg)
    model = build_model(cfg)
    result = count(TensorMode(model), torch.randn(1, 3, *shape))
    # mmseg's auxiliary head is trained but never run in tensor mode or at
    # test time: it is in ``params`` but not in ``flops``, so say how much.
    aux = getattr(model, 'auxiliary_head', None)
    result.update(
        aux_params=0 if aux is None else sum(
            p.numel() for p in aux.parameters()),
        shape=tuple(shape),
        shape_source=source,
        scope=cfg.get('default_scope', 'mmdet'),
        model_type=type(model).__name__)
    return result


def count_backbone(arch: str, size: int = 224) -> Dict:
    """Count a bare EMO backbone as the paper's ImageNet classifier.

    As in ``tools/smoke.py``: the backbone with its final norm, plus a
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
    """The paper's (params, FLOPs) for a config file, or Nones."""
    rel = osp.relpath(osp.abspath(path), CONFIG_ROOT)
    stem = osp.splitext(rel)[0].replace(osp.sep, '/')
    for key, values in PAPER.items():
        if stem == key or stem.startswith(key + '_'):
            return values
    return None, None


def all_configs() -> list:
    """Every model config under ``configs/``, sorted."""
    paths = sorted(glob.glob(osp.join(CONFIG_ROOT, '*', '*.py')))
    return [p for p in paths if osp.basename(osp.dirname(p)) not in SKIP_DIRS]


def _ops_text(by_operator: dict) -> str:
    return ', '.join(f'{op} {n / 1e9:.3f}G'
                     for op, n in sorted(by_operator.items(),
                                         key=lambda kv: -kv[1]))


def print_one(path: str, result: Dict) -> None:
    """Print one config's counts."""
    h, w = result['shape']
    print(f'config:  {path} ({result["scope"]} {result["model_type"]})')
    print(f'input:   1x3x{h}x{w} (N x C x H x W; '
          f'from {result["shape_source"]})')
    print(f'params:  {result["params"]:,} ({result["params"] / 1e6:.2f}M)')
    if result['aux_params']:
        print(f'         of which {result["aux_params"]:,} in the auxiliary '
              'head (training only, not run when counting FLOPs)')
    print(f'FLOPs:   {result["flops"] / 1e9:.3f}G ({result["flops"]:,} '
          'multiply-adds)')
    print("counted: mmengine FlopAnalyzer (fvcore-style, 1 FLOP = 1 "
          "multiply-add) on model(inputs, mode='tensor'): backbone + neck + "
          'head, no pre/post-processing, fused attention off')
    print(f'  by op: {_ops_text(result["by_operator"])}')
    uncounted = ', '.join(sorted(result['uncounted']))
    print(f'  not counted: {uncounted or "none"}')
    paper_params, paper_flops = paper_numbers(path)
    if paper_params:
        print(f'paper:   {paper_params} params'
              + (f', {paper_flops} FLOPs' if paper_flops else ''))


def print_all(cfg_options: Optional[dict] = None) -> None:
    """Print the table of every config and of the bare backbones."""
    start = time.time()
    header = (f'{"config":<26}{"input (HxW)":>12}{"params (M)":>12}'
              f'{"aux (M)":>9}{"FLOPs (G)":>11}{"paper params":>14}')
    print(header)
    print('-' * len(header))
    for path in all_configs():
        result = analyze_config(path, cfg_options=cfg_options)
        stem = osp.splitext(osp.relpath(path, CONFIG_ROOT))[0]
        shape = '{}x{}'.format(*result['shape'])
        aux = f'{result["aux_params"] / 1e6:.2f}' \
            if result['aux_params'] else '-'
        paper_params = paper_numbers(path)[0] or '-'
        print(f'{stem:<26}{shape:>12}{result["params"] / 1e6:>12.2f}'
              f'{aux:>9}{result["flops"] / 1e9:>11.3f}{paper_params:>14}',
              flush=True)
    print("FLOPs of model(inputs, mode='tensor'): backbone + neck + head, no "
          'post-processing.\nA keep-ratio resize (RetinaNet 1333x800) is '
          'counted at H=800, W=1280. params include\nthe auxiliary head '
          '(aux, mmseg, training only), which FLOPs do not.')
    print()

    header = (f'{"backbone @224x224":<26}{"params (M)":>12}{"FLOPs (M)":>11}'
              f'{"paper params":>14}{"paper FLOPs":>13}')
    print(header)
    print('-' * len(header))
    for arch in EMO.arch_settings:
        result = count_backbone(arch)
        paper_params, paper_flops = PAPER.get(f'imagenet/emo_{arch}',
                                              ('-', '-'))
        print(f'{"EMO-" + arch.upper():<26}{result["params"] / 1e6:>12.2f}'
              f'{result["flops"] / 1e6:>11.1f}{paper_params:>14}'
              f'{paper_flops:>13}', flush=True)
    print('Backbone + final norm + 1000-class linear head: the ImageNet '
          'classifier, as the paper\ncounts it (global pooling not '
          'counted).')
    print()
    print('Counter: mmengine FlopAnalyzer, 1 FLOP = 1 multiply-add; conv, '
          'matmul/linear, norms,\nupsampling and adaptive pooling counted, '
          'element-wise ops not; fused attention off.\n'
          f'Took {time.time() - start:.1f} s with '
          f'{torch.get_num_threads()} torch threads.')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Count the parameters and FLOPs of an emo_mm config.')
    parser.add_argument('config', nargs='?', help='config file')
    parser.add_argument(
        '--all',
        action='store_true',
        help='table of every config under configs/ and the bare backbones')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        metavar='SIZE',
        help='input size H W (or one value for a square); default: the '
        "config's test input size")
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if args.all == bool(args.config):
        parser.error('give either a CONFIG or --all')
    if args.shape and (len(args.shape) > 2 or args.all):
        parser.error('--shape takes H W or one size, and not with --all')
    if args.config and not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.all:
        print_all(args.cfg_options)
        return
    try:
        result = analyze_config(args.config, args.shape, args.cfg_options)
    except NoInputSizeError as error:
        print(f'get_flops.py: error: {error}', file=sys.stderr)
        raise SystemExit(2)
    print_one(args.config, result)


if __name__ == '__main__':
    main()
