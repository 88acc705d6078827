"""What the EMO and EMOv2 backbones share: their arguments, weight loading,
freezing, deployment and forward over ``stages`` (stem first)."""
import copy
import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoint import load_backbone_checkpoint
from ..layers import NORM_EPS, LayerNorm2d, is_exporting

# Both families: stages 1-2 without attention (BN, SiLU), 3-4 with it (LN,
# GELU).
HYBRID_STAGES = dict(
    attn_stages=(False, False, True, True),
    norm_types=('BN', 'BN', 'LN2d', 'LN2d'),
    act_types=('SiLU', 'SiLU', 'GELU', 'GELU'))


def arch_table(names: Sequence[str], shared: dict,
               **columns: Sequence) -> Dict[str, dict]:
    """``arch_settings`` from a table of variants: entry ``names[i]`` holds
    column ``i`` of every one of ``columns`` and the ``shared`` values."""
    return {
        name: dict(shared, **{
            key: column[i]
            for key, column in columns.items()
        })
        for i, name in enumerate(names)
    }


class EMOBackbone(BaseModule):
    """Base of :class:`EMO` and :class:`EMOv2`: the arguments they share,
    weight loading, freezing, folding and the forward over ``stages``.

    A subclass sets :attr:`family` (the name it registers under) and
    :attr:`arch_settings`, then builds its stem and calls
    :meth:`build_stages` with its block.

    Args:
        arch (str | dict): A name of :attr:`arch_settings` or a dict with
            every key of its entries: ``depths``, ``stem_channels``,
            ``channels``, ``exp_ratios``, ``head_dims``, ``dw_kernel_sizes``,
            ``attn_stages``, ``norm_types`` (``'BN'`` uses ``norm_cfg``,
            ``'LN2d'`` a channel LayerNorm) and ``act_types`` (one per stage
            each).
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int] | int): Outputs to return: 0 is the stem
            (stride 2), 1-4 the stages (strides 4-32); negative indices count
            from the end. Defaults to ``(1, 2, 3, 4)``.
        window_size (int | Sequence[int]): Attention window, one for all or
            one per stage (used by the attending stages). Defaults to 7.
        drop_path_rate (float): Stochastic depth rate, rising linearly over
            the blocks of stages 1-4. Defaults to 0.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and
            stages 1..k (eval mode, no gradient). Defaults to -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode during
            training. Defaults to False.
        norm_cfg (dict): Config of the BatchNorm layers, e.g.
            ``dict(type='SyncBN')``; ``eps`` defaults to the authors' 1e-6
            when not given. Defaults to ``dict(type='BN', eps=1e-6)``.
        final_norm (bool): Apply the last stage's norm to the stride-32
            output, as the authors' classifier does before pooling.
            Defaults to False.
        fused_attn (bool): Use ``F.scaled_dot_product_attention`` for the
            window attention; otherwise the explicit softmax(q k^T) v (same
            values). Defaults to True.
        pointwise_as_matmul (bool): On a CPU in eval mode, run the 1x1
            projections of small channels-last maps as matrix products
            (:class:`~emo_mm.models.layers.PointwiseConv`); elsewhere they
            are convolutions either way. Defaults to True.
        channels_last (bool): Run in the channels-last (NHWC) memory format:
            the input is converted once, every layer keeps the format, and
            the outputs are channels-last tensors of the same NCHW shape and
            values. On CPUs it makes the 1x1 convolutions several times
            faster (``tools/analysis/benchmark.py``). Defaults to False.
        pretrained (str, optional): Deprecated spelling of
            ``init_cfg=dict(type='Pretrained', checkpoint=...)``, passed by
            mmseg's ``EncoderDecoder``. Defaults to None.
        init_cfg (dict | list[dict], optional): Initialization config. With
            ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` both the
            authors' ImageNet checkpoints and emo_mm checkpoints load; see
            :func:`emo_mm.models.checkpoint.load_backbone_checkpoint`.
            Defaults to None.
    """
    family = ''
    arch_settings: Dict[str, dict] = {}
    # Allowed values of per-stage arch entries that take names.
    arch_choices = dict(norm_types=('BN', 'LN2d'))
    num_stages = 4

    def __init__(self,
                 arch: Union[str, dict],
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (1, 2, 3, 4),
                 window_size: Union[int, Sequence[int]] = 7,
                 drop_path_rate: float = 0.0,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: dict = dict(type='BN', eps=NORM_EPS),
                 final_norm: bool = False,
                 fused_attn: bool = True,
                 pointwise_as_matmul: bool = True,
                 channels_last: bool = False,
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
        self.in_channels = in_channels
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.final_norm = final_norm
        self.fused_attn = fused_attn
        self.pointwise_as_matmul = pointwise_as_matmul
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

    def build_stem_conv(self, norm_cfg: dict,
                        act_cfg: Optional[dict]) -> ConvModule:
        """The stem's first layer: a 3x3 stride-2 convolution and its norm.
        The authors' convolution has a bias before the norm; it is kept so
        that their checkpoints load."""
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', 'Unnecessary conv bias')
            return ConvModule(
                self.in_channels,
                self.arch['stem_channels'],
                3,
                stride=2,
                padding=1,
                bias=True,
                norm_cfg=norm_cfg,
                act_cfg=act_cfg)

    def build_stages(self, stem: nn.Module,
                     block: Callable[..., nn.Module]) -> None:
        """Set ``self.stages``: ``stem``, then the four stages of ``block``
        (called with keyword arguments only) as the arch gives them. The
        first block of each stage downsamples: stride 2, twice the
        expansion, no skip and no attention. Then the final norm, if any,
        and the frozen stages."""
        arch = self.arch
        self.stages = nn.ModuleList([stem])
        in_channels = arch['stem_channels']
        drop_path_rates = iter(self.drop_path_rates)
        for i, depth in enumerate(arch['depths']):
            blocks = []
            for j in range(depth):
                first = j == 0
                blocks.append(
                    block(
                        in_channels=in_channels,
                        out_channels=arch['channels'][i],
                        exp_ratio=arch['exp_ratios'][i] * (2 if first else 1),
                        stride=2 if first else 1,
                        dw_kernel_size=arch['dw_kernel_sizes'][i],
                        has_skip=not first,
                        norm_cfg=self.stage_norm_cfg(i),
                        act_cfg=self.stage_act_cfg(i),
                        with_attn=arch['attn_stages'][i] and not first,
                        head_dim=arch['head_dims'][i],
                        window_size=self.window_sizes[i],
                        drop_path_rate=next(drop_path_rates),
                        fused_attn=self.fused_attn,
                        as_matmul=self.pointwise_as_matmul))
                in_channels = arch['channels'][i]
            self.stages.append(nn.Sequential(*blocks))
        self.out_channels = (arch['stem_channels'], *arch['channels'])
        if self.final_norm:
            # The classifier's last norm, over the output of stage 4.
            self.norm = build_norm_layer(
                self.stage_norm_cfg(self.num_stages - 1),
                arch['channels'][-1])[1]
        self._freeze_stages()

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
            return (tuple(a) == tuple(b) if isinstance(a, (list,
                                                           tuple)) else a == b)

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
            load_backbone_checkpoint(
                self, init_cfg['checkpoint'], prefix=init_cfg.get('prefix'))
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
        blocks = [
            m for m in self.modules()
            if m is not self and hasattr(m, 'switch_to_deploy')
        ]
        for block in blocks:
            block.switch_to_deploy()
        self.deploy_stem()
        self.deploy = True

    def deploy_stem(self) -> None:
        """Fold the stem's BatchNorms (the blocks fold their own)."""

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        # An exported graph leaves the memory format to its runtime (XNNPACK
        # runs NHWC throughout); a conversion in it would be left outside.
        if self.channels_last and not is_exporting():
            x = x.contiguous(memory_format=torch.channels_last)
        outs = []
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(
                    self.norm(x) if self.final_norm and i == last else x)
        return tuple(outs)
