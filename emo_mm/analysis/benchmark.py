"""Timing EMO and EMOv2 against mmpretrain's EdgeNeXt, runs interleaved.

Each size tier is timed as one group: EMO, EMOv2 and the EdgeNeXt of about
their size (1M: xxsmall, 2M: xsmall, 5M: small; 20M, which only EMOv2 has:
base, 18.5M). All are bare backbones, built and timed in one process with
the same threads, input and settings, alternating runs so that drifting CPU
clocks hit them alike. EMOv2's LayerScales are set as a trained model's
could be (:data:`TIMED_LAYER_SCALE`). Each row also reports what was
measured while it was timed (:class:`Timing`): torch's thread count and the
dtype of what the model returned (autocast's, where it ran). Peak training
memory is the CUDA allocator's peak, or on the CPU what a child process
that runs only that model's two steps adds to its resident memory: its peak
(VmHWM, Linux) over its size before the model was built, so the model, its
gradients and activations (and the library code run for the first time),
without the 0.5 GB of Python, torch and mmcv.

Windows follow the downstream configs: 7 at 224; EMO at 320 (SSDLite)
7/7/10 and at 512 (segmentation) 7/7/16 (1M/2M/5M); EMOv2 10 at every size
but 224. Models run as the tools and configs run them (:class:`Settings`):
channels-last and, for inference, BatchNorms folded (``switch_to_deploy``;
EdgeNeXt has none to fold). Exported models run in ONNX Runtime or, as
OpenVINO IR, in OpenVINO's CPU plugin set to fp32 (:func:`time_runtime`).

A whole config's model (:func:`time_config`) runs in tensor mode for
inference, or for a training step in loss mode (:class:`LossMode`): the
head's loss with its target assignment on random ground truth (the
codebase's ``train_samples``), backward and an SGD step. :data:`BEFORE` is
how the model ran before issue 18 made the fast path the default.
"""
import copy
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass, replace
from typing import NamedTuple, Optional

import torch
import torch.nn as nn

from ..codebases import get_codebase
from ..config import build_model
from ..deployment import (export_onnx, export_openvino, onnxruntime_runner,
                          openvino_runner)
from ..mobile import executorch_runner, lower_to_executorch
from ..models import FAMILIES, deploy
from .complexity import TensorMode

# Per size tier, the arch of each family timed in it; EdgeNeXt is the
# reference the others are compared with.
TIERS = {
    '1m': dict(EMO='1m', EMOv2='1m', EdgeNeXt='xxsmall'),
    '2m': dict(EMO='2m', EMOv2='2m', EdgeNeXt='xsmall'),
    '5m': dict(EMO='5m', EMOv2='5m', EdgeNeXt='small'),
    '20m': dict(EMOv2='20m', EdgeNeXt='base'),
}
# Window sizes of the downstream configs by input side: EMO-1M/2M, EMO-5M
# (7 at 224, the ImageNet window).
WINDOWS = {224: (7, 7), 320: (7, 10), 512: (7, 16)}
# EMOv2: 7 for ImageNet at 224, 10 in every downstream config.
EMOV2_WINDOWS = {224: 7}
EMOV2_DOWNSTREAM_WINDOW = 10

# EMOv2 is timed with every LayerScale at 0.5. Built from scratch they are
# 1e-6, which shrinks the activations of stages 2-4 to about 1e-6 to 1e-24,
# far from a trained model's, where the CPU's activation kernels are slow
# (docs/speed.md).
TIMED_LAYER_SCALE = 0.5


def set_layer_scales(model, value=TIMED_LAYER_SCALE):
    """Set the LayerScale of every EMOv2 block in ``model`` to ``value``;
    returns how many were set."""
    from ..models import I2RMB
    gammas = [
        m.gamma for m in model.modules()
        if isinstance(m, I2RMB) and m.gamma is not None
    ]
    with torch.no_grad():
        for gamma in gammas:
            gamma.fill_(value)
    return len(gammas)


def window_of(family: str, arch: str, size: int) -> int:
    """The window the downstream configs use at input side ``size``."""
    if family == 'EMOv2':
        return EMOV2_WINDOWS.get(size, EMOV2_DOWNSTREAM_WINDOW)
    return WINDOWS.get(size, (7, 7))[arch == '5m']


@dataclass
class Settings:
    """How to time: device, autocast dtype ('fp32': none), channels-last,
    BatchNorms folded first (``deploy``), a training step instead of
    inference, CPU threads for ONNX Runtime, and runs per measurement. The
    defaults are what the tools and configs run: NHWC, BatchNorms folded
    (inference only)."""
    device: str = 'cpu'
    dtype: str = 'fp32'
    channels_last: bool = True
    deploy: bool = True
    train: bool = False
    threads: int = 1
    repeat: int = 20
    warmup: int = 5


class Timing(NamedTuple):
    """One row: median and quartiles in ms; torch's thread count and the
    dtype of the model's output, measured in the timed runs (not taken from
    the settings); the peak memory in MB, where measured."""
    median: float
    q1: float
    q3: float
    threads: int
    dtype: str
    peak: Optional[float] = None


def dtype_of(out) -> str:
    """The dtype of the first tensor (or array) in ``out``, e.g.
    'bfloat16'."""
    while isinstance(out, (list, tuple)):
        out = out[0]
    return str(out.dtype).replace('torch.', '')


def build_tier(tier, size, families=(*FAMILIES, 'EdgeNeXt')):
    """The tier's backbones (EMO, EMOv2, EdgeNeXt: those of ``families``
    that the tier has), bare, in eval mode, as ``[(row name, model)]``."""
    from mmpretrain.models.backbones import EdgeNeXt

    models = []
    for family in FAMILIES:
        arch = TIERS[tier].get(family)
        if arch is None or family not in families:
            continue
        window = window_of(family, arch, size)
        model = FAMILIES[family](
            arch=arch, out_indices=(4, ), final_norm=True, window_size=window)
        set_layer_scales(model)
        models.append((f'{family}-{arch.upper()} (w{window})', model))
    if 'EdgeNeXt' in families:
        arch = TIERS[tier]['EdgeNeXt']
        models.append(
            (f'EdgeNeXt-{arch}', EdgeNeXt(arch=arch, out_indices=(3, ))))
    return models


def prepare(model, settings):
    model = model.to(settings.device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train(
        settings.train)  # some mmpretrain train() overrides return None
    if settings.deploy and not settings.train:
        deploy(model)
    return model


# What the whole-model comparison times against the default: the model as
# it ran before issue 18, NCHW with its BatchNorms unfolded.
BEFORE = dict(channels_last=False, deploy=False)


class LossMode(nn.Module):
    """``model(inputs, samples, mode='loss')`` summed into the loss the
    optimizer steps on: a whole training step's forward, with the head's
    target assignment, on random ground truth (the codebase's
    ``train_samples``)."""

    def __init__(self, model: nn.Module, samples: list):
        super().__init__()
        self.model = model
        self.samples = samples

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        losses = self.model(inputs, self.samples, mode='loss')
        return self.model.parse_losses(losses)[0]


def build_config_model(cfg, batch, shape, settings):
    """The config's model, ready to time as ``settings`` say: its
    backbone's ``channels_last`` set to theirs, EMOv2's LayerScales as
    trained ones could be; in tensor mode for inference, in loss mode
    (:class:`LossMode`) for a training step."""
    cfg = copy.deepcopy(cfg)
    if 'channels_last' in cfg.model.get('backbone', {}):
        cfg.model.backbone.channels_last = settings.channels_last
    model = build_model(cfg)
    set_layer_scales(model)
    if not settings.train:
        return prepare(TensorMode(model), settings)
    samples = get_codebase(cfg.default_scope).train_samples(
        model, batch, *shape,
        torch.Generator().manual_seed(0))
    samples = [sample.to(settings.device) for sample in samples]
    return prepare(LossMode(model, samples), settings)


def time_config(cfg, batch, shape, variants):
    """``{name: Timing}`` of the config's model run as each of
    ``variants`` (``{name: Settings}``) says, runs interleaved; the peak is
    the CUDA allocator's over one more run alone (None on the CPU)."""
    runs = {}
    for name, settings in variants.items():
        model = build_config_model(cfg, batch, shape, settings)
        runs[name] = step_fn(model, make_input(batch, shape, settings),
                             settings)
    settings = next(iter(variants.values()))
    stats = time_runs(runs, settings)
    for name, run in runs.items():
        peak = None
        if settings.device.startswith('cuda'):
            torch.cuda.reset_peak_memory_stats()
            run()
            _sync(settings.device)
            peak = torch.cuda.max_memory_allocated() / 2**20
        stats[name] = stats[name]._replace(peak=peak)
    return stats


def make_input(batch, size, settings):
    """A random batch; ``size`` is a side or (H, W)."""
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(batch, 3, h, w, device=settings.device)
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def step_fn(model, x, settings):
    """One timed unit: inference, or forward + backward + SGD step; it
    returns the model's output (a training step's: before the backward)."""
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(settings.dtype)
    device_type = 'cuda' if settings.device.startswith('cuda') else 'cpu'
    optimizer = (
        torch.optim.SGD(model.parameters(), lr=1e-6)
        if settings.train else None)

    def run():
        with torch.autocast(
                device_type, dtype=dtype, enabled=dtype is not None):
            if not settings.train:
                with torch.no_grad():
                    return model(x)
            out = model(x)
        loss = out if isinstance(out, torch.Tensor) else torch.cat(
            [o.float().flatten(1) for o in out], 1)
        loss.float().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out

    return run


def time_models(models, batch, size, settings):
    """``{name: Timing}`` of the models, runs interleaved."""
    return time_runs(
        {
            name:
            step_fn(
                prepare(model, settings), make_input(batch, size, settings),
                settings)
            for name, model in models
        }, settings)


def time_runs(runs, settings):
    """``{name: Timing}`` of the callables in ``runs``, which return the
    model's output."""
    for _ in range(settings.warmup):
        for run in runs.values():
            run()
    times = {name: [] for name in runs}
    seen = {}
    for _ in range(settings.repeat):
        for name, run in runs.items():
            _sync(settings.device)
            start = time.perf_counter()
            out = run()
            _sync(settings.device)
            times[name].append((time.perf_counter() - start) * 1e3)
            seen[name] = (torch.get_num_threads(), dtype_of(out))
    stats = {}
    for name, values in times.items():
        q1, median, q3 = statistics.quantiles(values, n=4)
        stats[name] = Timing(median, q1, q3, *seen[name])
    return stats


# Row suffixes of the exported models, by runtime.
RUNTIME_TAGS = {
    'ONNX Runtime': 'ORT',
    'OpenVINO': 'OpenVINO',
    'ExecuTorch': 'ExecuTorch'
}


def time_runtime(models, batch, size, settings, runtime='ONNX Runtime'):
    """Like :func:`time_models`, for the models exported to ONNX (by
    tools/deployment/export_onnx.py, dynamic axes) and run at the
    benchmark's shape on the CPU by ``runtime``: ONNX Runtime, or OpenVINO
    (the ONNX file converted to IR, the shape fixed, fp32 arithmetic and
    the LATENCY hint), or ExecuTorch (a program for this shape, XNNPACK,
    :func:`~emo_mm.mobile.lower_to_executorch`), with the settings'
    thread count."""
    import tempfile
    x = torch.randn(batch, 3, size, size).numpy()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models:
            if runtime == 'ExecuTorch':
                # XNNPACK's lowering takes NCHW weights (the PyTorch rows
                # may have made them NHWC); its program runs NHWC inside.
                model = prepare(model, replace(settings, channels_last=False))
                program, _, _ = lower_to_executorch(
                    model.to(memory_format=torch.contiguous_format),
                    torch.from_numpy(x))
                run = executorch_runner(program, settings.threads)
                runs[f'{name} [{RUNTIME_TAGS[runtime]}]'] = (
                    lambda run=run: run(x))
                continue
            path = os.path.join(tmp, 'model.onnx')
            export_onnx(
                prepare(model, settings), (size, size), ['features'],
                path,
                opset=17)
            if runtime == 'OpenVINO':
                export_openvino(path, os.path.join(tmp, 'model.xml'))
                run = openvino_runner(
                    os.path.join(tmp, 'model.xml'),
                    settings.threads,
                    x.shape,
                    latency=batch == 1)
            else:
                run = onnxruntime_runner(path, settings.threads)
            runs[f'{name} [{RUNTIME_TAGS[runtime]}]'] = (
                lambda run=run: run(x))
    return time_runs(runs, settings)


def _build_one(name, tier, size):
    """The model of row ``name`` (:func:`build_tier`), built alone."""
    return dict(build_tier(tier, size, (name.split('-')[0], )))[name]


def _status_mb(field):
    """``field`` of /proc/self/status (VmRSS, VmHWM) in MB."""
    with open('/proc/self/status') as f:
        return next(
            int(line.split()[1])
            for line in f if line.startswith(field + ':')) / 1024


def _peak_child(name, tier, size, batch, settings, queue):
    torch.set_num_threads(settings.threads)
    # The libraries are imported (the server's preload): from here on, what
    # the model needs. A write of 5 to clear_refs resets VmHWM, this
    # process's own peak (not ru_maxrss, which Linux carries over a fork),
    # to the resident size now.
    baseline = _status_mb('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    model = _build_one(name, tier, size)
    run = step_fn(
        prepare(model, settings), make_input(batch, size, settings), settings)
    for _ in range(2):
        run()
    queue.put(_status_mb('VmHWM') - baseline)


def peak_memory_mb(name, tier, size, batch, settings):
    """Peak memory (MB) of training the row ``name`` of ``tier``: the CUDA
    allocator's, or on the CPU what the model adds to a child process's
    resident memory at its peak (model, gradients, activations)."""
    if settings.device.startswith('cuda'):
        model = _build_one(name, tier, size)
        torch.cuda.reset_peak_memory_stats()
        step_fn(
            prepare(model, settings), make_input(batch, size, settings),
            settings)()
        _sync(settings.device)
        return torch.cuda.max_memory_allocated() / 2**20
    # Children fork from a server that imported the libraries once: spawned
    # afresh, each would import them again (10-20 s apiece on 2 cores).
    context = mp.get_context('forkserver')
    context.set_forkserver_preload([__name__, 'mmpretrain.models.backbones'])
    queue = context.Queue()
    child = context.Process(
        target=_peak_child, args=(name, tier, size, batch, settings, queue))
    child.start()
    child.join()
    return queue.get() if child.exitcode == 0 else float('nan')
