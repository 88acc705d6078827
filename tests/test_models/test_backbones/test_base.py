"""emo_mm.models.backbones.base: what EMO and EMOv2 share, tested on both."""
import copy

import pytest
import torch

from emo_mm.models import EMO, EMOv2


@pytest.mark.parametrize('frozen_stages', [0, 2])
@pytest.mark.parametrize('backbone', [EMO, EMOv2])
def test_frozen_stages_hold_through_a_training_step(backbone, frozen_stages):
    """norm_eval=False: a training step (train mode, backward, SGD over all
    parameters) leaves the frozen stages' weights and BatchNorm statistics
    as they were, and changes the other stages' statistics and weights."""
    torch.manual_seed(0)
    model = backbone(arch='1m', frozen_stages=frozen_stages,
                     out_indices=(0, 1, 2, 3, 4)).train()
    with torch.no_grad():  # EMOv2's LayerScale of 1e-6 would hide blocks
        for name, param in model.named_parameters():
            if name.endswith('gamma'):
                param.fill_(0.5)
    before = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sum(o.square().mean()
        for o in model(torch.randn(2, 3, 64, 64))).backward()
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
