"""The layers EMO and EMOv2 share: window partitions, BN folding, the
channel LayerNorm and its config name."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule

from emo_mm.models.layers import (POINTWISE_MATMUL_TOKENS, WINDOW_LAYOUTS,
                                  LayerNorm2d, PointwiseConv,
                                  _from_windows_low_rank, _to_windows_low_rank,
                                  fold_bn_into_next_conv, fold_conv_module,
                                  from_windows, pad_to_windows,
                                  resolve_norm_cfg, to_windows)

# Window (row, col) of a 14x14 map at window 7 in each layout.
EXPECTED_WINDOWS = {
    'grid': lambda x, i, j: x[i::2, j::2],  # spread over the map
    'tile': lambda x, i, j: x[7 * i:7 * i + 7, 7 * j:7 * j + 7],
}


@pytest.mark.parametrize('layout', WINDOW_LAYOUTS)
@pytest.mark.parametrize('channels_last', [False, True])
def test_window_partition(layout, channels_last):
    heads, dim = 2, 3
    # Channel c of token (r, s) holds 1000 c + 14 r + s.
    tokens = torch.arange(14 * 14, dtype=torch.float).view(14, 14)
    x = torch.stack([tokens + 1000 * c for c in range(2 * heads * dim)])[None]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    windows = to_windows(x, 7, heads, 2, layout)
    assert [w.shape for w in windows] == [(4, heads, 49, dim)] * 2
    for index, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        expected = EXPECTED_WINDOWS[layout](tokens, i, j).reshape(49)
        for group in range(2):
            for head in range(heads):
                for d in range(dim):
                    channel = (group * heads + head) * dim + d
                    torch.testing.assert_close(
                        windows[group][index, head, :, d],
                        expected + 1000 * channel)
    back = from_windows(windows[1], 1, 2, 2, 7, layout, channels_last)
    torch.testing.assert_close(back, x[:, heads * dim:])
    assert back.is_contiguous(memory_format=torch.channels_last) == \
        channels_last


@pytest.mark.parametrize('layout', WINDOW_LAYOUTS)
@pytest.mark.parametrize('groups', [1, 2])
def test_low_rank_partition_moves_the_same_values(layout, groups):
    # The form torch.export takes (no tensor above rank 5) against the
    # rank-8 one, on 2 x 3 windows of 5 x 5 and 3 heads of 4 channels.
    heads, dim, ws = 3, 4, 5
    x = torch.randn(2, groups * heads * dim, 2 * ws, 3 * ws)
    expected = to_windows(x, ws, heads, groups, layout)
    got = _to_windows_low_rank(x, ws, heads, groups, layout)
    assert len(got) == groups
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    back = _from_windows_low_rank(got[-1], 2, 2, 3, ws, layout)
    assert torch.equal(back, x[:, (groups - 1) * heads * dim:])


def test_pad_to_windows_pads_right_and_bottom_with_zeros():
    x = torch.ones(1, 2, 9, 15)
    padded = pad_to_windows(x, 7)
    assert padded.shape == (1, 2, 14, 21)
    assert padded[..., :9, :15].eq(1).all()
    assert padded[..., 9:, :].eq(0).all() and padded[..., 15:].eq(0).all()
    assert pad_to_windows(torch.ones(1, 1, 14, 7), 7).shape == (1, 1, 14, 7)


def test_bn_folding_is_exact():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6).eval()
    nn.init.normal_(bn.running_mean)
    nn.init.uniform_(bn.running_var, 0.5, 2)
    nn.init.normal_(bn.weight)
    nn.init.normal_(bn.bias)
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        module = ConvModule(
            4,
            6,
            3,
            padding=1,
            bias=True,
            norm_cfg=dict(type='BN'),
            act_cfg=dict(type='SiLU')).eval()
        module.conv.load_state_dict(conv.state_dict())
        module.bn.load_state_dict(bn.state_dict())
        expected = module(x)
        folded = fold_conv_module(module)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        torch.testing.assert_close(folded(x), expected)
        # Without a BatchNorm (a LayerNorm, none) it stays as it is.
        plain = ConvModule(4, 6, 1, norm_cfg=None)
        assert fold_conv_module(plain) is plain
        pre = nn.BatchNorm2d(4).eval()
        pre.load_state_dict({
            'weight': torch.randn(4),
            'bias': torch.randn(4),
            'running_mean': torch.randn(4),
            'running_var': torch.rand(4) + 0.5,
            'num_batches_tracked': torch.tensor(0)
        })
        pointwise = nn.Conv2d(4, 6, 1)
        expected = pointwise(pre(x))
        fold_bn_into_next_conv(pre, pointwise)
        torch.testing.assert_close(pointwise(x), expected)


def test_ln2d_resolves_to_the_channel_layernorm():
    cfg = resolve_norm_cfg(dict(type='LN2d'))
    assert cfg == dict(type=LayerNorm2d, eps=1e-6)
    assert resolve_norm_cfg(dict(type='LN2d', eps=1e-5))['eps'] == 1e-5
    assert resolve_norm_cfg(dict(type='SyncBN')) == dict(type='SyncBN')
    norm = LayerNorm2d(5)
    nn.init.normal_(norm.weight)
    x = torch.randn(2, 5, 3, 4)
    expected = F.layer_norm(
        x.permute(0, 2, 3, 1), (5, ), norm.weight, norm.bias,
        norm.eps).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)


def _ops(fn):
    from torch.profiler import profile
    with profile() as prof, torch.no_grad():
        out = fn()
    return out, {event.key for event in prof.key_averages()}


@pytest.mark.parametrize('bias', [False, True])
def test_pointwise(bias):
    """A 1x1 conv of a small NHWC map in eval mode on the CPU runs as a
    matrix product and gives the convolution's output, channels-last; NCHW
    maps, large maps, training mode, tracing and as_matmul=False keep the
    convolution."""
    torch.manual_seed(0)
    conv = PointwiseConv(40, 24, bias=bias).eval()
    assert list(conv.state_dict()) == list(
        nn.Conv2d(40, 24, 1, bias=bias).state_dict())
    nchw = torch.randn(2, 40, 14, 9)
    nhwc = nchw.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = F.conv2d(nchw, conv.weight, conv.bias)
    out, ops = _ops(lambda: conv(nhwc))
    assert 'aten::linear' in ops and 'aten::convolution' not in ops
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert out.shape == expected.shape
    assert out.is_contiguous(memory_format=torch.channels_last)

    large = torch.randn(1, 40, 112,
                        113).contiguous(memory_format=torch.channels_last)
    assert large.shape[2] * large.shape[3] > POINTWISE_MATMUL_TOKENS
    off = PointwiseConv(40, 24, bias=bias, as_matmul=False).eval()
    for case in (lambda: conv(nchw), lambda: conv(large), lambda: off(nhwc),
                 lambda: conv.train()(nhwc),
                 lambda: torch.jit.trace(conv.eval(), nhwc, check_trace=False)
                 (nhwc)):
        _, ops = _ops(case)
        assert 'aten::convolution' in ops or 'aten::_convolution' in ops
        assert 'aten::linear' not in ops
