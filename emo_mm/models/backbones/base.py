"""What the EMO and EMOv2 backbones share: their arguments, weight loading,
freezing, deployment and forward over ``stages`` (stem first)."""
import copy
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoint import FAMILIES, load_backbone_checkpoint
from ..layers import NORM_EPS, LayerNorm2d


class EMOBackbone(BaseModule):
    """Base of :class:`EMO` and :class:`EMOv2`.

    A subclass sets :attr:`family`, :attr:`arch_settings` and
    :attr:`arch_choices`, builds ``self.stages`` (an ``nn.ModuleList``: the
    stem, then the four stages) and, for ``final_norm``, ``self.norm``; the
    arguments common to both are parsed and checked here.
    """
    family = ''
    arch_settings: Dict[str, dict] = {}
    # Allowed values of per-stage arch entries that take names.
    arch_choices = dict(norm_types=('BN', 'LN2d'))
    num_stages = 4

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The checkpoint checks name the variants of every family.
        FAMILIES[cls.family] = cls.arch_settings

    def __init__(self,
                 arch: Union[str, dict],
                 out_indices: Union[int, Sequence[int]],
                 window_size: Union[int, Sequence[int]],
                 drop_path_rate: float,
                 frozen_stages: int,
                 norm_eval: bool,
                 norm_cfg: dict,
                 final_norm: bool,
                 channels_last: bool,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[dict, list]] = None):
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('give either pretrained or init_cfg, not '
                                 'both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        self.arch_name, self.arch = self._parse_arch(arch)
        self.out_indices = self._parse_out_indices(out_indices)
        self.window_sizes = self._parse_window_size(window_size)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages={frozen_stages} is out of range;'
                             f' allowed: -1 (none) to {self.num_stages}')
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f'drop_path_rate={drop_path_rate} must be in '
                             '[0, 1)')
        depths = self.arch['depths']
        # Stochastic depth rises linearly over the blocks of stages 1-4.
        self.drop_path_rates = torch.linspace(0, drop_path_rate,
                                              sum(depths)).tolist()
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.final_norm = final_norm
        self.channels_last = channels_last
        self.deploy = False
        self.bn_cfg = {'eps': NORM_EPS, **norm_cfg}

    # ------------------------------------------------------------------ args
    def stage_norm_cfg(self, i: int) -> dict:
        """The norm of stage ``i`` (0-3): ``norm_cfg`` or a LayerNorm2d."""
        if self.arch['norm_types'][i] == 'BN':
            return self.bn_cfg
        return dict(type=LayerNorm2d, eps=NORM_EPS)

    def stage_act_cfg(self, i: int) -> dict:
        return dict(type=self.arch['act_types'][i])

    def build_final_norm(self) -> None:
        """The classifier's last norm (``final_norm``), over the output of
        stage 4."""
        if self.final_norm:
            self.norm = build_norm_layer(
                self.stage_norm_cfg(self.num_stages - 1),
                self.arch['channels'][-1])[1]

    def _parse_arch(self, arch) -> Tuple[str, Dict]:
        family = self.family
        required = set(next(iter(self.arch_settings.values())))
        if isinstance(arch, str):
            name = arch.lower()
            if name not in self.arch_settings:
                raise ValueError(
                    f'unknown {family} arch {arch!r}; allowed: '
                    f'{list(self.arch_settings)} or a dict with keys '
                    f'{sorted(required)}')
            return name, copy.deepcopy(self.arch_settings[name])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or dict, got '
                            f'{type(arch).__name__}')
        missing = required - set(arch)
        if missing:
            raise ValueError(f'{family} arch dict misses keys '
                             f'{sorted(missing)}; required: '
                             f'{sorted(required)}')
        unknown = set(arch) - required
        if unknown:
            raise ValueError(f'{family} arch dict has unknown keys '
                             f'{sorted(unknown)}; allowed: '
                             f'{sorted(required)}')
        arch = copy.deepcopy(dict(arch))
        for key, value in arch.items():
            if isinstance(value, (list, tuple)) and \
                    len(value) != self.num_stages:
                raise ValueError(f'arch[{key!r}] needs {self.num_stages} '
                                 f'entries (one per stage), got {value}')
        for key, allowed in self.arch_choices.items():
            bad = set(arch[key]) - set(allowed)
            if bad:
                raise ValueError(f'arch {key} {sorted(bad)} unknown; '
                                 f'allowed: {list(allowed)}')

        def same(a, b):
            return (tuple(a) == tuple(b)
                    if isinstance(a, (list, tuple)) else a == b)

        for name, settings in self.arch_settings.items():
            if all(same(arch[k], settings[k]) for k in required):
                return name, arch
        return 'custom', arch

    def _parse_out_indices(self, out_indices) -> Tuple[int, ...]:
        num_outs = self.num_stages + 1
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, Sequence) or not out_indices:
            raise ValueError(f'out_indices must be a non-empty int sequence, '
                             f'got {out_indices!r}')
        indices = []
        for index in out_indices:
            if not isinstance(index, int) or not -num_outs <= index < num_outs:
                raise ValueError(
                    f'out_indices entry {index!r} is out of range; allowed: '
                    f'0 (stem) to {num_outs - 1}, or -{num_outs} to -1')
            indices.append(index % num_outs)
        return tuple(sorted(set(indices)))

    def _parse_window_size(self, window_size) -> Tuple[int, ...]:
        if isinstance(window_size, int):
            window_size = [window_size] * self.num_stages
        if (not isinstance(window_size, Sequence)
                or len(window_size) != self.num_stages):
            raise ValueError(f'window_size must be an int or {self.num_stages}'
                             f' ints (one per stage), got {window_size!r}')
        for size in window_size:
            if not isinstance(size, int) or size <= 0:
                raise ValueError(f'window_size {size!r} must be a positive '
                                 f'int, got {window_size!r}')
        return tuple(window_size)

    # --------------------------------------------------------------- weights
    def init_weights(self):
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            # mmengine's Pretrained loader knows neither the authors' key
            # layout nor our variant check, so we load ourselves.
            load_backbone_checkpoint(self, init_cfg['checkpoint'],
                                     prefix=init_cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()
        self.init_from_scratch()

    def init_from_scratch(self) -> None:
        """Extra initialisation when no weights are loaded."""

    # ------------------------------------------------------------- training
    def _freeze_stages(self):
        for stage in self.stages[:self.frozen_stages + 1]:
            stage.eval()
            for param in stage.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    @torch.no_grad()
    def switch_to_deploy(self):
        """Fold every BatchNorm into the convolution next to it (and, in
        EMOv2, each LayerScale into its projection).

        For inference only (call it after loading weights, in eval mode):
        the outputs stay the same up to float rounding (tested against the
        authors' outputs) while 2-3 memory-bound passes per block go away.
        The module layout changes, so save checkpoints before, not after.
        """
        # Listed first: folding replaces submodules.
        blocks = [m for m in self.modules()
                  if m is not self and hasattr(m, 'switch_to_deploy')]
        for block in blocks:
            block.switch_to_deploy()
        self.deploy_stem()
        self.deploy = True

    def deploy_stem(self) -> None:
        """Fold the stem's BatchNorms (the blocks fold their own)."""

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outs = []
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(self.norm(x) if self.final_norm and i == last
                            else x)
        return tuple(outs)
