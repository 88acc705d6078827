"""Timing EMO against mmpretrain's EdgeNeXt, runs interleaved.

Each EMO variant is paired with the EdgeNeXt of its tier (1M: xxsmall, 2M:
xsmall, 5M: small); both are bare backbones, built and timed in one process
with the same threads, input and settings, alternating runs so that
drifting CPU clocks hit both alike. Peak training memory is the CUDA
allocator's peak, or on the CPU the peak resident memory (VmHWM, Linux) of a
child process that imports the libraries and runs only that model's two
steps.
"""
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass

import torch

from ..deployment import deploy, export_onnx

PAIRS = {'1m': 'xxsmall', '2m': 'xsmall', '5m': 'small'}
# Window sizes of the downstream configs by input side (EMO-1M/2M, EMO-5M).
WINDOWS = {224: (7, 7), 320: (7, 10), 512: (7, 16)}


@dataclass
class Settings:
    """How to time: device, autocast dtype ('fp32': none), channels-last,
    BatchNorms folded first (``deploy``), a training step instead of
    inference, CPU threads for ONNX Runtime, and runs per measurement."""
    device: str = 'cpu'
    dtype: str = 'fp32'
    channels_last: bool = False
    deploy: bool = False
    train: bool = False
    threads: int = 1
    repeat: int = 20
    warmup: int = 5


def build_pair(arch, size):
    """EMO and its EdgeNeXt peer, bare backbones in eval mode."""
    from mmpretrain.models.backbones import EdgeNeXt

    from ..models import EMO
    window = WINDOWS.get(size, (7, 7))[arch == '5m']
    emo = EMO(arch=arch,
              out_indices=(4, ),
              final_norm=True,
              window_size=window)
    edgenext = EdgeNeXt(arch=PAIRS[arch], out_indices=(3, ))
    return [(f'EMO-{arch.upper()} (w{window})', emo),
            (f'EdgeNeXt-{PAIRS[arch]}', edgenext)]


def prepare(model, settings):
    model = model.to(settings.device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train(
        settings.train)  # some mmpretrain train() overrides return None
    if settings.deploy:
        deploy(model)
    return model


def make_input(batch, size, settings):
    x = torch.randn(batch, 3, size, size, device=settings.device)
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def step_fn(model, x, settings):
    """One timed unit: inference, or forward + backward + SGD step."""
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(settings.dtype)
    device_type = 'cuda' if settings.device.startswith('cuda') else 'cpu'
    optimizer = (torch.optim.SGD(model.parameters(), lr=1e-6)
                 if settings.train else None)

    def run():
        with torch.autocast(device_type,
                            dtype=dtype,
                            enabled=dtype is not None):
            if not settings.train:
                with torch.no_grad():
                    return model(x)
            out = model(x)
        out = out if isinstance(out, torch.Tensor) else torch.cat(
            [o.float().flatten(1) for o in out], 1)
        out.float().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


def time_models(models, batch, size, settings):
    """Median/quartile milliseconds per model, runs interleaved."""
    return time_runs(
        {
            name:
            step_fn(prepare(model, settings), make_input(
                batch, size, settings), settings)
            for name, model in models
        }, settings)


def time_runs(runs, settings):
    """``{name: (median, q1, q3)}`` in ms of the callables in ``runs``."""
    for _ in range(settings.warmup):
        for run in runs.values():
            run()
    times = {name: [] for name in runs}
    for _ in range(settings.repeat):
        for name, run in runs.items():
            _sync(settings.device)
            start = time.perf_counter()
            run()
            _sync(settings.device)
            times[name].append((time.perf_counter() - start) * 1e3)
    stats = {}
    for name, values in times.items():
        q1, median, q3 = statistics.quantiles(values, n=4)
        stats[name] = (median, q1, q3)
    return stats


def time_onnxruntime(models, batch, size, settings):
    """Like :func:`time_models`, for the models exported to ONNX (by
    tools/deployment/export_onnx.py, dynamic axes) and run at the benchmark's
    shape by ONNX Runtime's CPU provider."""
    import tempfile

    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    # Idle sessions must not spin: the two sessions alternate runs, and a
    # spinning pool would take the cores from the other one.
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    x = torch.randn(batch, 3, size, size).numpy()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models:
            path = os.path.join(tmp, 'model.onnx')
            export_onnx(prepare(model, settings), (size, size), ['features'],
                        path,
                        opset=17)
            session = ort.InferenceSession(path,
                                           options,
                                           providers=['CPUExecutionProvider'])
            runs[f'{name} [ORT]'] = (
                lambda s=session: s.run(None, {'input': x}))
    return time_runs(runs, settings)


def _peak_child(arch_name, arch, size, batch, settings, queue):
    torch.set_num_threads(settings.threads)
    model = dict(build_pair(arch, size))[arch_name]
    run = step_fn(prepare(model, settings), make_input(batch, size, settings),
                  settings)
    for _ in range(2):
        run()
    # VmHWM: this process's own peak (ru_maxrss would include the parent's,
    # which Linux carries over the fork and exec of the spawn).
    with open('/proc/self/status') as f:
        peak_kb = next(
            int(line.split()[1]) for line in f if line.startswith('VmHWM:'))
    queue.put(peak_kb / 1024)


def peak_memory_mb(name, arch, size, batch, settings):
    """Peak memory (MB) of training ``name``: CUDA allocator or child RSS."""
    if settings.device.startswith('cuda'):
        model = dict(build_pair(arch, size))[name]
        torch.cuda.reset_peak_memory_stats()
        step_fn(prepare(model, settings), make_input(batch, size, settings),
                settings)()
        _sync(settings.device)
        return torch.cuda.max_memory_allocated() / 2**20
    context = mp.get_context('spawn')
    queue = context.Queue()
    child = context.Process(target=_peak_child,
                            args=(name, arch, size, batch, settings,
                                      queue))
    child.start()
    child.join()
    return queue.get() if child.exitcode == 0 else float('nan')
