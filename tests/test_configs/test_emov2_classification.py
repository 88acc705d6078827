"""The EMOv2 ImageNet configs (configs/imagenet/emov2_*_in1k.py): the
issue's parameter counts, a training step on the CPU, the recipe that the
settings rows of the authors' six ImageNet logs record, their trainer's
no-weight-decay set, and the authors' logits from their checkpoint layout.

References outside this code: ../shared/reference/emov2_training_logs
(ImageNet_EMOv2_*.txt) and ../shared/fixtures_v2 (the authors' EMOv2 code
run with random weights). The authors' trainer (zhangzjn/EMOv2, optim/
__init__.py and trainer/_base_trainer.py) is quoted where it is used.
"""
import bisect
import copy
import math
import os.path as osp
import re
from types import SimpleNamespace

import pytest
import torch
from conftest import (REPO_ROOT, _fixtures_missing, build_cpu_model,
                      emov2_logged_settings, shipped_config)

CONFIGS = ('emov2_1m_in1k.py', 'emov2_2m_in1k.py', 'emov2_5m_in1k.py',
           'emov2_20m_in1k.py', 'emov2_5m_512_in1k.py')
# The issue's classifier counts (backbone + final norm + 1000-class head),
# measured with the authors' own code; the 512 model is EMOv2-5M.
PARAMS = {
    'emov2_1m_in1k.py': 1_460_844,
    'emov2_2m_in1k.py': 2_384_312,
    'emov2_5m_in1k.py': 5_126_440,
    'emov2_20m_in1k.py': 20_195_208,
    'emov2_5m_512_in1k.py': 5_126_440,
}
# config -> (the log whose settings rows it follows, arch, training size,
# window, drop path). Window and drop path are not settings rows: they are
# the constructors' (the authors' model/lib_emo/emo2.py: EMO2_{V}_k5_hybrid
# window_sizes 7 and drop_path 0.04036 / 0.05 / 0.05 / 0.1;
# EMO2_5M_k5_hybrid_512 window 8). EMOv2-20M has no log: its recipe is the
# authors' configs/emo2/emo2_224.py, whose settings are those of the logs
# (test_logged_settings_differ_only_in_the_model shows that the logs agree
# with one another); the 512 model's is emo2_512.py, emo2_224.py at size 512.
RECIPES = {
    'emov2_1m_in1k.py': ('1M_224', '1m', 224, 7, 0.04036),
    'emov2_2m_in1k.py': ('2M_224', '2m', 224, 7, 0.05),
    'emov2_5m_in1k.py': ('5M_224', '5m', 224, 7, 0.05),
    'emov2_20m_in1k.py': ('5M_224', '20m', 224, 7, 0.1),
    'emov2_5m_512_in1k.py': ('5M_224', '5m', 512, 8, 0.05),
}
LOGS = ('1M_224', '1M_224_KD', '2M_224', '2M_224_KD', '5M_224', '5M_224_KD')
# Rows that name the run rather than set it.
RUN_ROWS = ('model.name', 'opts', 'command', 'task_start_time', 'logdir',
            'logdir_train', 'logdir_test')
FIXTURES_V2 = osp.join(REPO_ROOT, '..', 'shared', 'fixtures_v2')
# fixture -> the config whose model it checks.
LOGIT_FIXTURES = {
    'emo2_1m_k5_hybrid_224x224.pt': 'emov2_1m_in1k.py',
    'emo2_5m_k5_hybrid_200x264.pt': 'emov2_5m_in1k.py',
}


def config(name):
    """``configs/imagenet/<name>`` (:func:`conftest.shipped_config`)."""
    return shipped_config(f'imagenet/{name}')


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def cpu_optim_wrapper(cfg, model):
    from mmengine.optim import build_optim_wrapper
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'  # scaler 'native'
    cfg = copy.deepcopy(cfg)
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    return build_optim_wrapper(model, cfg.optim_wrapper)


# (1) and (2) -----------------------------------------------------------------


@pytest.mark.parametrize('name', CONFIGS)
def test_config_has_the_issue_params_and_trains_a_step(name):
    """The issue's exact count, the authors' no-decay set (section 4, on
    the fresh model: one build serves both), then one step of the config's
    optimizer on two 64-px images (tiny: the windows pad), which changes
    the head and the backbone."""
    torch.manual_seed(0)
    cfg, model = build_cpu_model(f'imagenet/{name}')
    assert count_params(model) == PARAMS[name]
    check_no_weight_decay(cfg, model)
    # The authors' head init: trunc_normal_(std=0.02) (|w| <= 2), bias 0.
    weight = model.head.fc.weight
    assert weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert weight.abs().max().item() <= 2
    assert not model.head.fc.bias.any()
    wrapper = cpu_optim_wrapper(cfg, model)
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(label) for label in (3, 999)]
    batch = model.data_preprocessor(
        dict(
            inputs=list(
                torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)),
            data_samples=samples),
        training=True)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    log_vars = model.train_step(batch, wrapper)
    assert torch.isfinite(log_vars['loss'])
    changed = {
        n
        for n, p in model.named_parameters() if not torch.equal(before[n], p)
    }
    assert 'head.fc.weight' in changed
    assert any(n.startswith('backbone.stages.0.') for n in changed)
    assert any(n.startswith('backbone.stages.4.') for n in changed)
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(batch), mode='predict')
    assert results[0].pred_score.shape == (1000, )


# (3) the recipe --------------------------------------------------------------


def test_logged_settings_differ_only_in_the_model():
    """The six logs set the same recipe: they differ in the model, and the
    three _KD runs add the distillation loss (a TResNet-L teacher, which
    our configs leave out) and its config path, nothing else."""
    rows = {name: emov2_logged_settings(name) for name in LOGS}
    reference = rows['1M_224']
    for name, log in rows.items():
        assert set(log) == set(reference), name
        differ = {
            k
            for k in log if k not in RUN_ROWS and log[k] != reference[k]
        }
        if name.endswith('_KD'):
            assert differ == {'loss.loss_terms', 'cfg_path'}, (name, differ)
            # The row holds a Namespace repr: kept as text. The run's
            # cross-entropy term, then the distillation term.
            text = log['loss.loss_terms']
            assert text.startswith(
                repr(reference['loss.loss_terms'])[:-1] +
                ", {'type': 'CLSKDLoss'"), name
            assert "name='tresnet_l_v2'" in text, name
        else:
            assert not differ, (name, differ)
            assert log['cfg_path'] == 'configs.emo2.emo2'


def _test_transforms(text):
    """(resize size, its interpolation, crop size) of a logged
    data.test_transforms row (it holds enum reprs: kept as text)."""
    resize = re.search(
        r"'type': 'Resize', 'size': (\d+), 'interpolation': "
        r"<InterpolationMode\.(\w+)", text)
    crop = re.search(r"'type': 'CenterCrop', 'size': (\d+)", text)
    return int(resize.group(1)), resize.group(2).lower(), int(crop.group(1))


@pytest.mark.parametrize('name', CONFIGS)
def test_config_keeps_the_logged_recipe(name):
    log_name, arch, size, window, drop_path = RECIPES[name]
    log = emov2_logged_settings(log_name)
    cfg = config(name)
    world_size = log['world_size']
    assert world_size == 8 and log['trainer.dist_BN'] == ''

    # The model: the logged constructor and classes.
    match = re.match(r'EMO2_(\d+M)_k5_hybrid', log['model.name'])
    assert match and (name == 'emov2_20m_in1k.py'
                      or match.group(1).lower() == arch), log['model.name']
    backbone = cfg.model.backbone
    assert cfg.model.type == 'EMOImageClassifier'
    assert (backbone.type, backbone.arch) == ('EMOv2', arch)
    assert backbone.out_indices == (4, ) and backbone.final_norm is True
    assert backbone.window_size == window
    assert backbone.drop_path_rate == drop_path
    # sync_BN 'none': plain BN (the backbone's default).
    assert log['trainer.sync_BN'] == 'none'
    assert backbone.get('norm_cfg', dict(type='BN'))['type'] == 'BN'
    assert cfg.model.neck.type == 'GlobalAveragePooling'
    assert cfg.model.head.type == 'LinearClsHead'
    assert cfg.model.head.num_classes == log['nb_classes'] == 1000

    # Batch, loader and length of the run.
    loader = cfg.train_dataloader
    assert loader.batch_size == log['trainer.data.batch_size_per_gpu'] == 128
    assert loader.batch_size * world_size == log['batch_size'] == \
        log['trainer.data.batch_size'] == 1024
    assert cfg.auto_scale_lr.base_batch_size == log['batch_size']
    assert loader.num_workers == log['trainer.data.num_workers_per_gpu']
    assert loader.drop_last == log['trainer.data.drop_last']
    assert loader.pin_memory == log['trainer.data.pin_memory']
    assert loader.get('persistent_workers', False) == \
        log['trainer.data.persistent_workers']
    assert cfg.val_dataloader.batch_size == \
        log['trainer.data.batch_size_per_gpu_test']
    # mmengine's DefaultSampler splits the data over the 8 processes; with
    # drop_last that gives the authors' iterations per epoch and in all.
    per_process = math.ceil(log['data.train_length'] / world_size)
    epoch_length = per_process // loader.batch_size
    assert epoch_length == log['data.train_size'] == 1251
    assert cfg.train_cfg.max_epochs == log['epoch_full'] == \
        log['trainer.epoch_full'] == 300
    assert epoch_length * cfg.train_cfg.max_epochs == log['trainer.iter_full']

    # Optimizer: what ran (their trainer scales the configured 1.5e-3 by
    # batch / 512), with AMP ('native' scaler) and clipping at norm 5.
    optimizer = cfg.optim_wrapper.optimizer
    kwargs = log['optim.optim_kwargs']
    assert log['lr'] * log['batch_size'] / 512 == pytest.approx(
        log['optim.lr'], rel=1e-12)
    assert optimizer.lr == log['optim.lr'] == 3e-3
    assert (optimizer.type.lower(), kwargs['name']) == ('adamw', 'adamw')
    assert optimizer.betas == kwargs['betas']
    assert optimizer.eps == kwargs['eps']
    assert optimizer.weight_decay == kwargs['weight_decay'] == \
        log['weight_decay']
    assert optimizer.get('amsgrad', False) == kwargs['amsgrad']
    assert log['trainer.scaler'] == 'native'
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=log['loss.clip_grad'])

    # Schedule: timm's cosine, per iteration, no lr noise.
    sched = log['trainer.scheduler_kwargs']
    ours = cfg.param_scheduler
    assert sched['name'] == 'cosine' and ours.type == 'TimmCosineLR'
    assert sched['use_iters'] and ours.convert_to_iter_based and ours.by_epoch
    assert sched['warmup_iters'] == -1 and sched['cooldown_epochs'] == 0
    assert ours.warmup == sched['warmup_epochs'] == log['warmup_epochs']
    assert (ours.begin, ours.end) == (0, log['epoch_full'])
    assert sched['lr_noise'] is None and ours.noise_range is None
    assert ours.warmup_start_factor * optimizer.lr == pytest.approx(
        sched['warmup_lr'], rel=1e-12)
    assert ours.eta_min_ratio * optimizer.lr == pytest.approx(
        sched['lr_min'], rel=1e-12)

    # Loss: label smoothing 0.1, no mixup/cutmix.
    terms = log['loss.loss_terms']
    assert [t['type'] for t in terms] == ['LabelSmoothingCE']
    loss = cfg.model.head.loss
    assert (loss.type, loss.mode) == ('LabelSmoothLoss', 'original')
    assert loss.label_smooth_val == terms[0]['smoothing'] == \
        log['trainer.mixup_kwargs']['label_smoothing']
    assert log['trainer.mixup_kwargs']['prob'] == 0.0
    assert 'batch_augments' not in cfg.get('data_preprocessor', {})
    assert 'data_preprocessor' not in cfg.model
    assert log['trainer.scale_kwargs']['n_scale'] == 0  # one input size

    # EMA of every floating-point state entry, BN statistics included.
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert len(ema) == 1
    assert 1 - ema[0].momentum == pytest.approx(log['trainer.ema'])
    assert ema[0].update_buffers is True
    assert ema[0].evaluate_on_ema and ema[0].evaluate_on_origin
    assert 'AuthorsCheckpointHook' in [h.type for h in cfg.custom_hooks]

    # Seed, plus the rank in each process.
    assert cfg.randomness.seed == log['seed'] == 42
    assert cfg.randomness.diff_rank_seed is True

    # Evaluation after the epochs the authors' trainer tests after
    # (trainer/_base_trainer.py: epoch >= test_start_epoch or
    # epoch % test_per_epoch == 0), through mmengine's own loop code.
    from mmengine.runner.loops import EpochBasedTrainLoop
    from mmengine.runner.utils import calc_dynamic_intervals
    train_cfg = cfg.train_cfg
    assert train_cfg.get('val_begin', 1) == 1
    loop = SimpleNamespace(epoch=0)
    loop.dynamic_milestones, loop.dynamic_intervals = calc_dynamic_intervals(
        train_cfg.val_interval, train_cfg.get('dynamic_intervals'))
    ours_epochs, theirs_epochs = [], []
    for epoch in range(1, train_cfg.max_epochs + 1):
        loop.epoch = epoch  # after the epoch, as EpochBasedTrainLoop.run
        EpochBasedTrainLoop._decide_current_val_interval(loop)
        if epoch % loop.val_interval == 0 or epoch == train_cfg.max_epochs:
            ours_epochs.append(epoch)
        if epoch >= log['trainer.test_start_epoch'] or \
                epoch % log['trainer.test_per_epoch'] == 0:
            theirs_epochs.append(epoch)
    assert ours_epochs == theirs_epochs
    assert bisect.bisect_left(ours_epochs, 200) == 39  # 5, 10, ..., 195

    # Normalisation: timm's ImageNet mean and std, in 0-255 RGB.
    train_t = log['data.train_transforms']
    assert len(train_t) == 1 and train_t[0]['type'] == 'timm_create_transform'
    train_t = train_t[0]
    preprocessor = cfg.data_preprocessor
    assert preprocessor.to_rgb is True
    assert preprocessor.mean == pytest.approx(
        [255 * m for m in train_t['mean']])
    assert preprocessor.std == pytest.approx([255 * s for s in train_t['std']])

    # Training transform: timm's create_transform (is_training): a random
    # resized crop with timm's default scale and ratio, resized bilinear or
    # bicubic at random ('random'), a horizontal flip with timm's default
    # probability 0.5, RandAugment, no random erasing (re_prob 0).
    assert train_t['is_training'] and train_t['input_size'] == 224
    assert train_t['interpolation'] == 'random' and train_t['re_prob'] == 0.0
    pipeline = loader.dataset.pipeline
    assert cfg.train_pipeline == pipeline
    types = [t.type for t in pipeline]
    assert types == [
        'LoadImageFromFile', 'RandomChoice', 'RandomFlip', 'RandAugment',
        'PackInputs'
    ]
    branches = pipeline[1].transforms
    assert [t.interpolation for branch in branches
            for t in branch] == ['bilinear', 'bicubic']
    for (crop, ) in branches:
        assert crop.type == 'RandomResizedCrop' and crop.scale == size
        assert crop.backend == 'pillow'
        assert crop.get('crop_ratio_range', (0.08, 1.0)) == (0.08, 1.0)
        assert crop.get('aspect_ratio_range', (3 / 4, 4 / 3)) == (3 / 4, 4 / 3)
    flip = pipeline[2]
    assert (flip.prob, flip.direction) == (0.5, 'horizontal')
    # rand-m9-mstd0.5-inc1: timm's increasing policies, 2 operations per
    # image (timm's default n), magnitude 9 of 10 with noise std 0.5.
    policy = re.fullmatch(r'rand-m(\d+)-mstd([\d.]+)-inc1',
                          train_t['auto_augment'])
    rand = pipeline[3]
    assert rand.policies == 'timm_increasing' and rand.num_policies == 2
    assert rand.total_level == 10
    assert rand.magnitude_level == int(policy.group(1))
    assert rand.magnitude_std == float(policy.group(2))
    assert rand.hparams.pad_val == [
        round(255 * m) for m in train_t['mean'][::-1]
    ]

    # Test transform: short side to int(size / 0.875), bicubic; centre crop.
    resize, interpolation, crop = _test_transforms(log['data.test_transforms'])
    assert (resize, crop) == (int(224 / 0.875), 224) == (256, 224)
    test = cfg.val_dataloader.dataset.pipeline
    assert test == cfg.test_dataloader.dataset.pipeline
    assert [t.type for t in test] == [
        'LoadImageFromFile', 'ResizeEdge', 'CenterCrop', 'PackInputs'
    ]
    assert test[1].scale == int(size / 0.875)
    assert (test[1].edge, test[1].backend) == ('short', 'pillow')
    assert test[1].interpolation == interpolation == 'bicubic'
    assert test[2].crop_size == size


def test_the_512_config_is_the_5m_one_at_512():
    """Besides the window and the pipelines, emov2_5m_512_in1k.py is
    emov2_5m_in1k.py (the authors' emo2_512.py is emo2_224.py with size
    512)."""
    base, ours = config('emov2_5m_in1k.py'), config('emov2_5m_512_in1k.py')
    assert ours.model.backbone.window_size == 8
    assert ours.train_pipeline[1].transforms[0][0].scale == 512
    ignored = ('model', 'train_pipeline', 'test_pipeline', 'train_dataloader',
               'val_dataloader', 'test_dataloader', 'work_dir')
    assert ours.work_dir != base.work_dir
    for key in set(base) | set(ours):
        if key not in ignored:
            assert ours.get(key) == base.get(key), key
    for key in ('model', 'train_dataloader', 'val_dataloader'):
        a, b = copy.deepcopy(base[key]), copy.deepcopy(ours[key])
        if key == 'model':
            a.backbone.window_size = b.backbone.window_size
        else:
            a.dataset.pipeline = b.dataset.pipeline
        assert a == b, key


def test_lr_schedule_is_the_authors():
    """Every iteration of the 300 epochs (375,300 steps) of the config's
    scheduler, as mmengine builds it with the authors' 8 processes, against
    timm's own CosineLRScheduler built from the log as the authors' trainer
    builds it (optim/scheduler.py: lengths in iterations, stepped with the
    iteration index before each iteration). The five configs share the
    schedule."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import PARAM_SCHEDULERS
    from timm.scheduler.cosine_lr import CosineLRScheduler

    import emo_mm  # noqa: F401  (registers TimmCosineLR)
    log = emov2_logged_settings('1M_224')
    cfgs = [config(name) for name in CONFIGS]
    for cfg in cfgs[1:]:
        assert cfg.param_scheduler == cfgs[0].param_scheduler
        assert cfg.optim_wrapper == cfgs[0].optim_wrapper
        assert cfg.auto_scale_lr == cfgs[0].auto_scale_lr
    cfg = cfgs[0]
    epoch_length = log['data.train_size']
    num_steps = log['trainer.iter_full']

    def one_param_optimizer(lr):
        return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)

    kwargs = log['trainer.scheduler_kwargs']
    theirs_opt = one_param_optimizer(log['optim.lr'])
    theirs_sched = CosineLRScheduler(
        theirs_opt,
        t_initial=log['trainer.epoch_full'] * epoch_length,
        lr_min=kwargs['lr_min'],
        warmup_lr_init=kwargs['warmup_lr'],
        warmup_t=kwargs['warmup_epochs'] * epoch_length,
        cycle_decay=kwargs['cycle_decay'],
        cycle_limit=1,
        noise_range_t=None,
        t_in_epochs=True)
    # auto_scale_lr at the authors' total batch leaves the lr as it is.
    batch = log['world_size'] * cfg.train_dataloader.batch_size
    ours_opt = one_param_optimizer(cfg.optim_wrapper.optimizer.lr * batch /
                                   cfg.auto_scale_lr.base_batch_size)
    init_default_scope('mmpretrain')
    ours_sched = PARAM_SCHEDULERS.build(
        copy.deepcopy(cfg.param_scheduler),
        default_args=dict(optimizer=ours_opt, epoch_length=epoch_length))
    ours_opt.step()
    ours, theirs = [], []
    for step in range(num_steps):
        theirs_sched.step(step)
        theirs.append(theirs_opt.param_groups[0]['lr'])
        ours.append(ours_opt.param_groups[0]['lr'])
        ours_sched.step()
    ours = torch.tensor(ours, dtype=torch.float64)
    theirs = torch.tensor(theirs, dtype=torch.float64)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    # The logged values, so that a failure reads plainly.
    assert ours[0].item() == pytest.approx(5e-7, rel=1e-12)
    assert ours.max().item() < 3e-3
    assert ours[-1].item() == pytest.approx(5e-7, rel=1e-3)


# (4) no weight decay ---------------------------------------------------------


def authors_rule(name, shape):
    """Their trainer's exemption (optim/__init__.py add_weight_decay with the
    model's no_weight_decay() = {'token'} and no_weight_decay_keywords() =
    {'alpha', 'gamma', 'beta'}; model/lib_emo/emo2.py), applied to their
    parameter names (the trainer hands the model to get_optim before DDP
    wraps it: no 'module.' prefix)."""
    return (len(shape) == 1 or name.endswith('.bias') or name in {'token'}
            or any(k in name for k in ('alpha', 'gamma', 'beta')))


def authors_names(model):
    """Our parameter name -> the authors' (the checkpoint mapping; the full
    state dict goes in, since the mapping tells LayerNorms from BatchNorms
    by their running statistics)."""
    from collections import OrderedDict

    from emo_mm.models.checkpoint import classifier_to_authors
    keys = list(model.state_dict())
    indexed = OrderedDict((k, torch.tensor(i)) for i, k in enumerate(keys))
    theirs = {
        keys[int(v)]: k
        for k, v in classifier_to_authors(indexed).items()
    }
    return {name: theirs[name] for name, _ in model.named_parameters()}


def weight_decays(cfg, model):
    wrapper = cpu_optim_wrapper(cfg, model)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {
        names[id(p)]: group['weight_decay']
        for group in wrapper.optimizer.param_groups
        for p in group['params']
    }
    assert len(decay) == len(names)  # every parameter, once
    return decay


def check_no_weight_decay(cfg, model):
    """The parameters the config exempts from weight decay are exactly the
    ones the authors' trainer exempts, the others get the full 0.05."""
    decay = weight_decays(cfg, model)
    theirs = authors_names(model)
    shapes = dict((n, p.shape) for n, p in model.named_parameters())
    exempt_ours = {theirs[n] for n, wd in decay.items() if wd == 0}
    exempt_theirs = {
        theirs[n]
        for n in decay if authors_rule(theirs[n], shapes[n])
    }
    assert exempt_ours == exempt_theirs, (sorted(exempt_ours - exempt_theirs),
                                          sorted(exempt_theirs - exempt_ours))
    assert set(
        decay.values()) == {0.0, cfg.optim_wrapper.optimizer.weight_decay}
    # The keyword matters: LayerScale gammas are 4-D, one per block with a
    # skip; without '.gamma' they would be decayed.
    gammas = [n for n in decay if n.endswith('.gamma')]
    assert gammas and all(len(shapes[n]) == 4 for n in gammas)
    assert all(decay[n] == 0 for n in gammas)
    assert decay['head.fc.weight'] == 0.05 and decay['head.fc.bias'] == 0


# (5) the authors' logits -----------------------------------------------------


def load_fixture(name):
    path = osp.join(FIXTURES_V2, name)
    if not osp.exists(path):
        _fixtures_missing(osp.join('..', 'fixtures_v2', name))
    data = torch.load(path, weights_only=True)
    data['state_dict'] = {
        k: v.float() if v.is_floating_point() else v
        for k, v in data['state_dict'].items()
    }
    return data


@pytest.mark.parametrize('fixture_name', sorted(LOGIT_FIXTURES))
def test_authors_checkpoint_gives_their_logits(fixture_name, tmp_path):
    """The fixture's state dict saved as the authors' flat checkpoint, loaded
    the way `tools/test.py CONFIG net.pth` loads it (mmengine's
    load_checkpoint, strict, through the classifier's load_state_dict),
    reproduces their logits within 1e-4."""
    from mmengine.runner import load_checkpoint
    fixture = load_fixture(fixture_name)
    name = LOGIT_FIXTURES[fixture_name]
    arch = RECIPES[name][1]
    assert fixture['constructor'] == f'EMO2_{arch.upper()}_k5_hybrid'
    cfg, model = build_cpu_model(f'imagenet/{name}')
    # The fixture ran the window of the config (7), padded at 200x264.
    assert cfg.model.backbone.window_size == fixture['window_size']
    assert count_params(model) == fixture['num_params'] == PARAMS[name]
    # Their parameter names are the ones the no-decay test maps ours to.
    buffers = ('running_mean', 'running_var', 'num_batches_tracked')
    assert set(authors_names(model).values()) == {
        k
        for k in fixture['state_dict'] if not k.endswith(buffers)
    }
    path = str(tmp_path / 'net.pth')
    torch.save(fixture['state_dict'], path)
    load_checkpoint(model, path, map_location='cpu', strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(fixture['input'], mode='tensor')
        # The same through extract_feat + head.
        again = model.head(model.extract_feat(fixture['input']))
    expected = fixture['logits'].float()
    assert logits.shape == expected.shape == (2, 1000)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(again, logits, atol=0, rtol=0)
    if name == 'emov2_5m_in1k.py':
        # The 512 config's model takes the same checkpoint layout (the
        # released EMOv2_5M_512_KD.pth), strictly.
        _, model_512 = build_cpu_model('imagenet/emov2_5m_512_in1k.py')
        load_checkpoint(model_512, path, map_location='cpu', strict=True)
        for key, value in model.state_dict().items():
            assert torch.equal(model_512.state_dict()[key], value), key
