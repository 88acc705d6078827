"""Latency, throughput and peak memory of EMO and EMOv2 against mmpretrain's
EdgeNeXt.

    python tools/analysis/benchmark.py                      # the default table
    python tools/analysis/benchmark.py --tiers 5m --sizes 224 --batches 1 16
    python tools/analysis/benchmark.py --no-channels-last --no-deploy
    python tools/analysis/benchmark.py --onnxruntime --openvino --executorch
    python tools/analysis/benchmark.py --config configs/ssdlite/emo_1m_coco.py
    python tools/analysis/benchmark.py \
        --config configs/ssdlite/emo_1m_coco.py --compare --train --batches 8

Tiers: EMO, EMOv2 and the EdgeNeXt of about their size, bare backbones, in
one process, runs alternating; a row is the median (25-75%) of --repeat runs,
images/s and the time over EdgeNeXt's. --config times one config's model at
its input size. What each option times: docs/speed.md.
"""
import argparse
from dataclasses import replace

import torch

from emo_mm.analysis.benchmark import (BEFORE, RUNTIME_TAGS, TIERS, Settings,
                                       build_tier, peak_memory_mb, time_config,
                                       time_models, time_runtime)
from emo_mm.config import input_shape, load_config
from emo_mm.errors import run_tool
from emo_mm.models import FAMILIES


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark EMO and EMOv2 against EdgeNeXt (or one '
        'config).')
    parser.add_argument(
        '--tiers',
        '--pairs',
        nargs='+',
        default=list(TIERS),
        choices=list(TIERS),
        help='size tiers (default: all)')
    parser.add_argument(
        '--families',
        nargs='+',
        default=list(FAMILIES),
        choices=list(FAMILIES),
        help='which of EMO and EMOv2 to time beside '
        'EdgeNeXt (default: both)')
    parser.add_argument(
        '--sizes', nargs='+', type=int, default=[224, 320, 512])
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 16])
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--dtype',
        default='fp32',
        choices=['fp32', 'bf16', 'fp16'],
        help='autocast dtype (fp32: none)')
    parser.add_argument(
        '--channels-last',
        default=True,
        action=argparse.BooleanOptionalAction,
        help='NHWC model and input (default: on)')
    parser.add_argument(
        '--deploy',
        default=None,
        action=argparse.BooleanOptionalAction,
        help='fold BatchNorms (default: on for inference)')
    parser.add_argument(
        '--onnxruntime', action='store_true', help='+ ONNX Runtime')
    parser.add_argument(
        '--openvino', action='store_true', help='+ OpenVINO rows')
    parser.add_argument(
        '--executorch', action='store_true', help='+ ExecuTorch rows')
    parser.add_argument('--train', action='store_true', help='fwd+bwd+step')
    parser.add_argument('--config', help='time this config\'s model instead')
    parser.add_argument(
        '--compare', action='store_true', help='+ NCHW, unfolded')
    args = parser.parse_args(argv)
    if args.deploy and args.train:
        parser.error('--deploy folds BatchNorms for inference; it cannot be '
                     'combined with --train')
    if args.deploy is None:
        args.deploy = not args.train
    if args.compare and not args.config:
        parser.error('--compare compares a --config\'s model with its old '
                     'default; the tiers have --no-channels-last/--no-deploy')
    if (args.onnxruntime or args.openvino
            or args.executorch) and (args.train or args.config or args.device
                                     != 'cpu' or args.dtype != 'fp32'):
        parser.error('--onnxruntime/--openvino/--executorch time fp32 '
                     'inference of the tiers\' backbones on the CPU only')
    return args


def settings_of(args) -> Settings:
    return Settings(args.device, args.dtype, args.channels_last, args.deploy,
                    args.train, args.threads, args.repeat, args.warmup)


def benchmark_tiers(args, settings):
    mode = 'train step (fwd+bwd+SGD)' if args.train else 'inference'
    print(f'{mode}; device {args.device}, {args.threads} threads, dtype '
          f'{args.dtype}, channels_last {args.channels_last}, deploy '
          f'{args.deploy}; median of '
          f'{args.repeat} runs after {args.warmup} warm-up runs; torch '
          f'{torch.__version__}')
    header = (f'{"model":<28}{"input":>13}{"threads":>8}{"out dtype":>10}'
              f'{"ms (median)":>13}{"25-75%":>16}{"img/s":>9}'
              f'{"/EdgeNeXt":>11}')
    if args.train:
        header += f'{"peak MB":>10}'
    print(header)
    print('-' * len(header))
    families = tuple(args.families) + ('EdgeNeXt', )
    for size in args.sizes:
        for batch in args.batches:
            for tier in args.tiers:
                models = build_tier(tier, size, families)
                stats = time_models(models, batch, size, settings)
                names = [name for name, _ in models]
                rows = [names]
                for runtime, wanted in (('ONNX Runtime', args.onnxruntime),
                                        ('OpenVINO', args.openvino),
                                        ('ExecuTorch', args.executorch)):
                    if wanted:
                        stats.update(
                            time_runtime(models, batch, size, settings,
                                         runtime))
                        tag = RUNTIME_TAGS[runtime]
                        rows.append([f'{name} [{tag}]' for name in names])
                for row in rows:
                    print_tier(row, stats, batch, size, tier, settings)


def print_tier(names, stats, batch, size, tier, settings):
    """Rows of one tier, EdgeNeXt last; on the others, their time over
    EdgeNeXt's."""
    reference = stats[names[-1]].median
    for name in names:
        median, q1, q3, threads, dtype, _ = stats[name]
        ratio = '' if name == names[-1] else f'{median / reference:.2f}x'
        line = (f'{name:<28}{f"{batch}x3x{size}x{size}":>13}{threads:>8}'
                f'{dtype:>10}{median:>13.1f}{f"{q1:.1f}-{q3:.1f}":>16}'
                f'{batch / median * 1e3:>9.1f}{ratio:>11}')
        if settings.train:
            peak = peak_memory_mb(name, tier, size, batch, settings)
            line += f'{peak:>10.0f}'
        print(line, flush=True)


def benchmark_config(args, settings):
    """Time one config's model at the config's input size (and, with
    ``--compare``, as it ran before: NCHW, BatchNorms unfolded)."""
    cfg = load_config(args.config)
    shape, source = input_shape(cfg)
    variants = {
        f'channels_last {settings.channels_last}, deploy {settings.deploy}':
        settings
    }
    if args.compare:
        variants = {
            'before: NCHW, BN unfolded': replace(settings, **BEFORE),
            **variants
        }
    mode = ('train step (loss, backward, SGD)'
            if args.train else 'inference (tensor mode)')
    print(f'{args.config}: {mode}; input from {source}; device '
          f'{args.device}, {args.threads} threads, dtype {args.dtype}; '
          f'median of {args.repeat} runs after {args.warmup} warm-up runs; '
          f'torch {torch.__version__}')
    header = (f'{"model":<32}{"input":>15}{"threads":>8}{"out dtype":>10}'
              f'{"ms (median)":>13}{"25-75%":>16}')
    print(header + f'{"img/s":>9}{"/before":>9}')
    print('-' * (len(header) + 18))
    for batch in args.batches:
        stats = time_config(cfg, batch, shape, variants)
        first = stats[next(iter(stats))].median
        for name, (median, q1, q3, threads, dtype, peak) in stats.items():
            ratio = f'{median / first:.2f}x' if args.compare else ''
            print(f'{name:<32}{f"{batch}x3x{shape[0]}x{shape[1]}":>15}'
                  f'{threads:>8}{dtype:>10}'
                  f'{median:>13.1f}{f"{q1:.1f}-{q3:.1f}":>16}'
                  f'{batch / median * 1e3:>9.1f}{ratio:>9}' +
                  (f'{peak:>10.0f} MB peak' if peak is not None else ''))


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = settings_of(args)
    if args.config:
        benchmark_config(args, settings)
    else:
        benchmark_tiers(args, settings)


if __name__ == '__main__':
    run_tool(main)
