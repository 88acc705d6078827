"""The learning-rate schedule of the authors' ImageNet runs, for mmengine."""
import math
from typing import Optional, Sequence

import torch
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmengine.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class TimmCosineLR(LRSchedulerMixin, _ParamScheduler):
    """timm's ``CosineLRScheduler`` (one cycle) as an mmengine scheduler.

    The authors trained EMO on ImageNet with timm's cosine schedule stepped
    once per iteration. It differs from mmengine's ``LinearLR`` followed by
    ``CosineAnnealingLR`` in two ways that this class reproduces:

    - the cosine runs over the whole schedule, warm-up included (timm's
      ``warmup_prefix=False``): after the warm-up the lr is already
      ``eta_min + (base - eta_min) * (1 + cos(pi * warmup / total)) / 2``
      rather than the peak;
    - learning-rate noise (timm's ``lr_noise``): at step ``t`` inside
      ``noise_range`` a generator seeded with ``noise_seed + t`` draws
      ``noise_std`` -scaled normal numbers until one is smaller than
      ``noise_pct`` in magnitude, and the lr becomes ``lr * (1 + noise)``.

    The value is computed in closed form from the step, so a resumed run
    continues the same sequence, noise included.

    Args:
        optimizer: Wrapped optimizer.
        warmup (int): Length of the linear warm-up, in the unit of ``begin``
            and ``end`` (epochs when ``by_epoch``; converted with them by
            ``convert_to_iter_based``). Defaults to 0.
        warmup_start_factor (float): Warm-up start as a fraction of the base
            lr, so that it scales with ``auto_scale_lr`` as the authors'
            trainer scaled it. Defaults to 0.
        eta_min (float, optional): Floor of the cosine, absolute.
        eta_min_ratio (float, optional): Floor as a fraction of the base lr
            (scales with ``auto_scale_lr``). Give exactly one of the two.
        noise_range (sequence of 2 floats, optional): ``(start, stop)`` of
            the noisy steps as fractions of the schedule's length, timm's
            ``lr_noise``; None for no noise. Defaults to None.
        noise_pct (float): Largest magnitude of the noise. Defaults to 0.67.
        noise_std (float): Scale of the normal draws. Defaults to 1.0.
        noise_seed (int): Base seed of the noise. Defaults to 42.
        begin, end, last_step, by_epoch, verbose: as for every mmengine
            scheduler; ``end`` must be finite (it sets the cosine's length).
    """

    def __init__(self,
                 optimizer,
                 warmup: int = 0,
                 warmup_start_factor: float = 0.,
                 eta_min: Optional[float] = None,
                 eta_min_ratio: Optional[float] = None,
                 noise_range: Optional[Sequence[float]] = None,
                 noise_pct: float = 0.67,
                 noise_std: float = 1.0,
                 noise_seed: int = 42,
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 by_epoch: bool = True,
                 verbose: bool = False):
        if end >= INF:
            raise ValueError('TimmCosineLR needs a finite end (the cosine '
                             f'runs from begin to end), got end={end}')
        total = end - begin
        if not 0 <= warmup < total:
            raise ValueError(f'warmup={warmup} must be in [0, end - begin = '
                             f'{total})')
        if (eta_min is None) == (eta_min_ratio is None):
            raise ValueError(f'give exactly one of eta_min and eta_min_ratio '
                             f'(got eta_min={eta_min}, '
                             f'eta_min_ratio={eta_min_ratio})')
        if noise_range is not None:
            noise_range = tuple(noise_range)
            if len(noise_range) != 2 or not (0 <= noise_range[0] <
                                             noise_range[1] <= 1):
                raise ValueError(f'noise_range={noise_range!r} must be '
                                 f'(start, stop) with 0 <= start < stop <= '
                                 f'1, fractions of the schedule, or None')
        if noise_pct <= 0:
            raise ValueError(f'noise_pct={noise_pct} must be positive')
        self.total = total
        self.warmup = warmup
        self.warmup_start_factor = warmup_start_factor
        self.eta_min = eta_min
        self.eta_min_ratio = eta_min_ratio
        # Step bounds as timm computes them (fractions times the length).
        self.noise_steps = None if noise_range is None else tuple(
            fraction * total for fraction in noise_range)
        self.noise_pct = noise_pct
        self.noise_std = noise_std
        self.noise_seed = noise_seed
        super().__init__(
            optimizer,
            begin=begin,
            end=end,
            last_step=last_step,
            by_epoch=by_epoch,
            verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls,
                              *args,
                              warmup=0,
                              begin=0,
                              end=INF,
                              by_epoch=True,
                              epoch_length=None,
                              **kwargs):
        """Epoch-based arguments to iterations; ``warmup`` too."""
        if not by_epoch or not epoch_length or epoch_length <= 0:
            raise ValueError(f'convert_to_iter_based needs by_epoch=True and '
                             f'a positive epoch_length (got by_epoch='
                             f'{by_epoch}, epoch_length={epoch_length})')
        return cls(
            *args,
            warmup=int(warmup * epoch_length),
            begin=int(begin * epoch_length),
            end=end if end >= INF else int(end * epoch_length),
            by_epoch=False,
            **kwargs)

    def _noise(self, step: int) -> float:
        if self.noise_steps is None or not (self.noise_steps[0] <= step <
                                            self.noise_steps[1]):
            return 0.
        generator = torch.Generator()
        generator.manual_seed(self.noise_seed + step)
        while True:  # rejection sampling; |noise| < pct is likely (~50%)
            noise = torch.randn(1, generator=generator).item() * self.noise_std
            if abs(noise) < self.noise_pct:
                return noise

    def _get_value(self):
        step = self.last_step  # counts from 0 at `begin`
        noise = self._noise(step)
        values = []
        for base in self.base_values:
            if step < self.warmup:
                start = base * self.warmup_start_factor
                # timm's order of operations, for identical floats.
                value = start + step * ((base - start) / self.warmup)
            else:
                floor = (
                    self.eta_min if self.eta_min_ratio is None else base *
                    self.eta_min_ratio)
                value = floor + 0.5 * (base - floor) * (
                    1 + math.cos(math.pi * step / self.total))
            values.append(value + value * noise)
        return values
