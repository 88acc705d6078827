"""Layers that EMO and EMOv2 share: the channel LayerNorm, BatchNorm folding
and the window partition of their attention."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

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


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out NHWC (and not also NCHW, e.g. when C=1)."""
    return (x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous())


# In eval mode a 1x1 convolution of a small channels-last map (at most
# POINTWISE_MATMUL_TOKENS pixels over the batch) runs as a matrix product
# over its (B, H, W, C) view (no copy either way): oneDNN's 1x1 convolution
# costs a fixed ~60 us more per call on this CPU, most of the time at 14x14
# and 7x7. Measured on EMO-1M's bias-free projections and attention qk,
# batch 1, 224x224, 2 threads: 5.6 -> 4.2 ms in all; the expansions, larger
# outputs with a bias, stay convolutions (slower as a product at 28x28 and
# above), and so do large maps (no gain at batch 16). Off while tracing
# (exported graphs keep Conv nodes) and in training mode (the gradients'
# kernels stay as tested).
POINTWISE_AS_MATMUL = True
POINTWISE_MATMUL_TOKENS = 112 * 112


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a 1x1, stride-1, ungrouped ``conv``, computed as
    :data:`POINTWISE_AS_MATMUL` says."""
    if (POINTWISE_AS_MATMUL and not conv.training
            and not torch.jit.is_tracing() and is_channels_last(x)
            and x.shape[0] * x.shape[2] * x.shape[3] <= POINTWISE_MATMUL_TOKENS):
        return F.linear(x.permute(0, 2, 3, 1), conv.weight.flatten(1),
                        conv.bias).permute(0, 3, 1, 2)
    return conv(x)


def bn_affine(bn: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
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
    scale, shift = bn_affine(bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                      conv.stride, conv.padding, conv.dilation, conv.groups,
                      bias=True).to(conv.weight)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else 0
    fused.bias.copy_(bias * scale + shift)
    return fused


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


def to_windows(x: torch.Tensor, window_size: int, num_heads: int,
               groups: int, layout: str) -> torch.Tensor:
    """Partition a padded map into windows of attention heads.

    Args:
        x (Tensor): ``(B, groups * num_heads * d, n_h * ws, n_w * ws)``;
            ``groups`` is 2 for stacked queries and keys, 1 for values.
        window_size (int): ``ws``.
        num_heads (int): Attention heads.
        groups (int): Tensors stacked along the channels.
        layout (str): ``'grid'`` or ``'tile'`` (see :data:`WINDOW_LAYOUTS`).

    Returns:
        Tensor: ``(groups, B * n_h * n_w, num_heads, ws * ws, d)``. A
        channels-last input is read through its ``(B, H, W, C)`` view, so
        that either memory format costs one copy.
    """
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
        x = x.permute(0, 2, 3, 1).view(B, *rows, *cols, groups, num_heads,
                                       dim)
        win_r, in_r = (2, 1) if layout == 'grid' else (1, 2)
        win_c, in_c = (4, 3) if layout == 'grid' else (3, 4)
        x = x.permute(5, 0, win_r, win_c, 6, in_r, in_c, 7)
    else:
        x = x.view(B, groups, num_heads, dim, *rows, *cols)
        win_r, in_r = (5, 4) if layout == 'grid' else (4, 5)
        win_c, in_c = (7, 6) if layout == 'grid' else (6, 7)
        x = x.permute(1, 0, win_r, win_c, 2, in_r, in_c, 3)
    return x.reshape(groups, B * num_h * num_w, num_heads, ws * ws, dim)


def from_windows(x: torch.Tensor, batch: int, num_h: int, num_w: int,
                 window_size: int, layout: str,
                 channels_last: bool) -> torch.Tensor:
    """The inverse of :func:`to_windows` for one group: ``(B * n_h * n_w,
    heads, ws * ws, d)`` -> ``(B, heads * d, n_h * ws, n_w * ws)``, in the
    channels-last memory format when ``channels_last``."""
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


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     scale: float, fused: bool) -> torch.Tensor:
    """softmax(q k^T * scale) v; ``fused`` uses
    ``F.scaled_dot_product_attention`` (the value width may differ from the
    query/key width)."""
    if fused:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    attn = (q @ k.transpose(-2, -1)) * scale
    return attn.softmax(dim=-1) @ v
