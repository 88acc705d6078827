"""Distributed training on CPUs (gloo), where PyTorch's DDP recipe assumes
GPUs.

Two things stand in the way of ``torchrun ... tools/train.py --launcher
pytorch`` on a machine without GPUs, and both are handled here:

* mmengine's ``init_dist`` calls ``torch.cuda.set_device`` whatever the
  backend; :func:`init_cpu_process_group` starts the gloo group itself, so the
  runner finds one already running and skips ``init_dist``.
* ``nn.SyncBatchNorm`` refuses CPU tensors and DDP refuses ``device_ids`` for
  a CPU module; :class:`CPUDistributedDataParallel` swaps every SyncBN for
  :class:`GlooSyncBatchNorm` and wraps the model without device ids.

On GPUs nothing here is used.
"""
import atexit
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch.distributed.nn.functional import all_reduce
from torch.nn.modules.batchnorm import _BatchNorm


def init_cpu_process_group(timeout_s: int = 1800) -> None:
    """Join the gloo process group described by torchrun's environment."""
    missing = [
        k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
        if k not in os.environ
    ]
    if missing:
        raise RuntimeError(f'a CPU process group needs {missing} in the '
                           'environment; start the processes through '
                           'torchrun (tools/dist_train.sh)')
    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo', timeout=timedelta(seconds=timeout_s))
        # Left to interpreter shutdown, gloo's threads can outlive the group
        # and abort the process ("terminate called without an active
        # exception", seen under load after a finished test run).
        atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def close_cpu_process_group() -> None:
    """After a run that ended well: wait for every rank, then leave the
    group. A rank that tears its connections down while another still uses
    them makes gloo's threads there abort the process ("terminate called
    without an active exception"). Not at exit: a rank that failed would
    wait here for ranks stuck in a collective."""
    if dist.is_initialized() and dist.get_backend() == 'gloo':
        dist.barrier()
        dist.destroy_process_group()


class GlooSyncBatchNorm(_BatchNorm):
    """Synchronized BatchNorm for any device and backend.

    In training, with a process group of more than one process, the batch
    statistics are the mean and variance over the samples of every process
    (two all-reduces of per-channel sums, in fp32); the all-reduces are
    differentiable, so gradients flow across processes as in
    ``nn.SyncBatchNorm``. Otherwise
    it is a plain BatchNorm. Running statistics get the unbiased variance,
    as in PyTorch.
    """

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f'expected at least 2D input (got '
                             f'{input.dim()}D input)')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available()
                and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.size(1)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, channels] + [1] * (x.dim() - 2)
        xf = x.float()  # statistics in fp32, also under autocast
        # Two passes (mean, then squared deviations) rather than E[x^2] -
        # E[x]^2, which cancels badly when the mean is large.
        local_count = xf.new_tensor([x.numel() / channels])
        sums = all_reduce(torch.cat([xf.sum(dims), local_count]))
        count = sums[-1]
        mean = sums[:channels] / count
        centered = xf - mean.view(shape)
        var = all_reduce((centered * centered).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / self.num_batches_tracked.item()
                            if self.momentum is None else self.momentum)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(unbiased, momentum)
        y = centered * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every ``nn.SyncBatchNorm`` in ``module`` (state kept)."""
        if isinstance(module, nn.SyncBatchNorm):
            new = cls(module.num_features, module.eps, module.momentum,
                      module.affine, module.track_running_stats)
            new.load_state_dict(module.state_dict())
            new.train(module.training)
            new.requires_grad_(
                any(p.requires_grad for p in module.parameters()))
            return new
        for name, child in module.named_children():
            new_child = cls.convert(child)
            if new_child is not child:
                setattr(module, name, new_child)
        return module


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for CPU processes (gloo).

    The runner passes ``device_ids=[LOCAL_RANK]``, which DDP rejects for a
    CPU module, so they are dropped; SyncBN layers become
    :class:`GlooSyncBatchNorm`.
    """

    def __init__(self, module: nn.Module, device_ids=None, **kwargs):
        module = GlooSyncBatchNorm.convert(module)
        kwargs.setdefault('broadcast_buffers', False)
        super().__init__(module=module, device_ids=None, **kwargs)


def use_cpu_ddp(cfg) -> None:
    """Point a config at the CPU DDP wrapper (keeping its other options)."""
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    if wrapper.get(
            'type',
            'MMDistributedDataParallel') not in ('MMDistributedDataParallel',
                                                 'CPUDistributedDataParallel'):
        raise RuntimeError(f'model_wrapper_cfg type {wrapper["type"]} has no '
                           'CPU variant; run on GPUs or drop it')
    wrapper['type'] = 'CPUDistributedDataParallel'
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper


__all__ = [
    'CPUDistributedDataParallel', 'GlooSyncBatchNorm',
    'init_cpu_process_group', 'use_cpu_ddp'
]
