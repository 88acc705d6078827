"""emo_mm.models.backbones.base: what EMO and EMOv2 share, tested on both
(freezing, the stage loop with each family's block, shared arguments)."""
import copy

import pytest
import torch

from emo_mm.models import EMO, EMOv2
from emo_mm.models.layers import PointwiseConv


@pytest.mark.parametrize('frozen_stages', [0, 2])
@pytest.mark.parametrize('backbone', [EMO, EMOv2])
def test_frozen_stages_hold_through_a_training_step(backbone, frozen_stages):
    """norm_eval=False: a training step (train mode, backward, SGD over all
    parameters) leaves the frozen stages' weights and BatchNorm statistics
    as they were, and changes the other stages' statistics and weights."""
    torch.manual_seed(0)
    model = backbone(
        arch='1m', frozen_stages=frozen_stages,
        out_indices=(0, 1, 2, 3, 4)).train()
    with torch.no_grad():  # EMOv2's LayerScale of 1e-6 would hide blocks
        for name, param in model.named_parameters():
            if name.endswith('gamma'):
                param.fill_(0.5)
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sum(o.square().mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
    optimizer.step()
    after = model.state_dict()
    for i, stage in enumerate(model.stages):
        keys = {f'stages.{i}.{key}' for key in stage.state_dict()}
        changed = {key for key in keys if not after[key].equal(before[key])}
        stats = {key for key in keys if key.endswith('running_mean')}
        params = {f'stages.{i}.{name}' for name, _ in stage.named_parameters()}
        assert stats and params
        if i <= frozen_stages:
            assert not changed, sorted(changed)
        else:
            assert stats <= changed and params & changed, i


@pytest.mark.parametrize('family', [EMO, EMOv2])
def test_pointwise_as_matmul_reaches_every_projection(family):
    """The backbone argument sets every 1x1 projection (each block's output
    projection, each attention's qk); both settings give the same values."""
    torch.manual_seed(0)
    on = family(arch='1m', channels_last=True).eval()
    off = family(
        arch='1m', channels_last=True, pointwise_as_matmul=False).eval()
    off.load_state_dict(on.state_dict())
    depths = family.arch_settings['1m']['depths']
    attending = depths[2] + depths[3] - 2
    for model, value in ((on, True), (off, False)):
        convs = [m for m in model.modules() if isinstance(m, PointwiseConv)]
        blocks = sum(depths) + (family is EMO)  # EMO's stem has a block
        assert len(convs) == blocks + attending
        assert all(m.as_matmul is value for m in convs)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        for a, b in zip(on(x), off(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('family', [EMO, EMOv2])
def test_stage_loop(family):
    """Each stage starts with a stride-2 block without skip or attention;
    the later blocks of stages 3-4 attend; widths follow the arch; the
    drop-path rate rises over the blocks in order."""
    model = family(arch='2m', drop_path_rate=0.2)
    arch = family.arch_settings['2m']
    rates = []
    for i, stage in enumerate(model.stages[1:]):
        assert len(stage) == arch['depths'][i]
        for j, block in enumerate(stage):
            assert block.has_skip == (j > 0)
            assert (block.attn is not None) == (j > 0 and i >= 2)
            assert block.proj.out_channels == arch['channels'][i]
            rates.append(getattr(block.drop_path, 'drop_prob', 0.0))
    assert rates == pytest.approx(
        torch.linspace(0, 0.2, sum(arch['depths'])).tolist())
    assert model.out_channels == (arch['stem_channels'], *arch['channels'])
