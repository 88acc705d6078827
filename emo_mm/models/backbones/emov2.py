"""EMOv2: EMO rebuilt from improved inverted Residual Mobile Blocks (i2RMB).

Zhang et al., "EMOv2: Pushing 5M Vision Model Frontier", TPAMI 2025
(arXiv 2412.06674).
"""
from typing import Optional, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import (NORM_EPS, WINDOW_LAYOUTS, PointwiseConv, crop_padding,
                      depthwise_conv, expansion, fold_bn_into_next_conv,
                      fold_conv_module, from_windows, is_channels_last,
                      pad_to_windows, resolve_norm_cfg, to_windows,
                      window_attention)
from .base import HYBRID_STAGES, EMOBackbone, arch_table
from .emo import WindowAttention


class SpanningWindowAttention(WindowAttention):
    """EMOv2's window attention: one query/key projection, two partitions.

    The padded map is split twice into ``window_size`` windows: the remote
    windows of EMO (a grid spread over the whole map) and close windows
    (contiguous tiles); attention runs in each, over the same queries, keys
    and values, and the two results are summed. The values come from the
    block's own 1x1 projection (``value``), run before attention (the
    authors' ``attn_pre=False``). Padding and the partitions are those of
    :mod:`emo_mm.models.layers`; padded tokens take part unmasked, as in
    the authors' model. Arguments: those of :class:`WindowAttention`.
    """

    def forward(self, x: torch.Tensor, value: nn.Module) -> torch.Tensor:
        B, _, H, W = x.shape
        ws, heads = self.window_size, self.num_heads
        x = pad_to_windows(x, ws)
        num_h, num_w = x.shape[2] // ws, x.shape[3] // ws
        # Both projections are pointwise: run once on the padded map, before
        # either partition (padded tokens get the biases, as in the authors'
        # model).
        qk, v = self.qk(x), value(x)
        channels_last = is_channels_last(x)
        outs = []
        for layout in WINDOW_LAYOUTS:
            q, k = to_windows(qk, ws, heads, 2, layout)
            values, = to_windows(v, ws, heads, 1, layout)
            windows = window_attention(q, k, values, self.scale,
                                       self.fused_attn)
            outs.append(
                from_windows(windows, B, num_h, num_w, ws, layout,
                             channels_last))
        return crop_padding(outs[0] + outs[1], H, W)


class I2RMB(nn.Module):
    """Improved Inverted Residual Mobile Block (i2RMB).

    norm -> token mixer (1x1 projection + act; in attending blocks the same
    projection gives the values of :class:`SpanningWindowAttention`) ->
    depthwise conv + norm + act (+ inner skip) -> 1x1 projection ->
    LayerScale (+ outer skip with drop path). The LayerScale applies in the
    downsampling blocks too, which have no skip, as authored.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        exp_ratio (float): Expansion ratio of the middle width.
        stride (int): Stride of the depthwise convolution.
        dw_kernel_size (int): Depthwise kernel size.
        has_skip (bool): Residual connections (only when the shape is kept).
        norm_cfg (dict): Pre-norm.
        act_cfg (dict): Activation of the 1x1 projection.
        dw_norm_cfg (dict): Norm after the depthwise convolution.
        dw_act_cfg (dict): Activation after it.
        with_attn (bool): Spanning window attention as the token mixer.
        head_dim (int): Query/key channels per attention head.
        window_size (int): Attention window size.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init (float): Initial LayerScale. Defaults to 1e-6.
        fused_attn (bool): See :class:`SpanningWindowAttention`.
            Defaults to True.
        as_matmul (bool): See :class:`~emo_mm.models.layers.PointwiseConv`.
            Defaults to True.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 exp_ratio: float,
                 stride: int,
                 dw_kernel_size: int,
                 has_skip: bool,
                 norm_cfg: dict,
                 act_cfg: dict,
                 dw_norm_cfg: dict,
                 dw_act_cfg: dict,
                 with_attn: bool,
                 head_dim: int,
                 window_size: int,
                 drop_path_rate: float = 0.0,
                 layer_scale_init: float = 1e-6,
                 fused_attn: bool = True,
                 as_matmul: bool = True):
        super().__init__()
        mid_channels = int(in_channels * exp_ratio)
        self.has_skip = (
            has_skip and in_channels == out_channels and stride == 1)
        self.norm = build_norm_layer(norm_cfg, in_channels)[1]
        self.v = expansion(in_channels, mid_channels, act_cfg)
        self.attn = None
        if with_attn:
            self.attn = SpanningWindowAttention(in_channels, head_dim,
                                                window_size, fused_attn,
                                                as_matmul)
            if mid_channels % self.attn.num_heads:
                raise ValueError(
                    f'the value width {mid_channels} does not split into '
                    f'{self.attn.num_heads} heads (width {in_channels}, '
                    f'head_dim {head_dim}, exp_ratio {exp_ratio})')
        self.conv_local = depthwise_conv(mid_channels, dw_kernel_size, stride,
                                         dw_norm_cfg, dw_act_cfg)
        self.proj = PointwiseConv(
            mid_channels, out_channels, bias=False, as_matmul=as_matmul)
        self.gamma = nn.Parameter(
            torch.full((1, out_channels, 1, 1), layer_scale_init))
        self.drop_path = (
            DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity())

    @torch.no_grad()
    def switch_to_deploy(self):
        """Fold the BatchNorms and the LayerScale into convolutions, for
        inference.

        A BatchNorm after the depthwise conv folds into its weights (a
        LayerNorm there, as in the segmentation backbone, stays); a
        BatchNorm pre-norm folds into the 1x1 projection when no attention
        sits between them; the LayerScale folds into the output projection.
        """
        self.conv_local = fold_conv_module(self.conv_local)
        if isinstance(self.norm, _BatchNorm) and self.attn is None:
            fold_bn_into_next_conv(self.norm, self.v.conv)
            self.norm = nn.Identity()
        if self.gamma is not None:
            self.proj.weight.mul_(self.gamma.view(-1, 1, 1, 1))
            self.register_parameter('gamma', None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        x = self.v(x) if self.attn is None else self.attn(x, self.v)
        local = self.conv_local(x)
        x = x + local if self.has_skip else local
        x = self.proj(x)
        if self.gamma is not None:
            x = x * self.gamma
        return shortcut + self.drop_path(x) if self.has_skip else x


@MODELS.register_module()
class EMOv2(EMOBackbone):
    """EMOv2 backbone.

    A stride-2 stem (3x3 conv, 3x3 depthwise conv, each with BN and SiLU,
    and a 1x1 conv) followed by four stages of i2RMBs at strides 4, 8, 16
    and 32. The first block of each stage downsamples with a 1x1 projection
    as its token mixer; the other blocks of stages 3 and 4 attend within
    spanning windows.

    Args:
        arch (str | dict): ``'1m'``, ``'2m'``, ``'5m'``, ``'20m'`` (the
            authors' ``EMO2_*_k5_hybrid``) or a dict (see
            :class:`EMOBackbone`). Defaults to ``'5m'``.
        dw_norm_cfg (dict, optional): Norm after each depthwise conv; None
            uses ``norm_cfg``. The authors' segmentation backbone uses
            ``dict(type='LN2d', eps=1e-6)``; ImageNet weights have BNs
            there, so those LayerNorms keep their initial values when such
            weights load (reported by name), as in the authors' runs.
            Defaults to None.
        dw_act_cfg (dict): Activation after each depthwise conv; the
            authors' segmentation backbone uses ``dict(type='GELU')``.
            Defaults to ``dict(type='SiLU')``.
        layer_scale_init (float): Initial LayerScale of every block.
            Defaults to 1e-6.
        downsample_layer_scale_init (float, optional): For training from
            scratch: the initial LayerScale of each stage's first block,
            which has no skip, so that ``layer_scale_init`` scales the whole
            stage output. With the default 1e-6 the stride-8 to stride-32
            outputs of a fresh model are 1e-7 to 1e-13 of the input's scale,
            far below a detection neck's norm eps; 1.0 starts them at the
            input's scale. None uses ``layer_scale_init``, as the authors
            do (their models start from ImageNet weights). Defaults to None.
        **kwargs: The arguments of :class:`EMOBackbone`; ``norm_cfg`` is
            the BatchNorms of the stem, of the pre-norms of stages 1-2 and,
            unless ``dw_norm_cfg`` says otherwise, after every depthwise
            conv. For ``window_size`` the authors use 7 for ImageNet at 224,
            8 for their 256/512 models and 10 in every downstream config.
    """
    # The authors' variants, one column each: blocks, widths, expansion
    # ratios and query/key head dims per stage (heads in stages 1-2 are
    # unused: no attention there). The stem is half the stage-1 width.
    arch_settings = arch_table(
        ('1m', '2m', '5m', '20m'),
        dict(dw_kernel_sizes=(5, 5, 5, 5), **HYBRID_STAGES),
        stem_channels=(16, 16, 24, 32),
        depths=((2, 2, 8, 3), (3, 3, 9, 3), (3, 3, 9, 3), (3, 3, 13, 3)),
        channels=((32, 48, 80, 180), (32, 48, 120, 200), (48, 72, 160, 288),
                  (64, 128, 320, 448)),
        exp_ratios=((2.0, 2.5, 3.0, 3.5), (2.0, 2.5, 3.0, 3.5),
                    (2.0, 3.0, 4.0, 4.0), (2.0, 3.0, 4.0, 4.0)),
        head_dims=((16, 16, 20, 20), (16, 16, 20, 20), (16, 24, 32, 32),
                   (16, 32, 32, 32)))
    family = 'EMOv2'

    def __init__(self,
                 arch: Union[str, dict] = '5m',
                 dw_norm_cfg: Optional[dict] = None,
                 dw_act_cfg: dict = dict(type='SiLU'),
                 layer_scale_init: float = 1e-6,
                 downsample_layer_scale_init: Optional[float] = None,
                 **kwargs):
        super().__init__(arch, **kwargs)
        self.dw_norm_cfg = (
            self.bn_cfg if dw_norm_cfg is None else {
                'eps': NORM_EPS,
                **resolve_norm_cfg(dw_norm_cfg)
            })
        self.dw_act_cfg = dict(dw_act_cfg)
        if downsample_layer_scale_init is None:
            downsample_layer_scale_init = layer_scale_init

        stem_channels = self.arch['stem_channels']
        silu = dict(type='SiLU')
        stem = nn.Sequential(
            self.build_stem_conv(self.bn_cfg, silu),
            ConvModule(
                stem_channels,
                stem_channels,
                3,
                padding=1,
                groups=stem_channels,
                bias=False,
                norm_cfg=self.bn_cfg,
                act_cfg=silu),
            nn.Conv2d(stem_channels, stem_channels, 1, bias=False))

        def block(has_skip, **kwargs):
            return I2RMB(
                has_skip=has_skip,
                dw_norm_cfg=self.dw_norm_cfg,
                dw_act_cfg=self.dw_act_cfg,
                layer_scale_init=(layer_scale_init if has_skip else
                                  downsample_layer_scale_init),
                **kwargs)

        self.build_stages(stem, block)

    def deploy_stem(self):
        stem = self.stages[0]
        for i in (0, 1):
            stem[i] = fold_conv_module(stem[i])
