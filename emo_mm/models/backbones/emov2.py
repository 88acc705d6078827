"""EMOv2: EMO rebuilt from improved inverted Residual Mobile Blocks (i2RMB).

Zhang et al., "EMOv2: Pushing 5M Vision Model Frontier", TPAMI 2025
(arXiv 2412.06674).
"""
import warnings
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers import (NORM_EPS, WINDOW_LAYOUTS, fold_bn_into_next_conv,
                      from_windows, fuse_conv_bn, is_channels_last,
                      pad_to_windows, pointwise, resolve_norm_cfg,
                      to_windows, window_attention)
from .base import EMOBackbone


class SpanningWindowAttention(nn.Module):
    """EMOv2's window attention: one query/key projection, two partitions.

    The padded map is split twice into ``window_size`` windows: the remote
    windows of EMO (a grid spread over the whole map) and close windows
    (contiguous tiles); attention runs in each, over the same queries, keys
    and values, and the two results are summed. The values come from the
    block's own 1x1 projection (``value``), run before attention (the
    authors' ``attn_pre=False``). Padding and the partitions are those of
    :mod:`emo_mm.models.layers`; padded tokens take part unmasked, as in
    the authors' model.

    Args:
        channels (int): Input channels.
        head_dim (int): Query/key channels per head; must divide
            ``channels``.
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
        self.window_size = window_size
        self.scale = head_dim**-0.5
        self.fused_attn = fused_attn
        self.qk = nn.Conv2d(channels, channels * 2, 1)

    def forward(self, x: torch.Tensor, value: nn.Module) -> torch.Tensor:
        B, _, H, W = x.shape
        ws, heads = self.window_size, self.num_heads
        x = pad_to_windows(x, ws)
        num_h, num_w = x.shape[2] // ws, x.shape[3] // ws
        # Both projections are pointwise: run once on the padded map, before
        # either partition (padded tokens get the biases, as in the authors'
        # model).
        qk, v = pointwise(self.qk, x), value(x)
        channels_last = is_channels_last(x)
        out = 0
        for layout in WINDOW_LAYOUTS:
            q, k = to_windows(qk, ws, heads, 2, layout).unbind(0)
            values = to_windows(v, ws, heads, 1, layout)[0]
            windows = window_attention(q, k, values, self.scale,
                                       self.fused_attn)
            out = out + from_windows(windows, B, num_h, num_w, ws, layout,
                                     channels_last)
        return out[:, :, :H, :W]


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
                 fused_attn: bool = True):
        super().__init__()
        mid_channels = int(in_channels * exp_ratio)
        self.has_skip = (has_skip and in_channels == out_channels
                         and stride == 1)
        self.norm = build_norm_layer(norm_cfg, in_channels)[1]
        self.v = ConvModule(in_channels, mid_channels, 1, bias=True,
                            norm_cfg=None, act_cfg=act_cfg)
        self.attn = None
        if with_attn:
            self.attn = SpanningWindowAttention(in_channels, head_dim,
                                                window_size, fused_attn)
            if mid_channels % self.attn.num_heads:
                raise ValueError(
                    f'the value width {mid_channels} does not split into '
                    f'{self.attn.num_heads} heads (width {in_channels}, '
                    f'head_dim {head_dim}, exp_ratio {exp_ratio})')
        # The authors pad by ceil((k - stride) / 2): 2 for k=5.
        self.conv_local = ConvModule(
            mid_channels,
            mid_channels,
            dw_kernel_size,
            stride=stride,
            padding=(dw_kernel_size - stride + 1) // 2,
            groups=mid_channels,
            bias=False,
            norm_cfg=dw_norm_cfg,
            act_cfg=dw_act_cfg)
        self.proj = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.gamma = nn.Parameter(
            torch.full((1, out_channels, 1, 1), layer_scale_init))
        self.drop_path = (DropPath(drop_path_rate)
                          if drop_path_rate > 0 else nn.Identity())

    @torch.no_grad()
    def switch_to_deploy(self):
        """Fold the BatchNorms and the LayerScale into convolutions, for
        inference.

        A BatchNorm after the depthwise conv folds into its weights (a
        LayerNorm there, as in the segmentation backbone, stays); a
        BatchNorm pre-norm folds into the 1x1 projection when no attention
        sits between them; the LayerScale folds into the output projection.
        """
        conv_local = self.conv_local
        if isinstance(conv_local, ConvModule) and \
                isinstance(conv_local.norm, _BatchNorm):
            self.conv_local = nn.Sequential(
                fuse_conv_bn(conv_local.conv, conv_local.norm),
                conv_local.activate)
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
        x = pointwise(self.proj, x)
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
            authors' ``EMO2_*_k5_hybrid``) or a dict with every key of
            :attr:`arch_settings` entries. Defaults to ``'5m'``.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int] | int): Outputs to return: 0 is the stem
            (stride 2), 1-4 the stages (strides 4-32); negative indices count
            from the end. Defaults to ``(1, 2, 3, 4)``.
        window_size (int | Sequence[int]): Attention window, one for all or
            one per stage. The authors use 7 for ImageNet at 224, 8 for
            their 256/512 models and 10 in every downstream config.
            Defaults to 7.
        drop_path_rate (float): Stochastic depth rate, rising linearly over
            the blocks of stages 1-4. Defaults to 0.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and
            stages 1..k (eval mode, no gradient). Defaults to -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode during
            training. Defaults to False.
        norm_cfg (dict): The BatchNorms (stem, pre-norms of stages 1-2 and,
            unless ``dw_norm_cfg`` says otherwise, after every depthwise
            conv), e.g. ``dict(type='SyncBN')``; ``eps`` defaults to the
            authors' 1e-6. Defaults to ``dict(type='BN', eps=1e-6)``.
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
        final_norm (bool): Apply the last stage's LayerNorm to the stride-32
            output, as the authors' classifier does before pooling.
            Defaults to False.
        fused_attn (bool): Use ``F.scaled_dot_product_attention``.
            Defaults to True.
        channels_last (bool): Run in the channels-last (NHWC) memory format;
            outputs are channels-last tensors of the same NCHW shape and
            values. Defaults to False.
        pretrained (str, optional): Deprecated spelling of
            ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
        init_cfg (dict | list[dict], optional): Initialization config. With
            ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` the authors'
            released ImageNet checkpoints and emo_mm checkpoints load; see
            :func:`emo_mm.models.checkpoint.load_backbone_checkpoint`.
            Defaults to None.
    """
    # The authors' variants, one column each: blocks, widths, expansion
    # ratios and query/key head dims per stage (heads in stages 1-2 are
    # unused: no attention there). The stem is half the stage-1 width.
    _variants = dict(
        name=('1m', '2m', '5m', '20m'),
        depths=((2, 2, 8, 3), (3, 3, 9, 3), (3, 3, 9, 3), (3, 3, 13, 3)),
        channels=((32, 48, 80, 180), (32, 48, 120, 200), (48, 72, 160, 288),
                  (64, 128, 320, 448)),
        exp_ratios=((2.0, 2.5, 3.0, 3.5), (2.0, 2.5, 3.0, 3.5),
                    (2.0, 3.0, 4.0, 4.0), (2.0, 3.0, 4.0, 4.0)),
        head_dims=((16, 16, 20, 20), (16, 16, 20, 20), (16, 24, 32, 32),
                   (16, 32, 32, 32)))
    arch_settings = {
        name: dict(
            depths=depths,
            stem_channels=channels[0] // 2,
            channels=channels,
            exp_ratios=exp_ratios,
            head_dims=head_dims,
            dw_kernel_sizes=(5, 5, 5, 5),
            attn_stages=(False, False, True, True),
            norm_types=('BN', 'BN', 'LN2d', 'LN2d'),
            act_types=('SiLU', 'SiLU', 'GELU', 'GELU'))
        for name, depths, channels, exp_ratios, head_dims in zip(
            *_variants.values())
    }
    del _variants
    family = 'EMOv2'

    def __init__(self,
                 arch: Union[str, dict] = '5m',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (1, 2, 3, 4),
                 window_size: Union[int, Sequence[int]] = 7,
                 drop_path_rate: float = 0.0,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: dict = dict(type='BN', eps=NORM_EPS),
                 dw_norm_cfg: Optional[dict] = None,
                 dw_act_cfg: dict = dict(type='SiLU'),
                 layer_scale_init: float = 1e-6,
                 downsample_layer_scale_init: Optional[float] = None,
                 final_norm: bool = False,
                 fused_attn: bool = True,
                 channels_last: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[dict, list]] = None):
        super().__init__(arch, out_indices, window_size, drop_path_rate,
                         frozen_stages, norm_eval, norm_cfg, final_norm,
                         channels_last, pretrained, init_cfg)
        arch = self.arch
        self.dw_norm_cfg = (self.bn_cfg if dw_norm_cfg is None else {
            'eps': NORM_EPS,
            **resolve_norm_cfg(dw_norm_cfg)
        })
        self.dw_act_cfg = dict(dw_act_cfg)

        stem_channels = arch['stem_channels']
        silu = dict(type='SiLU')
        with warnings.catch_warnings():
            # The authors' first conv has a bias before its BN; keep it, so
            # that their checkpoints load.
            warnings.filterwarnings('ignore', 'Unnecessary conv bias')
            stem = nn.Sequential(
                ConvModule(in_channels, stem_channels, 3, stride=2,
                           padding=1, bias=True, norm_cfg=self.bn_cfg,
                           act_cfg=silu),
                ConvModule(stem_channels, stem_channels, 3, padding=1,
                           groups=stem_channels, bias=False,
                           norm_cfg=self.bn_cfg, act_cfg=silu),
                nn.Conv2d(stem_channels, stem_channels, 1, bias=False))
        self.stages = nn.ModuleList([stem])

        if downsample_layer_scale_init is None:
            downsample_layer_scale_init = layer_scale_init
        depths = arch['depths']
        in_ch = stem_channels
        for i, depth in enumerate(depths):
            blocks = []
            for j in range(depth):
                first = j == 0
                blocks.append(
                    I2RMB(
                        in_ch,
                        arch['channels'][i],
                        # The downsampling block expands twice as much.
                        exp_ratio=arch['exp_ratios'][i] * (2 if first else 1),
                        stride=2 if first else 1,
                        dw_kernel_size=arch['dw_kernel_sizes'][i],
                        has_skip=not first,
                        norm_cfg=self.stage_norm_cfg(i),
                        act_cfg=self.stage_act_cfg(i),
                        dw_norm_cfg=self.dw_norm_cfg,
                        dw_act_cfg=self.dw_act_cfg,
                        with_attn=arch['attn_stages'][i] and not first,
                        head_dim=arch['head_dims'][i],
                        window_size=self.window_sizes[i],
                        drop_path_rate=self.drop_path_rates[sum(depths[:i]) +
                                                            j],
                        layer_scale_init=(downsample_layer_scale_init
                                          if first else layer_scale_init),
                        fused_attn=fused_attn))
                in_ch = arch['channels'][i]
            self.stages.append(nn.Sequential(*blocks))
        self.out_channels = (stem_channels, *arch['channels'])
        self.build_final_norm()
        self._freeze_stages()

    def deploy_stem(self):
        stem = self.stages[0]
        for i in (0, 1):
            if isinstance(stem[i], ConvModule):
                stem[i] = nn.Sequential(
                    fuse_conv_bn(stem[i].conv, stem[i].norm),
                    stem[i].activate)
