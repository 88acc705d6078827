"""Layers that EMO and EMOv2 share: the channel LayerNorm, BatchNorm folding
and the window partition of their attention."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

# The authors' models use eps=1e-6 in every BatchNorm and LayerNorm.
NORM_EPS = 1e-6


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)


def resolve_norm_cfg(cfg: dict) -> dict:
    """``cfg`` with ``type='LN2d'`` replaced by :class:`LayerNorm2d`.

    mmcv has no channel LayerNorm, and the ``LN2d`` that mmpretrain
    registers lives in its own scope only; resolving the name here makes
    ``dict(type='LN2d')`` mean the same module in every scope.
    """
    cfg = dict(cfg)
    if cfg.get('type') == 'LN2d':
        cfg['type'] = LayerNorm2d
        cfg.setdefault('eps', NORM_EPS)
    return cfg


# Whether ``torch.export`` is tracing the call (the mobile export); torch
# before 2.7 cannot tell, and its export is not supported here.
is_exporting = getattr(torch.compiler, 'is_exporting', lambda: False)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out NHWC (and not also NCHW, e.g. when C=1)."""
    return (x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous())


# The most pixels (over the batch) that PointwiseConv runs as a matrix
# product; larger maps stay convolutions (docs/speed.md).
POINTWISE_MATMUL_TOKENS = 112 * 112


class PointwiseConv(nn.Conv2d):
    """A 1x1 convolution that can run as a matrix product.

    With ``as_matmul``, in eval mode, on a CPU, a channels-last input of at
    most :data:`POINTWISE_MATMUL_TOKENS` pixels is multiplied through its
    ``(B, H, W, C)`` view, with no copy either way: oneDNN's 1x1 convolution
    has a fixed cost per call that dominates at 14x14 and 7x7. Elsewhere
    (training, GPUs, NCHW or large maps, exports) it is the convolution.
    Parameters and state dict are ``nn.Conv2d``'s.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        bias (bool): Learn a bias. Defaults to True.
        as_matmul (bool): Take the matrix product where it applies.
            Defaults to True.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 bias: bool = True,
                 as_matmul: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)
        self.as_matmul = as_matmul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.as_matmul and not self.training and x.is_cpu
                and not torch.jit.is_tracing() and not is_exporting()
                and is_channels_last(x)
                and x.shape[0] * x.shape[2] * x.shape[3]
                <= POINTWISE_MATMUL_TOKENS):
            return F.linear(
                x.permute(0, 2, 3, 1), self.weight.flatten(1),
                self.bias).permute(0, 3, 1, 2)
        return super().forward(x)


def _check_foldable(bn: _BatchNorm) -> None:
    if bn.running_var is None:
        raise ValueError('cannot fold a BatchNorm without running statistics '
                         '(track_running_stats=False)')


def bn_affine(bn: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` with ``bn(x) == x * scale + shift`` in eval mode."""
    _check_foldable(bn)
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def expansion(in_channels: int, out_channels: int,
              act_cfg: dict) -> ConvModule:
    """The blocks' 1x1 expansion, with a bias, and its activation."""
    return ConvModule(
        in_channels,
        out_channels,
        1,
        bias=True,
        norm_cfg=None,
        act_cfg=act_cfg)


def depthwise_conv(channels: int, kernel_size: int, stride: int,
                   norm_cfg: dict, act_cfg: dict) -> ConvModule:
    """The blocks' depthwise convolution, with its norm and activation. The
    authors pad by ceil((k - stride) / 2): 1 for k=3, 2 for k=5."""
    return ConvModule(
        channels,
        channels,
        kernel_size,
        stride=stride,
        padding=(kernel_size - stride + 1) // 2,
        groups=channels,
        bias=False,
        norm_cfg=norm_cfg,
        act_cfg=act_cfg)


def fold_conv_module(module: nn.Module) -> nn.Module:
    """A ``ConvModule`` whose norm is a BatchNorm as one convolution (and
    its activation), through ``fuse_conv_bn_eval``; any other module as it
    is. For eval mode: the running statistics are folded."""
    if not (isinstance(module, ConvModule)
            and isinstance(module.norm, _BatchNorm)):
        return module
    _check_foldable(module.norm)
    conv = fuse_conv_bn_eval(module.conv.eval(), module.norm.eval())
    return (nn.Sequential(conv, module.activate)
            if module.with_activation else conv)


def fold_bn_into_next_conv(bn: _BatchNorm, conv: nn.Conv2d) -> None:
    """Make the 1x1 ``conv`` compute ``conv(bn(x))`` (exact: a 1x1 conv has
    no zero padding for the BN's shift to miss). ``conv`` needs a bias."""
    scale, shift = bn_affine(bn)
    # conv(x * s + t) = (W * s) x + (b + W t) for a 1x1 conv W.
    conv.bias.add_(conv.weight.flatten(1) @ shift)
    conv.weight.mul_(scale.view(1, -1, 1, 1))


# Window layouts. With the map padded to ``(n_h * ws, n_w * ws)``:
# 'grid' (EMO, EMOv2's remote windows): window (i, j) takes rows
#     i, i + n_h, i + 2 n_h, ... and columns j, j + n_w, ..., a ws x ws grid
#     spread over the whole map: the row index is ``r * n_h + i``;
# 'tile' (EMOv2's close windows): contiguous ws x ws tiles, the row index is
#     ``i * ws + r``.
WINDOW_LAYOUTS = ('grid', 'tile')


def to_windows(x: torch.Tensor, window_size: int, num_heads: int, groups: int,
               layout: str) -> Tuple[torch.Tensor, ...]:
    """Partition a padded map into windows of attention heads.

    Args:
        x (Tensor): ``(B, groups * num_heads * d, n_h * ws, n_w * ws)``;
            ``groups`` is 2 for stacked queries and keys, 1 for values.
        window_size (int): ``ws``.
        num_heads (int): Attention heads.
        groups (int): Tensors stacked along the channels.
        layout (str): ``'grid'`` or ``'tile'`` (see :data:`WINDOW_LAYOUTS`).

    Returns:
        tuple[Tensor]: ``groups`` tensors of ``(B * n_h * n_w, num_heads,
        ws * ws, d)``. A channels-last input is read through its ``(B, H,
        W, C)`` view, so that either memory format costs one copy. Under
        ``torch.export`` the same values come from tensors of rank 5 at most
        (:func:`_to_windows_low_rank`).
    """
    if is_exporting():
        return _to_windows_low_rank(x, window_size, num_heads, groups, layout)
    B, C, H, W = x.shape
    ws = window_size
    num_h, num_w = H // ws, W // ws
    dim = C // (groups * num_heads)
    # The (rows, columns) axes as (outer, inner) pairs of the layout.
    rows = (ws, num_h) if layout == 'grid' else (num_h, ws)
    cols = (ws, num_w) if layout == 'grid' else (num_w, ws)
    # Axis positions of (window row, in-window row) and the same for
    # columns, in the viewed tensor below.
    if is_channels_last(x):
        x = x.permute(0, 2, 3, 1).view(B, *rows, *cols, groups, num_heads, dim)
        win_r, in_r = (2, 1) if layout == 'grid' else (1, 2)
        win_c, in_c = (4, 3) if layout == 'grid' else (3, 4)
        x = x.permute(5, 0, win_r, win_c, 6, in_r, in_c, 7)
    else:
        x = x.view(B, groups, num_heads, dim, *rows, *cols)
        win_r, in_r = (5, 4) if layout == 'grid' else (4, 5)
        win_c, in_c = (7, 6) if layout == 'grid' else (6, 7)
        x = x.permute(1, 0, win_r, win_c, 2, in_r, in_c, 3)
    return x.reshape(groups, B * num_h * num_w, num_heads, ws * ws,
                     dim).unbind(0)


# Mobile runtimes cap tensor rank: XNNPACK at 6, Core ML at 5. The partition
# above permutes a rank-8 view; the two functions below move the same axes in
# two or three permutes of rank 5 at most. Which axes each view holds is in
# the comments: r, c rows and columns within a window, i, j the window's row
# and column, n_h, n_w the number of windows.


def _to_windows_low_rank(x: torch.Tensor, ws: int, heads: int, groups: int,
                         layout: str) -> Tuple[torch.Tensor, ...]:
    B, C, H, W = x.shape
    num_h, num_w = H // ws, W // ws
    width = C // groups
    windows = []
    for g in range(groups):
        t = x[:, g * width:(g + 1) * width] if groups > 1 else x
        if layout == 'grid':
            # (B, [heads d r], i, c, j) -> (B, i, j, [heads d r], c)
            t = t.reshape(B, width * ws, num_h, ws, num_w)
            t = t.permute(0, 2, 4, 1, 3)
        else:
            # (B [heads d], i, r, j, c) -> (B [heads d], i, j, r, c)
            t = t.reshape(B * width, num_h, ws, num_w, ws)
            t = t.permute(0, 1, 3, 2, 4)
            # (B, [heads d], [i j], [r c]) -> (B, [i j], [heads d], [r c])
            t = t.reshape(B, width, num_h * num_w, ws * ws)
            t = t.permute(0, 2, 1, 3)
        # ([B i j heads], d, [r c]) -> ([B i j], heads, [r c], d)
        t = t.reshape(B * num_h * num_w * heads, width // heads, ws * ws)
        windows.append(
            t.transpose(1, 2).reshape(B * num_h * num_w, heads, ws * ws,
                                      width // heads))
    return tuple(windows)


def _from_windows_low_rank(x: torch.Tensor, batch: int, num_h: int, num_w: int,
                           ws: int, layout: str) -> torch.Tensor:
    _, heads, _, dim = x.shape
    width = heads * dim
    # ([B i j heads], [r c], d) -> ([B i j heads], d, [r c])
    x = x.reshape(-1, ws * ws, dim).transpose(1, 2)
    if layout == 'grid':
        # (B, i, j, [heads d r], c) -> (B, [heads d r], i, c, j)
        x = x.reshape(batch, num_h, num_w, width * ws, ws)
        x = x.permute(0, 3, 1, 4, 2)
    else:
        # (B, [i j], [heads d], [r c]) -> (B, [heads d], [i j], [r c])
        x = x.reshape(batch, num_h * num_w, width, ws * ws)
        x = x.permute(0, 2, 1, 3)
        # (B [heads d], i, j, r, c) -> (B [heads d], i, r, j, c)
        x = x.reshape(batch * width, num_h, num_w, ws, ws)
        x = x.permute(0, 1, 3, 2, 4)
    return x.reshape(batch, width, num_h * ws, num_w * ws)


def from_windows(x: torch.Tensor, batch: int, num_h: int, num_w: int,
                 window_size: int, layout: str,
                 channels_last: bool) -> torch.Tensor:
    """The inverse of :func:`to_windows` for one group: ``(B * n_h * n_w,
    heads, ws * ws, d)`` -> ``(B, heads * d, n_h * ws, n_w * ws)``, in the
    channels-last memory format when ``channels_last`` (under
    ``torch.export``: rank 5 at most, the memory format left to the
    runtime)."""
    if is_exporting():
        return _from_windows_low_rank(x, batch, num_h, num_w, window_size,
                                      layout)
    _, heads, _, dim = x.shape
    ws = window_size
    # (B, win_r, win_c, heads, in_r, in_c, d): axes 1, 2, 3, 4, 5, 6.
    x = x.view(batch, num_h, num_w, heads, ws, ws, dim)
    rows = (4, 1) if layout == 'grid' else (1, 4)
    cols = (5, 2) if layout == 'grid' else (2, 5)
    if channels_last:
        x = x.permute(0, *rows, *cols, 3, 6)
        x = x.reshape(batch, ws * num_h, ws * num_w, heads * dim)
        return x.permute(0, 3, 1, 2)
    x = x.permute(0, 3, 6, *rows, *cols)
    return x.reshape(batch, heads * dim, ws * num_h, ws * num_w)


def pad_to_windows(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Zero-pad right and bottom to a multiple of ``window_size``, as the
    authors do.

    While tracing (ONNX export) sizes are tensors and a Python ``if`` would
    freeze the branch taken at the traced size: always pad then (a zero pad
    is a no-op), so the graph serves every input size.
    """
    H, W = x.shape[-2:]
    pad_h, pad_w = -H % window_size, -W % window_size
    if torch.jit.is_tracing() or pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x


def crop_padding(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``x`` cut back to ``height x width`` (the inverse of
    :func:`pad_to_windows`). Under ``torch.export`` a slice that keeps
    everything stays in the graph as a copy, outside mobile delegates: cut
    only what was padded (while tracing, always, as the padding)."""
    if torch.jit.is_tracing() or x.shape[-2:] != (height, width):
        x = x[:, :, :height, :width]
    return x


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     scale: float, fused: bool) -> torch.Tensor:
    """softmax(q k^T * scale) v; ``fused`` uses
    ``F.scaled_dot_product_attention`` (the value width may differ from the
    query/key width), except under ``torch.export``, where it would become
    mask arithmetic that mobile delegates leave to the slow portable
    kernels."""
    if fused and not is_exporting():
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    # Batched products of 3-D tensors: a 4-D matmul is exported as expand +
    # bmm, and mobile delegates leave the expand out.
    batch, heads, tokens, _ = q.shape
    q, k, v = (t.reshape(batch * heads, tokens, -1) for t in (q, k, v))
    attn = torch.bmm(q, k.transpose(1, 2)) * scale
    return torch.bmm(attn.softmax(dim=-1), v).view(batch, heads, tokens, -1)
