"""Latency, throughput and peak memory of EMO against mmpretrain's EdgeNeXt.

    python tools/analysis/benchmark.py                      # the default table
    python tools/analysis/benchmark.py --pairs 5m --sizes 224 --batches 1 16
    python tools/analysis/benchmark.py --channels-last --deploy
    python tools/analysis/benchmark.py --onnxruntime --sizes 224
    python tools/analysis/benchmark.py --train --sizes 320 --batches 16
    python tools/analysis/benchmark.py --config configs/ssdlite/emo_1m_coco.py

Each EMO variant is paired with the EdgeNeXt of its tier (1M: xxsmall, 2M:
xsmall, 5M: small); both are the bare backbones, built and timed in this
process with the same thread count, input and settings, alternating EMO and
EdgeNeXt runs so that drifting CPU clocks hit both alike. A row reports the
median (and the 25-75% range) of ``--repeat`` timed runs after ``--warmup``
untimed ones, images per second, and EMO's time over EdgeNeXt's. Windows
follow the downstream configs: 7 at 224; at 320 (SSDLite) 7/7/10; at 512
(segmentation) 7/7/16.

``--train`` times forward + backward + SGD step instead and reports the peak
memory: on CUDA the allocator's peak, on the CPU the peak resident memory
(VmHWM, Linux) of a child process that imports the libraries and runs only
that model's two steps, so about 0.5 GB of it is Python, torch and mmcv.
``--deploy`` first folds the BatchNorms into the convolutions
(``EMO.switch_to_deploy``; EdgeNeXt has none to fold). ``--onnxruntime``
adds rows for both models exported to ONNX
(:mod:`emo_mm.deployment`) and run by ONNX Runtime on the CPU with
the same thread count. ``--config`` times a
whole emo_mm config's model in tensor mode instead.
"""
import argparse

import torch

from emo_mm.errors import run_tool
from emo_mm.analysis import TensorMode
from emo_mm.analysis.benchmark import (PAIRS, Settings, build_pair,
                                       peak_memory_mb, prepare, step_fn,
                                       time_models, time_onnxruntime,
                                       time_runs)
from emo_mm.config import build_model, input_shape, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark EMO against EdgeNeXt (or one config).')
    parser.add_argument('--pairs', nargs='+', default=sorted(PAIRS),
                        choices=sorted(PAIRS))
    parser.add_argument('--sizes', nargs='+', type=int,
                        default=[224, 320, 512])
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 16])
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='fp32',
                        choices=['fp32', 'bf16', 'fp16'],
                        help='autocast dtype (fp32: none)')
    parser.add_argument('--channels-last', action='store_true',
                        help='channels-last memory format for model and input')
    parser.add_argument('--deploy', action='store_true',
                        help='fold BatchNorms into convolutions first '
                        '(switch_to_deploy; inference only)')
    parser.add_argument('--onnxruntime', action='store_true',
                        help='also time both models exported to ONNX and run '
                        'by ONNX Runtime (CPU, same threads)')
    parser.add_argument('--train', action='store_true',
                        help='time forward + backward + step; report memory')
    parser.add_argument('--config', help='time this config\'s model instead')
    args = parser.parse_args(argv)
    if args.deploy and args.train:
        parser.error('--deploy folds BatchNorms for inference; it cannot be '
                     'combined with --train')
    if args.onnxruntime and (args.train or args.config or args.device != 'cpu'
                             or args.dtype != 'fp32'):
        parser.error('--onnxruntime times fp32 inference of the backbone '
                     'pairs on the CPU only')
    return args


def settings_of(args) -> Settings:
    return Settings(args.device, args.dtype, args.channels_last, args.deploy,
                    args.train, args.threads, args.repeat, args.warmup)


def benchmark_pairs(args, settings):
    mode = 'train step (fwd+bwd+SGD)' if args.train else 'inference'
    print(f'{mode}; device {args.device}, {args.threads} threads, dtype '
          f'{args.dtype}, channels_last {args.channels_last}, deploy '
          f'{args.deploy}; median of '
          f'{args.repeat} runs after {args.warmup} warm-up runs; torch '
          f'{torch.__version__}')
    header = (f'{"model":<28}{"input":>13}{"ms (median)":>13}{"25-75%":>16}'
              f'{"img/s":>9}{"EMO/EdgeNeXt":>14}')
    if args.train:
        header += f'{"peak MB":>10}'
    print(header)
    print('-' * len(header))
    for size in args.sizes:
        for batch in args.batches:
            for arch in args.pairs:
                models = build_pair(arch, size)
                stats = time_models(models, batch, size, settings)
                names = [name for name, _ in models]
                rows = [names]
                if args.onnxruntime:
                    stats.update(
                        time_onnxruntime(models, batch, size, settings))
                    rows.append([f'{name} [ORT]' for name in names])
                for row in rows:
                    print_pair(row, stats, batch, size, arch, settings)


def print_pair(names, stats, batch, size, arch, settings):
    """Rows of one EMO/EdgeNeXt pair, the ratio on the EdgeNeXt row."""
    emo_ms = stats[names[0]][0]
    for index, name in enumerate(names):
        median, q1, q3 = stats[name]
        ratio = f'{emo_ms / median:.2f}x' if index else ''
        line = (f'{name:<28}{f"{batch}x3x{size}x{size}":>13}'
                f'{median:>13.1f}{f"{q1:.1f}-{q3:.1f}":>16}'
                f'{batch / median * 1e3:>9.1f}{ratio:>14}')
        if settings.train:
            peak = peak_memory_mb(name, arch, size, batch, settings)
            line += f'{peak:>10.0f}'
        print(line, flush=True)


def benchmark_config(args, settings):
    """Time one config's model (tensor mode, at the config's input size)."""
    cfg = load_config(args.config)
    (h, w), source = input_shape(cfg)
    model = prepare(TensorMode(build_model(cfg)), settings)
    print(f'{args.config}: input from {source}; device {args.device}, '
          f'{args.threads} threads, dtype {args.dtype}, channels_last '
          f'{args.channels_last}, deploy {args.deploy}')
    for batch in args.batches:
        x = torch.randn(batch, 3, h, w, device=args.device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        median, q1, q3 = time_runs({'model': step_fn(model, x, settings)},
                                   settings)['model']
        print(f'  {batch}x3x{h}x{w}: {median:.1f} ms (25-75% {q1:.1f}-'
              f'{q3:.1f}), {batch / median * 1e3:.1f} img/s')


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = settings_of(args)
    if args.config:
        benchmark_config(args, settings)
    else:
        benchmark_pairs(args, settings)


if __name__ == '__main__':
    run_tool(main)
