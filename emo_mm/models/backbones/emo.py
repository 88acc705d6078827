"""EMO: Efficient MOdel built from inverted Residual Mobile Blocks (iRMB).

Zhang et al., "Rethinking Mobile Block for Efficient Attention-based Models",
ICCV 2023 (arXiv 2301.01146).
"""
from functools import partial
from typing import Optional, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import (NORM_EPS, PointwiseConv, crop_padding, depthwise_conv,
                      expansion, fold_bn_into_next_conv, fold_conv_module,
                      from_windows, is_channels_last, pad_to_windows,
                      to_windows, window_attention)
from .base import HYBRID_STAGES, EMOBackbone, arch_table


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
        as_matmul (bool): See :class:`~emo_mm.models.layers.PointwiseConv`.
            Defaults to True.
    """

    def __init__(self,
                 channels: int,
                 head_dim: int,
                 window_size: int,
                 fused_attn: bool = True,
                 as_matmul: bool = True):
        super().__init__()
        if channels % head_dim:
            raise ValueError(f'head_dim={head_dim} must divide the stage '
                             f'width {channels}')
        self.num_heads = channels // head_dim
        self.head_dim = head_dim
        self.window_size = window_size
        self.scale = head_dim**-0.5
        self.fused_attn = fused_attn
        self.qk = PointwiseConv(channels, channels * 2, as_matmul=as_matmul)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        ws = self.window_size
        x = pad_to_windows(x, ws)
        num_h, num_w = x.shape[2] // ws, x.shape[3] // ws
        # qk is pointwise, so it can run before the partition (padded tokens
        # get the bias, exactly as when it runs on each padded window).
        q, k = to_windows(self.qk(x), ws, self.num_heads, 2, 'grid')
        v, = to_windows(x, ws, self.num_heads, 1, 'grid')
        out = window_attention(q, k, v, self.scale, self.fused_attn)
        out = from_windows(out, B, num_h, num_w, ws, 'grid',
                           is_channels_last(x))
        return crop_padding(out, H, W)


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
        as_matmul (bool): See :class:`~emo_mm.models.layers.PointwiseConv`.
            Defaults to True.
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
                 fused_attn: bool = True,
                 as_matmul: bool = True):
        super().__init__()
        mid_channels = int(in_channels * exp_ratio)
        self.has_skip = (
            has_skip and in_channels == out_channels and stride == 1)

        self.norm = (
            build_norm_layer(norm_cfg, in_channels)[1]
            if norm_cfg else nn.Identity())
        self.attn = (
            WindowAttention(in_channels, head_dim, window_size, fused_attn,
                            as_matmul) if with_attn else None)
        if expand:
            self.v = expansion(in_channels, mid_channels, act_cfg)
        else:
            assert mid_channels == in_channels
            self.v = nn.Identity()
        # SiLU in every stage, as authored.
        self.conv_local = depthwise_conv(mid_channels, dw_kernel_size, stride,
                                         bn_cfg, dict(type='SiLU'))
        self.se = (
            SqueezeExcite(mid_channels, round(mid_channels * se_ratio),
                          act_cfg) if se_ratio > 0 else nn.Identity())
        self.proj = PointwiseConv(
            mid_channels, out_channels, bias=False, as_matmul=as_matmul)
        self.drop_path = (
            DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity())

    @torch.no_grad()
    def switch_to_deploy(self):
        """Fold the BatchNorms into convolutions, for inference.

        The depthwise conv's BN folds into its weights; a BatchNorm pre-norm
        folds into the 1x1 expansion when no attention sits between them
        (exact: a 1x1 conv has no zero padding for the shift to miss).
        """
        self.conv_local = fold_conv_module(self.conv_local)
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
        x = self.proj(x)
        return shortcut + self.drop_path(x) if self.has_skip else x


@MODELS.register_module()
class EMO(EMOBackbone):
    """EMO backbone.

    A stride-2 stem (3x3 conv + BN and one iRMB without attention) followed by
    four stages of iRMBs at strides 4, 8, 16 and 32; the first block of each
    stage downsamples, stages 3 and 4 attend within windows.

    Args:
        arch (str | dict): ``'1m'``, ``'2m'``, ``'5m'``, ``'6m'`` or a dict
            (see :class:`EMOBackbone`). Defaults to ``'1m'``.
        zero_init_attn_proj (bool): For training from scratch: zero the
            output projection of every attending block, so that it starts as
            the identity. At initialisation the window attention is uniform
            and the whole block branch sees a map that is constant within
            each window, blind to position; detection heads then see that
            noise instead of the local features and stay at chance for about
            1000 steps (docs/demos.md, 'Training the detectors from
            scratch'). Pair it with a low ``lr_mult`` on those projections:
            AdamW moves a zero weight by about the lr per step. Ignored when
            weights are loaded. Defaults to False (the authors'
            initialisation).
        **kwargs: The arguments of :class:`EMOBackbone`. For
            ``window_size`` the authors use 7 for classification and for
            1M/2M downstream, 10 for 5M detection and 16 for 5M
            segmentation.
    """
    # The authors' four variants, one column each (as in the paper's table
    # of variants): blocks, widths, MLP expansion ratios and attention head
    # dims per stage. All share the stem, the depth-wise kernel sizes and
    # stages 1-2 without attention (BN, SiLU) and 3-4 with it (LN, GELU).
    arch_settings = arch_table(
        ('1m', '2m', '5m', '6m'),
        dict(stem_channels=24, dw_kernel_sizes=(3, 3, 5, 5), **HYBRID_STAGES),
        depths=((2, 2, 8, 3), (3, 3, 9, 3), (3, 3, 9, 3), (3, 3, 9, 3)),
        channels=((32, 48, 80, 168), (32, 48, 120, 200), (48, 72, 160, 288),
                  (48, 72, 160, 320)),
        exp_ratios=((2.0, 2.5, 3.0, 3.5), (2.0, 2.5, 3.0, 3.5),
                    (2.0, 3.0, 4.0, 4.0), (2.0, 3.0, 4.0, 5.0)),
        head_dims=((16, 16, 20, 21), (16, 16, 20, 20), (24, 24, 32, 32),
                   (16, 24, 20, 32)))
    family = 'EMO'

    def __init__(self,
                 arch: Union[str, dict] = '1m',
                 zero_init_attn_proj: bool = False,
                 **kwargs):
        super().__init__(arch, **kwargs)
        self.zero_init_attn_proj = zero_init_attn_proj
        stem_channels = self.arch['stem_channels']
        stem = nn.Sequential(
            self.build_stem_conv(self.stage_norm_cfg(0), None),
            iRMB(
                stem_channels,
                stem_channels,
                dw_kernel_size=self.arch['dw_kernel_sizes'][0],
                has_skip=False,
                bn_cfg=self.bn_cfg,
                act_cfg=self.stage_act_cfg(0),
                expand=False,
                se_ratio=1.0,
                as_matmul=self.pointwise_as_matmul))
        self.build_stages(stem, partial(iRMB, bn_cfg=self.bn_cfg))

    def init_from_scratch(self):
        if self.zero_init_attn_proj:
            for m in self.modules():
                if isinstance(m, iRMB) and m.attn is not None:
                    nn.init.zeros_(m.proj.weight)

    def deploy_stem(self):
        self.stages[0][0] = fold_conv_module(self.stages[0][0])
