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
(``tools/deployment/export_onnx.py``) and run by ONNX Runtime on the CPU with
the same thread count. ``--config`` times a
whole emo_mm config's model in tensor mode instead.
"""
import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time

import torch

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOOLS, 'deployment'))
from export_onnx import deploy, export  # noqa: E402

PAIRS = {'1m': 'xxsmall', '2m': 'xsmall', '5m': 'small'}
# Window sizes of the downstream configs by input side (EMO-1M/2M, EMO-5M).
WINDOWS = {224: (7, 7), 320: (7, 10), 512: (7, 16)}


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


def build_pair(arch, size):
    """EMO and its EdgeNeXt peer, bare backbones in eval mode."""
    from mmpretrain.models.backbones import EdgeNeXt

    from emo_mm.models import EMO
    window = WINDOWS.get(size, (7, 7))[arch == '5m']
    emo = EMO(arch=arch, out_indices=(4, ), final_norm=True,
              window_size=window)
    edgenext = EdgeNeXt(arch=PAIRS[arch], out_indices=(3, ))
    return [(f'EMO-{arch.upper()} (w{window})', emo),
            (f'EdgeNeXt-{PAIRS[arch]}', edgenext)]


def prepare(model, args):
    model = model.to(args.device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train(args.train)  # some mmpretrain train() overrides return None
    if args.deploy:
        deploy(model)
    return model


def make_input(batch, size, args):
    x = torch.randn(batch, 3, size, size, device=args.device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def step_fn(model, x, args):
    """One timed unit: inference, or forward + backward + SGD step."""
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(args.dtype)
    device_type = 'cuda' if args.device.startswith('cuda') else 'cpu'
    optimizer = (torch.optim.SGD(model.parameters(), lr=1e-6)
                 if args.train else None)

    def run():
        with torch.autocast(device_type, dtype=dtype,
                            enabled=dtype is not None):
            if not args.train:
                with torch.no_grad():
                    return model(x)
            out = model(x)
        out = out if isinstance(out, torch.Tensor) else torch.cat(
            [o.float().flatten(1) for o in out], 1)
        out.float().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


def time_models(models, batch, size, args):
    """Median/quartile milliseconds per model, runs interleaved."""
    return time_runs({
        name: step_fn(prepare(model, args), make_input(batch, size, args),
                      args)
        for name, model in models
    }, args)


def time_runs(runs, args):
    """``{name: (median, q1, q3)}`` in ms of the callables in ``runs``."""
    for _ in range(args.warmup):
        for run in runs.values():
            run()
    times = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, run in runs.items():
            _sync(args.device)
            start = time.perf_counter()
            run()
            _sync(args.device)
            times[name].append((time.perf_counter() - start) * 1e3)
    stats = {}
    for name, values in times.items():
        q1, median, q3 = statistics.quantiles(values, n=4)
        stats[name] = (median, q1, q3)
    return stats


def time_onnxruntime(models, batch, size, args):
    """Like :func:`time_models`, for the models exported to ONNX (by
    tools/deployment/export_onnx.py, dynamic axes) and run at the benchmark's
    shape by ONNX Runtime's CPU provider."""
    import tempfile

    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    # Idle sessions must not spin: the two sessions alternate runs, and a
    # spinning pool would take the cores from the other one.
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    x = torch.randn(batch, 3, size, size).numpy()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models:
            path = os.path.join(tmp, 'model.onnx')
            export(prepare(model, args), (size, size), ['features'], path,
                   opset=17)
            session = ort.InferenceSession(
                path, options, providers=['CPUExecutionProvider'])
            runs[f'{name} [ORT]'] = (
                lambda s=session: s.run(None, {'input': x}))
    return time_runs(runs, args)


def _peak_child(arch_name, arch, size, batch, args, queue):
    torch.set_num_threads(args.threads)
    model = dict(build_pair(arch, size))[arch_name]
    run = step_fn(prepare(model, args), make_input(batch, size, args), args)
    for _ in range(2):
        run()
    # VmHWM: this process's own peak (ru_maxrss would include the parent's,
    # which Linux carries over the fork and exec of the spawn).
    with open('/proc/self/status') as f:
        peak_kb = next(int(line.split()[1]) for line in f
                       if line.startswith('VmHWM:'))
    queue.put(peak_kb / 1024)


def peak_memory_mb(name, arch, size, batch, args):
    """Peak memory (MB) of training ``name``: CUDA allocator or child RSS."""
    if args.device.startswith('cuda'):
        model = dict(build_pair(arch, size))[name]
        torch.cuda.reset_peak_memory_stats()
        step_fn(prepare(model, args), make_input(batch, size, args), args)()
        _sync(args.device)
        return torch.cuda.max_memory_allocated() / 2**20
    context = mp.get_context('spawn')
    queue = context.Queue()
    child = context.Process(
        target=_peak_child, args=(name, arch, size, batch, args, queue))
    child.start()
    child.join()
    return queue.get() if child.exitcode == 0 else float('nan')


def benchmark_pairs(args):
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
                stats = time_models(models, batch, size, args)
                names = [name for name, _ in models]
                rows = [names]
                if args.onnxruntime:
                    stats.update(time_onnxruntime(models, batch, size, args))
                    rows.append([f'{name} [ORT]' for name in names])
                for row in rows:
                    print_pair(row, stats, batch, size, arch, args)


def print_pair(names, stats, batch, size, arch, args):
    """Rows of one EMO/EdgeNeXt pair, the ratio on the EdgeNeXt row."""
    emo_ms = stats[names[0]][0]
    for index, name in enumerate(names):
        median, q1, q3 = stats[name]
        ratio = f'{emo_ms / median:.2f}x' if index else ''
        line = (f'{name:<28}{f"{batch}x3x{size}x{size}":>13}'
                f'{median:>13.1f}{f"{q1:.1f}-{q3:.1f}":>16}'
                f'{batch / median * 1e3:>9.1f}{ratio:>14}')
        if args.train:
            peak = peak_memory_mb(name, arch, size, batch, args)
            line += f'{peak:>10.0f}'
        print(line, flush=True)


def benchmark_config(args):
    """Time one config's model (tensor mode, at the config's input size)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from get_flops import TensorMode, build_model, input_shape, load_config
    cfg = load_config(args.config)
    (h, w), source = input_shape(cfg)
    model = prepare(TensorMode(build_model(cfg)), args)
    print(f'{args.config}: input from {source}; device {args.device}, '
          f'{args.threads} threads, dtype {args.dtype}, channels_last '
          f'{args.channels_last}, deploy {args.deploy}')
    for batch in args.batches:
        x = torch.randn(batch, 3, h, w, device=args.device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        median, q1, q3 = time_runs({'model': step_fn(model, x, args)},
                                   args)['model']
        print(f'  {batch}x3x{h}x{w}: {median:.1f} ms (25-75% {q1:.1f}-'
              f'{q3:.1f}), {batch / median * 1e3:.1f} img/s')


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import emo_mm  # noqa: F401  (registers EMO)
    if args.config:
        benchmark_config(args)
    else:
        benchmark_pairs(args)


if __name__ == '__main__':
    main()
