"""Latency, throughput and peak memory of EMO and EMOv2 against mmpretrain's
EdgeNeXt.

    python tools/analysis/benchmark.py                      # the default table
    python tools/analysis/benchmark.py --tiers 5m --sizes 224 --batches 1 16
    python tools/analysis/benchmark.py --tiers 20m --families EMOv2
    python tools/analysis/benchmark.py --channels-last --deploy
    python tools/analysis/benchmark.py --onnxruntime --sizes 224
    python tools/analysis/benchmark.py --train --sizes 320 --batches 16
    python tools/analysis/benchmark.py --config configs/ssdlite/emo_1m_coco.py

Each size tier is one group of rows: EMO, EMOv2 and the EdgeNeXt of about
their size (1M: xxsmall, 2M: xsmall, 5M: small; 20M, only in EMOv2: base).
All are the bare backbones, built and timed in this process with the same
thread count, input and settings, alternating their runs so that drifting
CPU clocks hit all alike. A row reports the median (and the 25-75% range) of
``--repeat`` timed runs after ``--warmup`` untimed ones, images per second,
and, on the EMO and EMOv2 rows, the time over EdgeNeXt's (below 1: faster).
Windows follow the downstream configs: 7 at 224; EMO at 320 (SSDLite)
7/7/10 and at 512 (segmentation) 7/7/16 (1M/2M/5M); EMOv2 10 at every size
but 224. ``--families`` leaves EMO or EMOv2 out (``--pairs`` is the old name
of ``--tiers``).

``--train`` times forward + backward + SGD step instead and reports the peak
memory: on CUDA the allocator's peak, on the CPU the peak resident memory
(VmHWM, Linux) of a child process that imports the libraries and runs only
that model's two steps, so about 0.5 GB of it is Python, torch and mmcv.
EMOv2's LayerScales are set to 0.5 first (``TIMED_LAYER_SCALE`` in
:mod:`emo_mm.analysis.benchmark`): at their initial 1e-6 the deep
activations are so small that the CPU's activation kernels slow down, which
trained weights never show.
``--deploy`` first folds the BatchNorms into the convolutions, and EMOv2's
LayerScales into its projections (``switch_to_deploy``; EdgeNeXt has none
to fold). ``--onnxruntime`` adds rows for the models exported to ONNX
(:mod:`emo_mm.deployment`) and run by ONNX Runtime on the CPU with
the same thread count. ``--config`` times a
whole emo_mm config's model in tensor mode instead.
"""
import argparse

import torch

from emo_mm.errors import run_tool
from emo_mm.analysis import TensorMode
from emo_mm.analysis.benchmark import (FAMILIES, TIERS, Settings,
                                       build_tier, peak_memory_mb, prepare,
                                       set_layer_scales, step_fn, time_models,
                                       time_onnxruntime, time_runs)
from emo_mm.config import build_model, input_shape, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Benchmark EMO and EMOv2 against EdgeNeXt (or one '
        'config).')
    parser.add_argument('--tiers', '--pairs', nargs='+', default=list(TIERS),
                        choices=list(TIERS),
                        help='size tiers (default: all)')
    parser.add_argument('--families', nargs='+', default=list(FAMILIES),
                        choices=list(FAMILIES),
                        help='which of EMO and EMOv2 to time beside '
                        'EdgeNeXt (default: both)')
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
        parser.error('--onnxruntime times fp32 inference of the tiers\' '
                     'backbones on the CPU only')
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
    header = (f'{"model":<28}{"input":>13}{"ms (median)":>13}{"25-75%":>16}'
              f'{"img/s":>9}{"/EdgeNeXt":>11}')
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
                if args.onnxruntime:
                    stats.update(
                        time_onnxruntime(models, batch, size, settings))
                    rows.append([f'{name} [ORT]' for name in names])
                for row in rows:
                    print_tier(row, stats, batch, size, tier, settings)


def print_tier(names, stats, batch, size, tier, settings):
    """Rows of one tier, EdgeNeXt last; on the others, their time over
    EdgeNeXt's."""
    reference = stats[names[-1]][0]
    for name in names:
        median, q1, q3 = stats[name]
        ratio = '' if name == names[-1] else f'{median / reference:.2f}x'
        line = (f'{name:<28}{f"{batch}x3x{size}x{size}":>13}'
                f'{median:>13.1f}{f"{q1:.1f}-{q3:.1f}":>16}'
                f'{batch / median * 1e3:>9.1f}{ratio:>11}')
        if settings.train:
            peak = peak_memory_mb(name, tier, size, batch, settings)
            line += f'{peak:>10.0f}'
        print(line, flush=True)


def benchmark_config(args, settings):
    """Time one config's model (tensor mode, at the config's input size)."""
    cfg = load_config(args.config)
    (h, w), source = input_shape(cfg)
    model = build_model(cfg)
    set_layer_scales(model)  # EMOv2's, as trained ones (TIMED_LAYER_SCALE)
    model = prepare(TensorMode(model), settings)
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
        benchmark_tiers(args, settings)


if __name__ == '__main__':
    run_tool(main)
