"""Count the parameters and FLOPs of the models that emo_mm's configs build.

    python tools/analysis/get_flops.py CONFIG [--shape H [W]]
        [--cfg-options KEY=VALUE ...]
    python tools/analysis/get_flops.py --all [--shape H [W]]

One config: the model is built in the config's ``default_scope`` (mmdet,
mmseg or mmpretrain) and counted at the config's own input size (see
:func:`emo_mm.config.input_shape`). ``--all``: a table of every config
under ``configs/``, then the bare EMO and EMOv2 backbones at 224x224 in the
papers' classifier form, each with the published numbers beside (the EMO
paper's; the EMOv2 authors' README); ``--shape`` counts every model at that
size instead (the bare backbones at H x H).

How counting works: :mod:`emo_mm.analysis.complexity` (mmengine's
``FlopAnalyzer``, one FLOP = one multiply-add, on ``model(inputs,
mode='tensor')``: backbone, neck and head, no pre/post-processing).
"""
import argparse
import os.path as osp
import time
from typing import Optional

import torch
from mmengine.config import DictAction

from emo_mm.analysis import (PAPER, all_configs, analyze_config,
                             count_backbone, describe, paper_numbers)
from emo_mm.errors import run_tool
from emo_mm.models import FAMILIES

CONFIG_ROOT = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')


def print_all(cfg_options: Optional[dict] = None,
              shape: Optional[list] = None) -> None:
    """Print the table of every config and of the bare backbones, each at
    its own input size or all at ``shape``."""
    start = time.time()
    header = (f'{"config":<28}{"input (HxW)":>12}{"params (M)":>12}'
              f'{"aux (M)":>9}{"FLOPs (G)":>11}{"paper params":>14}'
              f'{"paper FLOPs":>13}')
    print(header)
    print('-' * len(header))
    for path in all_configs(CONFIG_ROOT):
        result = analyze_config(path, shape, cfg_options)
        stem = osp.splitext(osp.relpath(path, CONFIG_ROOT))[0]
        size = '{}x{}'.format(*result['shape'])
        aux = f'{result["aux_params"] / 1e6:.2f}' \
            if result['aux_params'] else '-'
        paper_params, paper_flops = paper_numbers(path)
        print(
            f'{stem:<28}{size:>12}{result["params"] / 1e6:>12.2f}'
            f'{aux:>9}{result["flops"] / 1e9:>11.3f}'
            f'{paper_params or "-":>14}{paper_flops or "-":>13}',
            flush=True)
    print("FLOPs of model(inputs, mode='tensor'): backbone + neck + head, no "
          'post-processing.\nA keep-ratio resize (RetinaNet, Mask R-CNN '
          '1333x800) is counted at H=800, W=1280; Mask\nR-CNN\'s RoI heads '
          'on the RPN\'s proposals (1000; the mask head on 100). params\n'
          'include the auxiliary head (aux, mmseg, training only), which '
          'FLOPs do not. Paper:\nthe EMO paper\'s params; the EMOv2 '
          'README\'s params and FLOPs (counted at the authors\'\nsizes, '
          'e.g. SSDLite at 300x300).')
    print()

    size = shape[0] if shape else 224
    header = (f'{f"backbone @{size}x{size}":<28}{"params (M)":>12}'
              f'{"FLOPs (M)":>11}'
              f'{"paper params":>14}{"paper FLOPs":>13}')
    print(header)
    print('-' * len(header))
    for family, backbone in FAMILIES.items():
        for arch in backbone.arch_settings:
            result = count_backbone(arch, size, family=family)
            paper_params, paper_flops = PAPER.get(
                f'imagenet/{family.lower()}_{arch}', (None, None))
            name = f'{family}-{arch.upper()}'
            print(
                f'{name:<28}{result["params"] / 1e6:>12.2f}'
                f'{result["flops"] / 1e6:>11.1f}{paper_params or "-":>14}'
                f'{paper_flops or "-":>13}',
                flush=True)
    print('Backbone + final norm + 1000-class linear head: the ImageNet '
          'classifier, as the papers\ncount it (global pooling not '
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
        help='table of every config under configs/ (EMO and EMOv2) and the '
        'bare backbones of both families')
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
    if args.shape and len(args.shape) > 2:
        parser.error('--shape takes H W or one size')
    if args.config and not osp.isfile(args.config):
        parser.error(f'config file not found: {args.config}')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.all:
        print_all(args.cfg_options, args.shape)
        return
    result = analyze_config(args.config, args.shape, args.cfg_options)
    print(describe(args.config, result))


if __name__ == '__main__':
    run_tool(main, flags={'shape=(H, W)': '--shape H W'})
