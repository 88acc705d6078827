"""The four ImageNet configs: each builds on the CPU with the paper's
parameter count, trains a step and predicts."""
import pytest
import torch
from conftest import CLASSIFIER_PARAMS, build_cpu_model

# Backbone + final norm + 1000-class head; the paper's 1.3/2.3/5.1/6.1M.
CONFIG_PARAMS = {
    f'emo_{arch}_in1k.py': count
    for arch, count in CLASSIFIER_PARAMS.items()
}


@pytest.mark.parametrize('config', sorted(CONFIG_PARAMS))
def test_config_builds_and_trains_a_step(config):
    torch.manual_seed(0)
    cfg, model = build_cpu_model(f'imagenet/{config}')
    assert sum(p.numel() for p in model.parameters()) == CONFIG_PARAMS[config]
    from mmengine.optim import build_optim_wrapper
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'  # as the authors
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(label) for label in (3, 999)]
    batch = model.data_preprocessor(
        dict(
            inputs=list(
                torch.randint(0, 256, (2, 3, 160, 160), dtype=torch.uint8)),
            data_samples=samples),
        training=True)
    model.train()
    before = model.head.fc.weight.detach().clone()
    log_vars = model.train_step(batch, wrapper)
    assert torch.isfinite(log_vars['loss'])
    assert not torch.equal(before, model.head.fc.weight)
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(batch), mode='predict')
    assert results[0].pred_score.shape == (1000, )
