"""The configs keep the authors' recipes: the settings their logs and config
dumps record, checked config by config for detection, segmentation and
classification in one table; no weight decay on the parameters they exempt;
the ImageNet seed, sampler and EMA of their logs."""
import copy
import os.path as osp

import pytest
import torch
from conftest import REPO_ROOT, build_cpu_model, logged_settings
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import HOOKS, MODELS


def lookup(cfg, path):
    """``cfg`` at a dotted ``path``; ``name[Type]`` picks the list entry of
    that ``type``, a number the list entry at that index."""
    value = cfg
    for part in path.split('.'):
        if part.endswith(']'):
            name, kind = part[:-1].split('[')
            matches = [v for v in value[name] if v.type == kind]
            assert len(matches) == 1, (path, matches)
            value = matches[0]
        elif part.isdigit():
            value = value[int(part)]
        else:
            value = value[part]
    return value


def backbone_weights(arch):
    return lambda url: url.endswith(f'EMO_{arch.upper()}/net.pth')


def segmentation_recipe(method, arch):
    window, drop_path, channels = {
        '1m': (7, 0.04036, (80, 168)),
        '2m': (7, 0.05, (120, 200)),
        '5m': (16, 0.05, (160, 288)),
    }[arch]
    recipe = {
        'model.pretrained': None,  # weights via init_cfg
        'model.backbone.arch': arch,
        'model.backbone.window_size': window,
        'model.backbone.drop_path_rate': drop_path,
        'model.backbone.out_indices': (1, 2, 3, 4),
        'model.backbone.frozen_stages': -1,
        'model.backbone.norm_eval': False,
        'model.backbone.init_cfg.checkpoint': backbone_weights(arch),
        'model.decode_head.in_channels': channels[1],
        'model.decode_head.in_index': 3,
        'model.decode_head.channels': 256,
        'model.decode_head.num_classes': 150,
        'model.auxiliary_head.type': 'FCNHead',
        'model.auxiliary_head.in_channels': channels[0],
        'model.auxiliary_head.in_index': 2,
        'model.auxiliary_head.channels': 256,
        'model.auxiliary_head.loss_decode.loss_weight': 0.4,
    }
    if method == 'deeplabv3':
        recipe.update({
            'model.decode_head.type': 'ASPPHead',
            'model.decode_head.dilations': (1, 12, 24, 36)
        })
    else:
        recipe.update({
            'model.decode_head.type': 'PSPHead',
            'model.decode_head.pool_scales': (1, 2, 3, 6)
        })
    return recipe


# config -> {setting: value, or a predicate on it}.
RECIPES = {
    'ssdlite/emo_5m_coco.py': {
        'model.backbone.arch': '5m',
        'model.backbone.window_size': 10,
        'model.backbone.out_indices': (3, 4),
        'model.backbone.drop_path_rate': 0.05,
        'model.backbone.norm_eval': True,
        'model.backbone.init_cfg.checkpoint': backbone_weights('5m'),
        'optim_wrapper.optimizer.type': 'AdamW',
        'optim_wrapper.optimizer.lr': pytest.approx(1.2e-3),
        'train_dataloader.batch_size': 24,
        'train_dataloader.dataset.times': 5,
        'train_cfg.max_epochs': 120,
        'train_cfg.val_interval': 5,
        'auto_scale_lr.base_batch_size': 192,
        'param_scheduler': lambda schedulers: len(schedulers) == 2,
        'param_scheduler.0.type': 'LinearLR',
        'param_scheduler.0.start_factor': 0.001,
        'param_scheduler.0.end': 500,
        'param_scheduler.1.type': 'CosineAnnealingLR',
        'param_scheduler.1.eta_min': 0,
    },
    'retinanet/emo_1m_coco.py': {
        'model.backbone.frozen_stages': 1,
        'model.backbone.out_indices': (1, 2, 3, 4),
        'model.backbone.window_size': 7,
        'model.backbone.drop_path_rate': 0.04036,
        'model.neck.start_level': 1,
        'model.neck.add_extra_convs': 'on_input',
        'optim_wrapper.optimizer.lr': pytest.approx(2e-4),
        'train_dataloader.batch_size': 4,
        'train_cfg.max_epochs': 12,
        'auto_scale_lr.base_batch_size': 32,
    },
    **{
        f'{method}/emo_{arch}_ade20k.py': segmentation_recipe(method, arch)
        for method in ('deeplabv3', 'pspnet')
        for arch in ('1m', '2m', '5m') if (method, arch) != ('pspnet', '5m')
    },
    'pspnet/emo_5m_ade20k.py': {
        **segmentation_recipe('pspnet', '5m'),
        'optim_wrapper.optimizer.type': 'AdamW',
        'optim_wrapper.optimizer.lr': 1.2e-4,
        'optim_wrapper.optimizer.weight_decay': 0.01,
        'param_scheduler': lambda schedulers: len(schedulers) == 1,
        'param_scheduler.0.type': 'PolyLR',
        'param_scheduler.0.power': 0.9,
        'param_scheduler.0.eta_min': 0.0,
        'param_scheduler.0.end': 80000,
        'param_scheduler.0.by_epoch': False,
        'train_cfg.max_iters': 80000,
        'train_cfg.val_interval': 8000,
        'default_hooks.checkpoint.interval': 8000,
        'train_dataloader.batch_size': 4,  # x 8 GPUs
        'auto_scale_lr.base_batch_size': 32,
        'train_dataloader.dataset.type': 'ADE20KDataset',
        'train_pipeline.2.type': 'RandomResize',
        'train_pipeline.2.scale': (2048, 512),
        'train_pipeline.2.ratio_range': (0.5, 2.0),
        'train_pipeline.3.crop_size': (512, 512),
        'train_pipeline.3.cat_max_ratio': 0.75,
        'model.data_preprocessor.size': (512, 512),
        'model.test_cfg.mode': 'whole',
        'val_evaluator.iou_metrics': ['mIoU'],
    },
    'imagenet/emo_5m_in1k.py': {
        'model.backbone.arch':
        '5m',
        'model.backbone.window_size':
        7,
        'model.backbone.final_norm':
        True,
        'model.head.loss.label_smooth_val':
        0.1,
        'optim_wrapper.optimizer.type':
        'AdamW',
        # What the authors' logs say ran (their trainer scales the 1.5e-3
        # of their config file by 2048 / 512).
        'optim_wrapper.optimizer.lr':
        6e-3,
        'optim_wrapper.optimizer.weight_decay':
        0.05,
        'optim_wrapper.clip_grad.max_norm':
        5.0,
        'optim_wrapper.paramwise_cfg.norm_decay_mult':
        0.0,
        'optim_wrapper.paramwise_cfg.bias_decay_mult':
        0.0,
        'auto_scale_lr.base_batch_size':
        2048,
        'train_dataloader.batch_size':
        2048 // 8,
        # Every iteration's lr against timm: tests/test_engine/
        # test_schedulers.py.
        'param_scheduler.type':
        'TimmCosineLR',
        'train_cfg.max_epochs':
        300,
        'custom_hooks[EMAHook].momentum':
        lambda momentum: 1 - momentum == pytest.approx(0.9998),
        'custom_hooks[EMAHook].evaluate_on_ema':
        True,
        'custom_hooks[EMAHook].evaluate_on_origin':
        True,
        'train_pipeline':
        lambda pipeline: ('RandomErasing' not in [t.type for t in pipeline] and
                          'RandAugment' in [t.type for t in pipeline]),
        'train_pipeline.1.transforms':
        lambda branches:
        [t.interpolation for branch in branches
         for t in branch] == ['bilinear', 'bicubic'],
        'test_pipeline.1.type':
        'ResizeEdge',
        'test_pipeline.1.scale':
        256,
        'test_pipeline.1.edge':
        'short',
        'test_pipeline.1.interpolation':
        'bicubic',
        'test_pipeline.2.crop_size':
        224,
    },
}


@pytest.mark.parametrize('config', sorted(RECIPES))
def test_config_keeps_the_authors_recipe(config):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', config))
    for path, expected in RECIPES[config].items():
        value = lookup(cfg, path)
        if callable(expected):
            assert expected(value), (path, value)
        else:
            assert value == expected, (path, value, expected)


# config -> {parameter: weight decay}: the authors' mmdet and mmseg
# optimizers exempt the norms of their blocks, not the stem's BN nor the rest
# of the network; their ImageNet trainer every norm and bias (timm's rule).
NO_DECAY = {
    'ssdlite/emo_1m_coco.py': {
        'backbone.stages.1.1.norm.weight': 0,
        'backbone.stages.3.1.norm.bias': 0,
        'backbone.stages.2.0.conv_local.bn.weight': 0,
        'backbone.stages.0.0.bn.weight': 0.05,  # stem BN: decayed
        'backbone.stages.3.1.attn.qk.weight': 0.05,
        'neck.extra_layers.0.0.bn.weight': 0.05,
    },
    'deeplabv3/emo_1m_ade20k.py': {
        'backbone.stages.1.1.norm.weight': 0,
        'backbone.stages.4.1.norm.bias': 0,
        'backbone.stages.3.0.conv_local.bn.weight': 0,
        'backbone.stages.0.0.bn.weight': 0.01,  # stem BN: decayed
        'backbone.stages.3.1.attn.qk.weight': 0.01,
        'decode_head.bottleneck.bn.weight': 0.01,
        'auxiliary_head.convs.0.bn.weight': 0.01,
    },
    'imagenet/emo_1m_in1k.py': {
        'backbone.stages.0.0.bn.weight': 0,  # stem BN: exempt here
        'backbone.stages.0.0.conv.bias': 0,
        'backbone.stages.1.1.norm.weight': 0,
        'backbone.stages.3.0.conv_local.bn.weight': 0,
        'backbone.norm.weight': 0,
        'head.fc.bias': 0,
        'backbone.stages.3.1.attn.qk.weight': 0.05,
        'backbone.stages.3.1.proj.weight': 0.05,
        'head.fc.weight': 0.05,
    },
}


@pytest.mark.parametrize('config', sorted(NO_DECAY))
def test_no_weight_decay_on_the_authors_norm_parameters(config):
    from mmengine.optim import build_optim_wrapper
    cfg, model = build_cpu_model(config)
    if cfg.optim_wrapper.type == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {
        names[id(p)]: group['weight_decay']
        for group in wrapper.optimizer.param_groups
        for p in group['params']
    }
    assert len(decay) == len(names)
    for name, expected in NO_DECAY[config].items():
        assert decay[name] == expected, name


def imagenet_config(variant):
    return Config.fromfile(
        osp.join(REPO_ROOT, 'configs', 'imagenet', f'emo_{variant}_in1k.py'))


@pytest.mark.parametrize('variant', ('1m', '2m', '5m', '6m'))
def test_seed_sampler_and_ema_are_the_logged_ones(variant):
    log = logged_settings(variant)
    cfg = imagenet_config(variant)
    assert cfg.randomness.seed == log['seed']
    # The authors seed each process with seed + rank.
    assert cfg.randomness.diff_rank_seed is True
    assert cfg.train_dataloader.drop_last == log['trainer.data.drop_last']
    assert cfg.train_dataloader.get('persistent_workers', False) == \
        log['trainer.data.persistent_workers']
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert len(ema) == 1
    assert 1 - ema[0].momentum == pytest.approx(log['trainer.ema'])
    assert ema[0].update_buffers is True
    assert cfg.optim_wrapper.optimizer.lr == log['optim.lr']
    assert cfg.auto_scale_lr.base_batch_size == log['trainer.data.batch_size']


@pytest.mark.parametrize('family', ['ssdlite', 'retinanet'])
def test_detection_configs_use_the_logged_seed(family):
    # The authors' mmdet logs: "Set random seed to 0, deterministic: False".
    for variant in ('1m', '2m', '5m'):
        cfg = Config.fromfile(
            osp.join(REPO_ROOT, 'configs', family, f'emo_{variant}_coco.py'))
        assert cfg.randomness == dict(seed=0, deterministic=False)


def test_ema_hook_averages_batchnorm_statistics():
    """The config's EMAHook on the config's classifier: after a few training
    steps every floating-point entry of the EMA state dict, BN running
    statistics included, follows the authors' update
    (ema = decay * ema + (1 - decay) * current); counters are not averaged.
    mmengine's first update copies the model where the authors' starts from
    the initial weights, a difference that decays as 0.9998^step."""
    cfg = imagenet_config('1m')
    init_default_scope('mmpretrain')
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.train()
    hook_cfg = copy.deepcopy(
        next(h for h in cfg.custom_hooks if h.type == 'EMAHook'))
    hook_cfg.pop('priority')  # the Runner's business, not the hook's
    decay = 1 - hook_cfg.momentum
    hook = HOOKS.build(hook_cfg)

    class Runner:  # the attributes EMAHook reads
        iter = 0

    runner = Runner()
    runner.model = model
    hook.before_run(runner)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reference = None
    for step in range(4):
        runner.iter = step
        images = torch.randn(2, 3, 64, 64) * (step + 1)
        loss = model(images, mode='tensor').square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        hook.after_train_iter(runner, step)
        current = {
            k: v.detach().clone()
            for k, v in model.state_dict().items()
        }
        if reference is None:
            reference = current
        else:
            for key, value in reference.items():
                if value.is_floating_point():
                    value.mul_(decay).add_(current[key], alpha=1 - decay)
    averaged = hook.ema_model.module.state_dict()
    stats = [
        k for k in reference if k.endswith(('running_mean', 'running_var'))
    ]
    assert stats  # the classifier has BatchNorms (stages 1-2, stem)
    for key in stats:
        # Not simply the model's current statistics ...
        assert not torch.allclose(averaged[key], current[key]), key
        # ... but their average.
        torch.testing.assert_close(
            averaged[key], reference[key], rtol=1e-5, atol=1e-7, msg=key)
    for key, value in reference.items():
        if value.is_floating_point():
            torch.testing.assert_close(
                averaged[key], value, rtol=1e-5, atol=1e-7, msg=key)
        else:
            assert torch.equal(averaged[key], value), key
