"""torch.compile gives the eager outputs of EMO and EMOv2, with weights like
trained ones: random BatchNorm statistics and affines and, in EMOv2, a
LayerScale of 0.3-0.7 (its 1e-6 start would hide every block), so that the
comparison is not one of tiny numbers (outputs of 0.1-1.5 here)."""
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from emo_mm.models import EMO, EMOv2
from emo_mm.models.backbones.emov2 import I2RMB


def trained_like(family):
    """A channels-last ``family`` 1M (as every config but Mask R-CNN runs
    it; its eval-mode 1x1 convs then run as matrix products) in eval mode,
    with random BN statistics and affines and LayerScales in [0.3, 0.7]."""
    torch.manual_seed(0)
    model = family(arch='1m', out_indices=(0, 1, 2, 3, 4), channels_last=True)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            elif isinstance(m, I2RMB):
                m.gamma.uniform_(0.3, 0.7)
    return model.eval()


def check_compiled(module, x, backend):
    """``module``'s outputs on ``x``, compiled in one graph (a graph break
    fails) against eager, relative to each output's scale: sums in another
    order differ in the last bits."""
    with torch.no_grad():
        expected = module(x)
        outs = torch.compile(module, backend=backend, fullgraph=True)(x)
    if isinstance(expected, torch.Tensor):
        expected, outs = (expected, ), (outs, )
    assert len(outs) == len(expected)
    for i, (out, ref) in enumerate(zip(outs, expected)):
        assert out.shape == ref.shape, f'output {i}'
        error = ((out - ref).abs().max() / ref.abs().max()).item()
        assert error < 1e-5, f'output {i}: relative error {error:.2e}'


@pytest.mark.parametrize('family', [EMO, EMOv2])
def test_compiled_backbone_equals_eager(family):
    """The whole backbone, through dynamo and AOTAutograd (aot_eager: the
    graph capture and decompositions of every compile, without code
    generation; inductor's C++ below). At 72x88 no window (7) divides the
    stage-3/4 maps (5x6, 3x3), so the padding is traced too."""
    check_compiled(
        trained_like(family), torch.randn(2, 3, 72, 88), 'aot_eager')


def test_inductor_compiles_the_attending_blocks():
    """Inductor's C++ code for one attending block of each family (EMO's
    window attention, EMOv2's spanning one), on a 5x6 map that window 7
    pads. Over 20 s: 34 s of CPU time with an empty inductor cache
    (TORCHINDUCTOR_CACHE_DIR), 25 s of it g++ building inductor's CPU
    checks and headers for a process's first compile; 5 s once cached. The
    blocks only: a whole backbone took 140-170 s on 2 busy cores."""
    x = torch.randn(2, 80, 5, 6).contiguous(memory_format=torch.channels_last)
    for family in (EMO, EMOv2):
        block = trained_like(family).stages[3][1]
        assert block.attn is not None
        check_compiled(block, x, 'inductor')
