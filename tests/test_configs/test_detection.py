"""The six detection configs: build on the CPU, count parameters, train,
predict. (Their recipes: test_recipes.py.)"""
import os.path as osp

import pytest
import torch
from conftest import REPO_ROOT as REPO
from conftest import build_cpu_model, det_sample, train_steps
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

# Measured on the authors' backbone (parity-tested) with the mmdet 3.3 neck
# and head; the paper prints 2.3/3.3/6.0 and 10.4/11.5/14.4 million.
CONFIG_PARAMS = {
    'ssdlite/emo_1m_coco.py': 2_311_980,
    'ssdlite/emo_2m_coco.py': 3_342_716,
    'ssdlite/emo_5m_coco.py': 6_076_540,
    'retinanet/emo_1m_coco.py': 10_479_244,
    'retinanet/emo_2m_coco.py': 11_555_644,
    'retinanet/emo_5m_coco.py': 14_440_508,
}


def build_cpu_detector(config):
    """Build a config's detector as tests can run it: BN for SyncBN (no
    DDP here) and no download of the ImageNet weights."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'  # the authors' setting
    cfg.model.backbone.norm_cfg = dict(type='BN')
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.drop_path_rate = 0.0  # a deterministic loss curve
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model


def fixed_batch(size, num_images=2):
    h, w = size
    inputs = torch.rand(num_images, 3, h, w) * 255
    samples = [
        det_sample(
            h, w,
            torch.tensor([[10.0, 20.0, w * 0.6, h * 0.7],
                          [w * 0.5, h * 0.4, w - 5.0, h - 8.0]]),
            torch.tensor([i, 3])) for i in range(num_images)
    ]
    return inputs, samples


@pytest.mark.parametrize('config', sorted(CONFIG_PARAMS))
def test_config_trains_and_predicts(config):
    torch.manual_seed(0)
    cfg, model = build_cpu_detector(config)
    assert sum(p.numel() for p in model.parameters()) == CONFIG_PARAMS[config]

    size = (320, 320) if 'ssdlite' in config else (160, 224)
    inputs, samples = fixed_batch(size)
    batch = model.data_preprocessor(
        dict(inputs=list(inputs), data_samples=samples), training=True)
    losses, _ = train_steps(model, batch, steps=5, lr=1e-4)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses

    model.eval()
    with torch.no_grad():
        results = model(**batch, mode='predict')
    assert len(results) == 2
    for result in results:
        boxes = result.pred_instances.bboxes
        assert boxes.ndim == 2 and boxes.shape[1] == 4
        assert len(result.pred_instances.scores) == len(boxes)


def test_frozen_stages_hold_through_a_training_step():
    """SSDLite-EMO-1M with frozen_stages=2 and norm_eval=False, one step of
    the config's own optimizer (AdamW with weight decay, which would move
    a frozen weight if it reached the optimizer with a gradient): the stem
    and stages 1-2 keep every weight and BN statistic bit for bit, while
    stages 3-4 (their BNs in training mode: new statistics), the neck and
    the head change."""
    torch.manual_seed(0)
    cfg, model = build_cpu_model(
        'ssdlite/emo_1m_coco.py', frozen_stages=2, norm_eval=False)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    inputs, samples = fixed_batch((128, 128))
    batch = model.data_preprocessor(
        dict(inputs=list(inputs), data_samples=samples), training=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss, _ = model.parse_losses(model(**batch, mode='loss'))
    wrapper.update_params(loss)

    def changed(name):
        return not torch.equal(model.state_dict()[name], before[name])

    frozen = ('backbone.stages.0.', 'backbone.stages.1.', 'backbone.stages.2.')
    stats = [k for k in before if k.endswith('running_mean')]
    assert any(k.startswith(frozen) for k in stats)
    for name in before:
        if name.startswith(frozen):
            assert not changed(name), name
    for part in ('backbone.stages.3.', 'backbone.stages.4.', 'neck.',
                 'bbox_head.'):
        assert any(changed(k) for k in before if k.startswith(part)), part
    assert all(
        changed(k) for k in stats
        if k.startswith(('backbone.stages.3.', 'backbone.stages.4.')))


@pytest.mark.parametrize('config,slowed', [
    ('demo/ssdlite_emo_1m_shapes.py', '{block}.proj.'),
    ('demo/ssdlite_emov2_1m_shapes.py', '{block}.gamma'),
])
def test_demo_slows_exactly_the_attending_blocks(config, slowed):
    """The detection demos grow the output of each attending block (EMO:
    its projection; EMOv2: its LayerScale) at 1/20 of the lr, and nothing
    else: a custom key that names no parameter changes nothing, silently."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    names = {id(p): name for name, p in model.named_parameters()}
    base_lr = cfg.optim_wrapper.optimizer.lr
    slow = {
        names[id(p)]
        for group in optimizer.param_groups
        for p in group['params']
        if group['lr'] == pytest.approx(base_lr * 0.05)
    }
    blocks = [
        f'backbone.{name}' for name, module in model.backbone.named_modules()
        if getattr(module, 'attn', None) is not None
    ]
    assert len(blocks) == 9  # 7 in stage 3, 2 in stage 4 (EMO-1M, EMOv2-1M)
    expected = {
        name
        for name in names.values()
        for block in blocks if name.startswith(slowed.format(block=block))
    }
    assert len(expected) >= len(blocks)
    assert slow == expected
