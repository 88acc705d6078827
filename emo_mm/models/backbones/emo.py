"""EMO: Efficient MOdel built from inverted Residual Mobile Blocks (iRMB).

Zhang et al., "Rethinking Mobile Block for Efficient Attention-based Models",
ICCV 2023 (arXiv 2301.01146).
"""
import warnings
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import (NORM_EPS, fold_bn_into_next_conv, from_windows,
                      fuse_conv_bn, is_channels_last, pad_to_windows,
                      pointwise, to_windows, window_attention)
from .base import EMOBackbone


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        ws = self.window_size
        x = pad_to_windows(x, ws)
        num_h, num_w = x.shape[2] // ws, x.shape[3] // ws
        # qk is pointwise, so it can run before the partition (padded tokens
        # get the bias, exactly as when it runs on each padded window).
        q, k = to_windows(pointwise(self.qk, x), ws, self.num_heads, 2, 'grid').unbind(0)
        v = to_windows(x, ws, self.num_heads, 1, 'grid')[0]
        out = window_attention(q, k, v, self.scale, self.fused_attn)
        out = from_windows(out, B, num_h, num_w, ws, 'grid',
                           is_channels_last(x))
        return out[:, :, :H, :W]


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
            fold_bn_into_next_conv(self.norm, self.v.conv)
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        if self.attn is not None:
            x = self.attn(x)
        x = self.v(x)
        local = self.se(self.conv_local(x))
        x = x + local if self.has_skip else local
        x = pointwise(self.proj, x)
        return shortcut + self.drop_path(x) if self.has_skip else x


@MODELS.register_module()
class EMO(EMOBackbone):
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
            1000 steps (docs/demos.md, 'Training the detectors from
            scratch'). Pair it with a low ``lr_mult`` on those projections:
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
    family = 'EMO'

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
        super().__init__(arch, out_indices, window_size, drop_path_rate,
                         frozen_stages, norm_eval, norm_cfg, final_norm,
                         channels_last, pretrained, init_cfg)
        self.zero_init_attn_proj = zero_init_attn_proj
        arch = self.arch

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
                norm_cfg=self.stage_norm_cfg(0),
                act_cfg=None)
        stem = nn.Sequential(
            stem_conv,
            iRMB(
                stem_channels,
                stem_channels,
                dw_kernel_size=arch['dw_kernel_sizes'][0],
                has_skip=False,
                bn_cfg=self.bn_cfg,
                act_cfg=self.stage_act_cfg(0),
                expand=False,
                se_ratio=1.0))
        self.stages = nn.ModuleList([stem])

        depths = arch['depths']
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
                        norm_cfg=self.stage_norm_cfg(i),
                        bn_cfg=self.bn_cfg,
                        act_cfg=self.stage_act_cfg(i),
                        with_attn=arch['attn_stages'][i] and not first,
                        head_dim=arch['head_dims'][i],
                        window_size=self.window_sizes[i],
                        drop_path_rate=self.drop_path_rates[sum(depths[:i]) +
                                                            j],
                        fused_attn=fused_attn))
                in_ch = arch['channels'][i]
            self.stages.append(nn.Sequential(*blocks))
        self.out_channels = (stem_channels, *arch['channels'])
        self.build_final_norm()
        self._freeze_stages()

    def init_from_scratch(self):
        if self.zero_init_attn_proj:
            for m in self.modules():
                if isinstance(m, iRMB) and m.attn is not None:
                    nn.init.zeros_(m.proj.weight)

    def deploy_stem(self):
        stem_conv = self.stages[0][0]
        if isinstance(stem_conv, ConvModule):
            self.stages[0][0] = fuse_conv_bn(stem_conv.conv, stem_conv.norm)
