"""emo_mm.engine.schedulers: TimmCosineLR, as the ImageNet configs build it,
gives every iteration the lr that the authors' trainer gave.

The reference is outside this code: the settings rows of the authors' four
ImageNet logs (../shared/reference/authors_training_logs), fed to timm's own
CosineLRScheduler the way the authors' trainer builds it (their
optim/scheduler.py: lengths in iterations, stepped with the iteration index
before each iteration).
"""
import copy
import math
import os.path as osp

import pytest
import torch
from conftest import REPO_ROOT, logged_settings
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import PARAM_SCHEDULERS
from timm.scheduler.cosine_lr import CosineLRScheduler

import emo_mm  # noqa: F401  (registers TimmCosineLR)
from emo_mm.engine import TimmCosineLR

VARIANTS = ('1m', '2m', '5m', '6m')


def config(variant):
    return Config.fromfile(
        osp.join(REPO_ROOT, 'configs', 'imagenet', f'emo_{variant}_in1k.py'))


def one_param_optimizer(lr):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def authors_lrs(log, num_steps):
    """timm's lr for iterations 0..num_steps-1, built as the authors did."""
    kwargs = log['trainer.scheduler_kwargs']
    train_size = log['data.train_size']
    assert kwargs['name'] == 'cosine' and kwargs['use_iters']
    assert kwargs['warmup_iters'] == -1  # lengths come from the epochs
    t_initial = log['trainer.epoch_full'] * train_size
    noise = kwargs['lr_noise']
    optimizer = one_param_optimizer(log['optim.lr'])
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=t_initial,
        lr_min=kwargs['lr_min'],
        warmup_lr_init=kwargs['warmup_lr'],
        warmup_t=kwargs['warmup_epochs'] * train_size,
        cycle_decay=kwargs['cycle_decay'],
        cycle_limit=1,
        noise_range_t=None
        if noise is None else [n * t_initial for n in noise],
        noise_pct=kwargs['noise_pct'],
        noise_std=kwargs['noise_std'],
        noise_seed=kwargs['noise_seed'],
        t_in_epochs=True)
    lrs = []
    for step in range(num_steps):
        scheduler.step(step)  # the authors' trainer, before each iteration
        lrs.append(optimizer.param_groups[0]['lr'])
    return torch.tensor(lrs, dtype=torch.float64)


def build_config_scheduler(cfg, log):
    """The config's scheduler as mmengine's Runner builds it, with the
    authors' 8 processes: auto_scale_lr, then the mmpretrain registry with
    the epoch length that the config's train loader gives."""
    loader = cfg.train_dataloader
    world_size = log['world_size']
    batch = world_size * loader.batch_size
    assert loader.batch_size == log['trainer.data.batch_size_per_gpu']
    # mmengine's DefaultSampler pads to a multiple of the world size; the
    # DataLoader then drops (or keeps) the last partial batch.
    per_process = math.ceil(log['data.train_length'] / world_size)
    epoch_length = (
        per_process // loader.batch_size
        if loader.drop_last else math.ceil(per_process / loader.batch_size))
    lr = cfg.optim_wrapper.optimizer.lr * batch / \
        cfg.auto_scale_lr.base_batch_size
    optimizer = one_param_optimizer(lr)
    init_default_scope('mmpretrain')
    scheduler = PARAM_SCHEDULERS.build(
        copy.deepcopy(cfg.param_scheduler),
        default_args=dict(optimizer=optimizer, epoch_length=epoch_length))
    return scheduler, optimizer, epoch_length


def step_through(scheduler, optimizer, num_steps):
    optimizer.step()  # once, so that mmengine sees the usual order
    group = optimizer.param_groups[0]
    lrs = []
    for _ in range(num_steps):
        lrs.append(group['lr'])
        scheduler.step()  # mmengine: after each iteration
    return torch.tensor(lrs, dtype=torch.float64)


# variant -> the variant whose curve it repeats, step for step
# (test_same_settings_give_the_same_schedule): only 1M and 5M are stepped.
SAME_SCHEDULE = {'2m': '1m', '6m': '5m'}


def schedule_settings(variant):
    """All that the curves below read: the config's scheduler, lr, batch,
    loader and length, and the log's rows that build timm's scheduler and
    the epoch length."""
    cfg, log = config(variant), logged_settings(variant)
    rows = ('trainer.scheduler_kwargs', 'data.train_size', 'data.train_length',
            'trainer.epoch_full', 'trainer.iter_full', 'optim.lr',
            'world_size', 'trainer.data.batch_size_per_gpu')
    return dict(
        param_scheduler=cfg.param_scheduler,
        optim_wrapper=cfg.optim_wrapper,
        auto_scale_lr=cfg.auto_scale_lr,
        train_cfg=cfg.train_cfg,
        batch_size=cfg.train_dataloader.batch_size,
        drop_last=cfg.train_dataloader.drop_last,
        **{row: log[row]
           for row in rows})


@pytest.mark.parametrize('variant', sorted(SAME_SCHEDULE))
def test_same_settings_give_the_same_schedule(variant):
    # The noise settings included: 2M's lr noise is 1M's, 6M has none.
    assert schedule_settings(variant) == \
        schedule_settings(SAME_SCHEDULE[variant])


@pytest.mark.parametrize('variant',
                         [v for v in VARIANTS if v not in SAME_SCHEDULE])
def test_lr_schedule_is_the_authors(variant):
    """Every iteration of the 300 epochs (187,500 steps), against timm."""
    log = logged_settings(variant)
    cfg = config(variant)
    scheduler, optimizer, epoch_length = build_config_scheduler(cfg, log)
    assert isinstance(scheduler, TimmCosineLR)
    assert epoch_length == log['data.train_size'] == 625
    num_steps = cfg.train_cfg.max_epochs * epoch_length
    assert num_steps == log['trainer.iter_full'] == 187_500

    ours = step_through(scheduler, optimizer, num_steps)
    theirs = authors_lrs(log, num_steps)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)

    # The values the issue names, so that a failure reads plainly.
    kwargs = log['trainer.scheduler_kwargs']
    assert log['optim.lr'] == 0.006
    assert ours[0].item() == pytest.approx(1e-6, rel=1e-12)  # warm-up start
    warmup = 20 * epoch_length
    assert ours[warmup - 1].item() == pytest.approx(
        1e-6 + (warmup - 1) * (6e-3 - 1e-6) / warmup, rel=1e-12)
    cosine = 1e-6 + 0.5 * (6e-3 - 1e-6) * (1 + torch.cos(
        math.pi * torch.arange(num_steps, dtype=torch.float64) / num_steps))
    ratio = ours / cosine
    assert ratio[warmup].item() == pytest.approx(1.0, rel=1e-12)
    assert ours[-1].item() == pytest.approx(1e-6, rel=1e-3)  # near the floor
    noisy = (ratio - 1).abs() > 1e-9
    noisy[:warmup] = False
    if kwargs['lr_noise'] is None:
        assert variant in ('5m', '6m') and not noisy.any()
    else:
        assert variant in ('1m', '2m')
        start, stop = (int(f * num_steps) for f in kwargs['lr_noise'])
        assert (start, stop) == (78_750, 168_750)
        # No noise just before and after the range, noise inside it (a draw
        # of exactly 0 has probability 0), bounded by noise_pct.
        assert not noisy[:start].any() and not noisy[stop:].any()
        assert noisy[start:stop].all()
        assert (ratio[start:stop] - 1).abs().max().item() < 0.67


def test_lr_schedule_resumes_exactly():
    """A scheduler restored from a state dict inside the noise range goes on
    with the same values (closed form: nothing else to restore)."""
    cfg, log = config('1m'), logged_settings('1m')
    first, opt_first, _ = build_config_scheduler(cfg, log)
    step_through(first, opt_first, 80_000)  # inside the noise range
    second, opt_second, _ = build_config_scheduler(cfg, log)
    # What mmengine's resume restores: the optimizer (whose lr the last step
    # set) and the scheduler.
    opt_second.load_state_dict(opt_first.state_dict())
    second.load_state_dict(first.state_dict())
    torch.testing.assert_close(
        step_through(second, opt_second, 500),
        step_through(first, opt_first, 500),
        rtol=0,
        atol=0)


@pytest.mark.parametrize('kwargs, message', [
    (dict(end=float('inf')), 'needs a finite end'),
    (dict(warmup=300), r'warmup=300 must be in \[0, end - begin = 300\)'),
    (dict(eta_min=1e-6), 'give exactly one of eta_min and eta_min_ratio'),
    (dict(eta_min_ratio=None), 'give exactly one of eta_min and eta_min'),
    (dict(noise_range=(0.9, 0.42)), r'noise_range=\(0.9, 0.42\) must be'),
    (dict(noise_range=(0.5, )), r'noise_range=\(0.5,\) must be'),
    (dict(noise_pct=0), 'noise_pct=0 must be positive'),
])
def test_scheduler_rejects_bad_settings(kwargs, message):
    settings = dict(
        warmup=20,
        eta_min_ratio=1e-3,
        noise_range=(0.42, 0.9),
        begin=0,
        end=300)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=message):
        TimmCosineLR(one_param_optimizer(6e-3), **settings)
