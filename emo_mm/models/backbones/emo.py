"""EMO: Efficient MOdel built from inverted Residual Mobile Blocks (iRMB).

Zhang et al., "Rethinking Mobile Block for Efficient Attention-based Models",
ICCV 2023 (arXiv 2301.01146).
"""
import copy
import warnings
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoint import load_backbone_checkpoint

# The authors' model uses eps=1e-6 in every BatchNorm and LayerNorm.
NORM_EPS = 1e-6


def _is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out NHWC (and not also NCHW, e.g. when C=1)."""
    return (x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous())


def _bn_affine(bn: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` with ``bn(x) == x * scale + shift`` in eval mode."""
    if bn.running_var is None:
        raise ValueError('cannot fold a BatchNorm without running statistics '
                         '(track_running_stats=False)')
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def fuse_conv_bn(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """One convolution (with bias) computing ``bn(conv(x))`` in eval mode."""
    scale, shift = _bn_affine(bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                      conv.stride, conv.padding, conv.dilation, conv.groups,
                      bias=True).to(conv.weight)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else 0
    fused.bias.copy_(bias * scale + shift)
    return fused


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation gate (used once, in the stem block).

    Args:
        channels (int): Input and output channels.
        reduced_channels (int): Channels of the bottleneck.
        act_cfg (dict): Activation after the reduction.
    """

    def __init__(self, channels: int, reduced_channels: int, act_cfg: dict):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced_channels, 1)
        self.act = build_activation_layer(act_cfg)
        self.conv_expand = nn.Conv2d(reduced_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = self.conv_expand(self.act(self.conv_reduce(gate)))
        return x * gate.sigmoid()


class WindowAttention(nn.Module):
    """EW-MHSA's attention: multi-head self-attention inside windows.

    Queries and keys come from a 1x1 convolution of the input; the values are
    the input itself (the authors' ``attn_pre=True``: the value projection
    runs after attention, in :class:`iRMB`).

    The partition follows the authors' model: the map is zero-padded on the
    right and bottom to a multiple of ``window_size``, and window ``(i, j)``
    gathers the tokens at rows ``i, i + n_h, i + 2 n_h, ...`` and columns
    ``j, j + n_w, ...``, where ``n_h x n_w`` is the number of windows. So every
    window is a ``window_size x window_size`` grid spread over the whole map,
    and padded tokens take part in attention unmasked.

    Args:
        channels (int): Input channels.
        head_dim (int): Channels per head; must divide ``channels``.
        window_size (int): Tokens per window side.
        fused_attn (bool): Use ``F.scaled_dot_product_attention``; otherwise
            the explicit softmax(q k^T) v. Defaults to True.
    """

    def __init__(self,
                 channels: int,
                 head_dim: int,
                 window_size: int,
                 fused_attn: bool = True):
        super().__init__()
        if channels % head_dim:
            raise ValueError(f'head_dim={head_dim} must divide the stage '
                             f'width {channels}')
        self.num_heads = channels // head_dim
        self.head_dim = head_dim
        self.window_size = window_size
        self.scale = head_dim**-0.5
        self.fused_attn = fused_attn
        self.qk = nn.Conv2d(channels, channels * 2, 1)

    def _to_windows(self, x: torch.Tensor, num_h: int,
                    num_w: int) -> torch.Tensor:
        """(B, G*C', Hp, Wp) -> (G, B*num_h*num_w, heads, ws*ws, head_dim).

        ``G`` is 2 for the stacked q/k and 1 for the values. A channels-last
        input is read through its (B, H, W, C) view, so that either memory
        format costs one copy.
        """
        B, C, _, _ = x.shape
        ws, heads, dim = self.window_size, self.num_heads, self.head_dim
        groups = C // (heads * dim)
        # Row index = r * num_h + window_row (and likewise for columns).
        if _is_channels_last(x):
            x = x.permute(0, 2, 3, 1).view(B, ws, num_h, ws, num_w, groups,
                                           heads, dim)
            x = x.permute(5, 0, 2, 4, 6, 1, 3, 7)
        else:
            x = x.view(B, groups, heads, dim, ws, num_h, ws, num_w)
            x = x.permute(1, 0, 5, 7, 2, 4, 6, 3)
        return x.reshape(groups, B * num_h * num_w, heads, ws * ws, dim)

    def _from_windows(self, x: torch.Tensor, batch: int, num_h: int,
                      num_w: int, channels_last: bool) -> torch.Tensor:
        """(B*num_h*num_w, heads, ws*ws, head_dim) -> (B, C, Hp, Wp), in
        the input's memory format."""
        ws, heads, dim = self.window_size, self.num_heads, self.head_dim
        x = x.view(batch, num_h, num_w, heads, ws, ws, dim)
        if channels_last:
            x = x.permute(0, 4, 1, 5, 2, 3, 6)  # (B, ws, nh, ws, nw, heads, d)
            x = x.reshape(batch, ws * num_h, ws * num_w, heads * dim)
            return x.permute(0, 3, 1, 2)
        x = x.permute(0, 3, 6, 4, 1, 5, 2)  # (B, heads, dim, ws, nh, ws, nw)
        return x.reshape(batch, heads * dim, ws * num_h, ws * num_w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        ws = self.window_size
        pad_h, pad_w = -H % ws, -W % ws
        # While tracing (ONNX export) sizes are tensors and a Python ``if``
        # would freeze the branch taken at the traced size: always pad then
        # (a zero pad is a no-op), so the graph serves every input size.
        tracing = torch.jit.is_tracing()
        if tracing or pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        num_h, num_w = (H + pad_h) // ws, (W + pad_w) // ws

        # qk is pointwise, so it can run before the partition (padded tokens
        # get the bias, exactly as when it runs on each padded window).
        q, k = self._to_windows(self.qk(x), num_h, num_w).unbind(0)
        v = self._to_windows(x, num_h, num_w)[0]  # (b, heads, N, dim)
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale  # (b, heads, N, N)
            out = attn.softmax(dim=-1) @ v
        out = self._from_windows(out, B, num_h, num_w, _is_channels_last(x))
        if tracing or pad_h or pad_w:
            out = out[:, :, :H, :W]
        return out


class iRMB(nn.Module):
    """Inverted Residual Mobile Block.

    norm -> (window attention) -> 1x1 expansion + act -> depthwise conv + BN +
    SiLU (+ inner skip) -> 1x1 projection (+ outer skip with drop path).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        exp_ratio (float): Expansion ratio of the middle width. Defaults to 1.
        stride (int): Stride of the depthwise convolution. Defaults to 1.
        dw_kernel_size (int): Depthwise kernel size. Defaults to 3.
        has_skip (bool): Residual connections (only when the shape is kept).
            Defaults to True.
        norm_cfg (dict, optional): Pre-norm; None for none. Defaults to None.
        bn_cfg (dict): Norm after the depthwise convolution.
            Defaults to ``dict(type='BN', eps=1e-6)``.
        act_cfg (dict): Activation of the expansion (and of the SE gate).
            Defaults to ``dict(type='SiLU')``.
        expand (bool): Use a 1x1 expansion; False only in the stem block,
            where the middle width equals the input width. Defaults to True.
        se_ratio (float): Squeeze-excitation ratio, 0 for none. Defaults to 0.
        with_attn (bool): Window attention before the expansion.
            Defaults to False.
        head_dim (int): Channels per attention head. Defaults to 32.
        window_size (int): Attention window size. Defaults to 7.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        fused_attn (bool): See :class:`WindowAttention`. Defaults to True.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 exp_ratio: float = 1.0,
                 stride: int = 1,
                 dw_kernel_size: int = 3,
                 has_skip: bool = True,
                 norm_cfg: Optional[dict] = None,
                 bn_cfg: dict = dict(type='BN', eps=NORM_EPS),
                 act_cfg: dict = dict(type='SiLU'),
                 expand: bool = True,
                 se_ratio: float = 0.0,
                 with_attn: bool = False,
                 head_dim: int = 32,
                 window_size: int = 7,
                 drop_path_rate: float = 0.0,
                 fused_attn: bool = True):
        super().__init__()
        mid_channels = int(in_channels * exp_ratio)
        self.has_skip = has_skip and in_channels == out_channels and stride == 1

        self.norm = (build_norm_layer(norm_cfg, in_channels)[1]
                     if norm_cfg else nn.Identity())
        self.attn = (WindowAttention(in_channels, head_dim, window_size,
                                     fused_attn) if with_attn else None)
        if expand:
            self.v = ConvModule(in_channels, mid_channels, 1, bias=True,
                                norm_cfg=None, act_cfg=act_cfg)
        else:
            assert mid_channels == in_channels
            self.v = nn.Identity()
        # The authors pad by ceil((k - stride) / 2): 1 for k=3, 2 for k=5.
        self.conv_local = ConvModule(
            mid_channels,
            mid_channels,
            dw_kernel_size,
            stride=stride,
            padding=(dw_kernel_size - stride + 1) // 2,
            groups=mid_channels,
            bias=False,
            norm_cfg=bn_cfg,
            act_cfg=dict(type='SiLU'))  # SiLU in every stage, as authored
        self.se = (SqueezeExcite(mid_channels, round(mid_channels * se_ratio),
                                 act_cfg) if se_ratio > 0 else nn.Identity())
        self.proj = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.drop_path = (DropPath(drop_path_rate)
                          if drop_path_rate > 0 else nn.Identity())

    @torch.no_grad()
    def switch_to_deploy(self):
        """Fold the BatchNorms into convolutions, for inference.

        The depthwise conv's BN folds into its weights; a BatchNorm pre-norm
        folds into the 1x1 expansion when no attention sits between them
        (exact: a 1x1 conv has no zero padding for the shift to miss).
        """
        conv_local = self.conv_local
        if isinstance(conv_local, ConvModule) and conv_local.with_norm:
            self.conv_local = nn.Sequential(
                fuse_conv_bn(conv_local.conv, conv_local.norm),
                conv_local.activate)
        if (isinstance(self.norm, _BatchNorm) and self.attn is None
                and isinstance(self.v, ConvModule)):
            conv = self.v.conv
            scale, shift = _bn_affine(self.norm)
            # conv(x * s + t) = (W * s) x + (b + W t) for a 1x1 conv W.
            conv.bias.add_(conv.weight.flatten(1) @ shift)
            conv.weight.mul_(scale.view(1, -1, 1, 1))
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        if self.attn is not None:
            x = self.attn(x)
        x = self.v(x)
        local = self.se(self.conv_local(x))
        x = x + local if self.has_skip else local
        x = self.proj(x)
        return shortcut + self.drop_path(x) if self.has_skip else x


@MODELS.register_module()
class EMO(BaseModule):
    """EMO backbone.

    A stride-2 stem (3x3 conv + BN and one iRMB without attention) followed by
    four stages of iRMBs at strides 4, 8, 16 and 32; the first block of each
    stage downsamples, stages 3 and 4 attend within windows.

    Args:
        arch (str | dict): ``'1m'``, ``'2m'``, ``'5m'``, ``'6m'`` or a dict
            with every key of :attr:`arch_settings` entries: ``depths``,
            ``stem_channels``, ``channels``, ``exp_ratios``, ``head_dims``,
            ``dw_kernel_sizes``, ``attn_stages``, ``norm_types`` (``'BN'``
            uses ``norm_cfg``, ``'LN2d'`` a channel LayerNorm) and
            ``act_types`` (one per stage each). Defaults to ``'1m'``.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int] | int): Outputs to return: 0 is the stem
            (stride 2), 1-4 the stages (strides 4-32); negative indices count
            from the end. Defaults to ``(1, 2, 3, 4)``.
        window_size (int | Sequence[int]): Attention window, one for all or
            one per stage (used by the attending stages). The authors use 7
            for classification and for 1M/2M downstream, 10 for 5M detection
            and 16 for 5M segmentation. Defaults to 7.
        drop_path_rate (float): Stochastic depth rate, rising linearly over
            the blocks of stages 1-4. Defaults to 0.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and
            stages 1..k (eval mode, no gradient). Defaults to -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode during
            training. Defaults to False.
        norm_cfg (dict): Config of the BatchNorm layers, e.g.
            ``dict(type='SyncBN')``; ``eps`` defaults to the authors' 1e-6 when
            not given. Defaults to ``dict(type='BN', eps=1e-6)``.
        final_norm (bool): Apply the last stage's norm to the stride-32
            output, as the authors' classifier does before pooling.
            Defaults to False.
        fused_attn (bool): Use ``F.scaled_dot_product_attention`` for the
            window attention. Defaults to True.
        channels_last (bool): Run in the channels-last (NHWC) memory format:
            the input is converted once, every layer keeps the format, and
            the outputs are channels-last tensors of the same NCHW shape and
            values. On CPUs it makes the 1x1 convolutions several times
            faster (``tools/analysis/benchmark.py``). Defaults to False.
        zero_init_attn_proj (bool): For training from scratch: zero the
            output projection of every attending block, so that it starts as
            the identity. At initialisation the window attention is uniform
            and the whole block branch sees a map that is constant within
            each window, blind to position; detection heads then see that
            noise instead of the local features and stay at chance for about
            1000 steps (docs/demos.md, 'Why the detection demo learns
            slowly'). Pair it with a low ``lr_mult`` on those projections:
            AdamW moves a zero weight by about the lr per step. Ignored when weights are
            loaded. Defaults to False (the authors' initialisation).
        pretrained (str, optional): Deprecated spelling of
            ``init_cfg=dict(type='Pretrained', checkpoint=...)``, passed by
            mmseg's ``EncoderDecoder``. Defaults to None.
        init_cfg (dict | list[dict], optional): Initialization config. With
            ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` both the
            authors' ImageNet checkpoints and emo_mm checkpoints load; see
            :func:`emo_mm.models.checkpoint.load_backbone_checkpoint`.
            Defaults to None.
    """
    # The authors' four variants, one column each (as in the paper's table
    # of variants): blocks, widths, MLP expansion ratios and attention head
    # dims per stage. All share the stem, the depth-wise kernel sizes and
    # stages 1-2 without attention (BN, SiLU) and 3-4 with it (LN, GELU).
    _variants = dict(
        name=('1m', '2m', '5m', '6m'),
        depths=((2, 2, 8, 3), (3, 3, 9, 3), (3, 3, 9, 3), (3, 3, 9, 3)),
        channels=((32, 48, 80, 168), (32, 48, 120, 200), (48, 72, 160, 288),
                  (48, 72, 160, 320)),
        exp_ratios=((2.0, 2.5, 3.0, 3.5), (2.0, 2.5, 3.0, 3.5),
                    (2.0, 3.0, 4.0, 4.0), (2.0, 3.0, 4.0, 5.0)),
        head_dims=((16, 16, 20, 21), (16, 16, 20, 20), (24, 24, 32, 32),
                   (16, 24, 20, 32)))
    arch_settings = {
        name: dict(
            depths=depths,
            stem_channels=24,
            channels=channels,
            exp_ratios=exp_ratios,
            head_dims=head_dims,
            dw_kernel_sizes=(3, 3, 5, 5),
            attn_stages=(False, False, True, True),
            norm_types=('BN', 'BN', 'LN2d', 'LN2d'),
            act_types=('SiLU', 'SiLU', 'GELU', 'GELU'))
        for name, depths, channels, exp_ratios, head_dims in zip(
            *_variants.values())
    }
    del _variants
    num_stages = 4
    norm_types = ('BN', 'LN2d')

    def __init__(self,
                 arch: Union[str, dict] = '1m',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (1, 2, 3, 4),
                 window_size: Union[int, Sequence[int]] = 7,
                 drop_path_rate: float = 0.0,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: dict = dict(type='BN', eps=NORM_EPS),
                 final_norm: bool = False,
                 fused_attn: bool = True,
                 channels_last: bool = False,
                 zero_init_attn_proj: bool = False,
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
        self.frozen_stages = frozen_stages
        self.channels_last = channels_last
        self.deploy = False
        self.norm_eval = norm_eval
        self.zero_init_attn_proj = zero_init_attn_proj
        self.final_norm = final_norm
        self.bn_cfg = {'eps': NORM_EPS, **norm_cfg}
        arch = self.arch

        def stage_norm(i):
            if arch['norm_types'][i] == 'BN':
                return self.bn_cfg
            return dict(type=LayerNorm2d, eps=NORM_EPS)

        def stage_act(i):
            return dict(type=arch['act_types'][i])

        stem_channels = arch['stem_channels']
        with warnings.catch_warnings():
            # The authors' stem conv has a bias before its BN; keep it, so
            # that their checkpoints load.
            warnings.filterwarnings('ignore', 'Unnecessary conv bias')
            stem_conv = ConvModule(
                in_channels,
                stem_channels,
                3,
                stride=2,
                padding=1,
                bias=True,
                norm_cfg=stage_norm(0),
                act_cfg=None)
        stem = nn.Sequential(
            stem_conv,
            iRMB(
                stem_channels,
                stem_channels,
                dw_kernel_size=arch['dw_kernel_sizes'][0],
                has_skip=False,
                bn_cfg=self.bn_cfg,
                act_cfg=stage_act(0),
                expand=False,
                se_ratio=1.0))
        self.stages = nn.ModuleList([stem])

        depths = arch['depths']
        dprs = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        in_ch = stem_channels
        for i, depth in enumerate(depths):
            blocks = []
            for j in range(depth):
                first = j == 0
                blocks.append(
                    iRMB(
                        in_ch,
                        arch['channels'][i],
                        # The downsampling block expands twice as much.
                        exp_ratio=arch['exp_ratios'][i] * (2 if first else 1),
                        stride=2 if first else 1,
                        dw_kernel_size=arch['dw_kernel_sizes'][i],
                        has_skip=not first,
                        norm_cfg=stage_norm(i),
                        bn_cfg=self.bn_cfg,
                        act_cfg=stage_act(i),
                        with_attn=arch['attn_stages'][i] and not first,
                        head_dim=arch['head_dims'][i],
                        window_size=self.window_sizes[i],
                        drop_path_rate=dprs[sum(depths[:i]) + j],
                        fused_attn=fused_attn))
                in_ch = arch['channels'][i]
            self.stages.append(nn.Sequential(*blocks))
        self.out_channels = (stem_channels, *arch['channels'])

        if final_norm:
            self.norm = build_norm_layer(stage_norm(self.num_stages - 1),
                                         in_ch)[1]

        self._freeze_stages()

    # ------------------------------------------------------------------ args
    def _parse_arch(self, arch) -> Tuple[str, Dict]:
        required = set(self.arch_settings['1m'])
        if isinstance(arch, str):
            name = arch.lower()
            if name not in self.arch_settings:
                raise ValueError(
                    f'unknown EMO arch {arch!r}; allowed: '
                    f'{sorted(self.arch_settings)} or a dict with keys '
                    f'{sorted(required)}')
            return name, copy.deepcopy(self.arch_settings[name])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or dict, got '
                            f'{type(arch).__name__}')
        missing = required - set(arch)
        if missing:
            raise ValueError(f'arch dict misses keys {sorted(missing)}; '
                             f'required: {sorted(required)}')
        unknown = set(arch) - required
        if unknown:
            raise ValueError(f'arch dict has unknown keys {sorted(unknown)}; '
                             f'allowed: {sorted(required)}')
        arch = copy.deepcopy(dict(arch))
        for key in required - {'stem_channels'}:
            if len(arch[key]) != self.num_stages:
                raise ValueError(f'arch[{key!r}] needs {self.num_stages} '
                                 f'entries (one per stage), got {arch[key]}')
        bad = set(arch['norm_types']) - set(self.norm_types)
        if bad:
            raise ValueError(f'arch norm_types {sorted(bad)} unknown; '
                             f'allowed: {list(self.norm_types)}')
        for name, settings in self.arch_settings.items():
            if all(tuple(arch[k]) == tuple(settings[k]) if k != 'stem_channels'
                   else arch[k] == settings[k] for k in required):
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
        if self.zero_init_attn_proj:
            for m in self.modules():
                if isinstance(m, iRMB) and m.attn is not None:
                    nn.init.zeros_(m.proj.weight)

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
        """Fold every BatchNorm into the convolution next to it.

        For inference only (call it after loading weights, in eval mode):
        the BNs' running statistics become conv weights and biases, so the
        outputs stay the same up to float rounding (tested against the
        authors' outputs) while 2-3 memory-bound passes per block go away.
        The module layout changes, so save checkpoints before, not after.
        """
        stem_conv = self.stages[0][0]
        if isinstance(stem_conv, ConvModule):
            self.stages[0][0] = fuse_conv_bn(stem_conv.conv, stem_conv.norm)
        for stage in self.stages:
            for block in stage:
                if isinstance(block, iRMB):
                    block.switch_to_deploy()
        self.deploy = True

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
