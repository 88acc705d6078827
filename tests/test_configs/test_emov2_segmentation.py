"""The sixteen EMOv2 segmentation configs (DeepLabV3, PSPNet, SegFormer,
Semantic FPN; 1M/2M/5M/20M): exact parameter counts, a training step on the
CPU, the authors' recipe as their logs' config dumps record it, and their
optimizer's no-decay and lr-multiplier sets."""
import glob
import os.path as osp

import pytest
import torch
from conftest import (FIXTURES, REPO_ROOT, _fixtures_missing, build_cpu_model,
                      emov2_logged_config, shipped_config)
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from emo_mm.models.checkpoint import ours_to_authors

VARIANTS = ('1m', '2m', '5m', '20m')
# Our folder -> the authors' log name (their spelling).
RUN_NAMES = {
    'deeplabv3': 'DeeLabv3',
    'pspnet': 'PSPNet',
    'segformer': 'SegFormer',
    'sem_fpn': 'FPN'
}
# The issue's reference counts (the authors' configs built with their
# backbone under mmseg 1.2.2), the auxiliary FCN head included.
PARAMS = {
    'deeplabv3': (5_829_928, 6_973_996, 10_373_420, 26_838_348),
    'pspnet': (4_502_312, 5_564_460, 8_603_436, 24_413_004),
    'segformer': (1_499_234, 2_676_118, 5_378_454, 20_399_798),
    'sem_fpn': (5_371_026, 6_289_814, 8_986_774, 23_995_574),
}
CONFIGS = {
    f'{folder}/emov2_{variant}_ade20k.py':
    (f'{RUN_NAMES[folder]}_{variant.upper()}', PARAMS[folder][i])
    for folder in RUN_NAMES
    for i, variant in enumerate(VARIANTS)
}


def variant_of(config):
    return config.split('_')[-2]  # 'deeplabv3/emov2_1m_ade20k.py' -> '1m'


@pytest.fixture(scope='module', params=sorted(CONFIGS))
def built(request):
    """``(config, cfg, model)``: each config's model built once for the
    tests below (pytest runs them config by config); the training step,
    which changes the weights, comes last."""
    cfg, model = build_cpu_model(request.param)
    return request.param, cfg, model


def test_every_emov2_segmentation_config_is_tested():
    on_disk = {
        osp.relpath(p, osp.join(REPO_ROOT, 'configs'))
        for folder in RUN_NAMES
        for p in glob.glob(
            osp.join(REPO_ROOT, 'configs', folder, 'emov2_*.py'))
    }
    assert on_disk == set(CONFIGS)


def test_parameter_count_is_the_authors(built):
    config, _, model = built
    assert sum(p.numel() for p in model.parameters()) == CONFIGS[config][1]


def labelled_batch(size=(64, 64), num_images=2):
    """Random images whose labels are two classes in halves, a strip of
    ignored pixels on top."""
    h, w = size
    inputs, samples = [], []
    for i in range(num_images):
        label = torch.full((1, h, w), 7 + i, dtype=torch.long)
        label[:, :, w // 2:] = 120
        label[:, :4] = 255  # ignore index
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w)))
        inputs.append(torch.rand(3, h, w) * 255)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def config_optim_wrapper(cfg, model):
    """The config's own optimizer, paramwise rules and gradient clipping
    (an OptimWrapper, as in the authors' runs: no AMP)."""
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    return build_optim_wrapper(model, cfg.optim_wrapper)


# What differs from the authors' config dumps, and why (every other
# setting, data pipelines, loaders, evaluation, hooks, heads and neck
# included, must be equal):
KNOWN_DIFFERENCES = {
    # Variables of the authors' config files, and their launcher.
    'bs_ratio',
    'ratio',
    'max_iters',
    'launcher',
    'work_dir',
    # Ours: the plugin import, the ImageNet weights (a variable), and the
    # total batch (4 GPUs x 8) for --auto-scale-lr.
    'custom_imports',
    'pretrained',
    'auto_scale_lr',
    # Their EMO2 arguments as emo_mm's EMOv2 arguments (checked by
    # test_backbone_is_the_logged_one).
    'model.backbone',
    # Their custom_keys in emo_mm's parameter names (checked by
    # test_optimizer_groups_are_the_authors).
    'optim_wrapper.paramwise_cfg',
}
# The stock SegFormer config's MiT-B0 weights variable (unused).
EXTRA_DIFFERENCES = {'segformer': {'checkpoint'}}


def differences(ours, theirs, whole=(), path=''):
    """The dotted paths where two plain config dicts differ; those in
    ``whole`` are compared whole."""
    if isinstance(ours, dict) and isinstance(theirs, dict) and \
            path not in whole:
        found = []
        for key in sorted(set(ours) | set(theirs)):
            sub = f'{path}.{key}' if path else key
            if key not in ours or key not in theirs:
                found.append(sub)
            else:
                found += differences(ours[key], theirs[key], whole, sub)
        return found
    return [] if ours == theirs else [path]


def without_scope(node):
    """A config without the ``_scope_`` keys that mmengine adds to a base
    read as 'mmseg::...' (the authors' dumps come from relative bases)."""
    if isinstance(node, dict):
        return {k: without_scope(v) for k, v in node.items() if k != '_scope_'}
    if isinstance(node, (list, tuple)):
        return type(node)(without_scope(v) for v in node)
    return node


load = shipped_config


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_recipe_is_the_logged_one(config):
    ours = without_scope(load(config).to_dict())
    theirs = emov2_logged_config(CONFIGS[config][0]).to_dict()
    allowed = KNOWN_DIFFERENCES | EXTRA_DIFFERENCES.get(
        config.split('/')[0], set())
    found = set(differences(ours, theirs, whole=allowed))
    assert found <= allowed, sorted(found - allowed)
    # The translated parts are there on both sides.
    assert {'model.backbone', 'optim_wrapper.paramwise_cfg'} <= found
    # Spelled out, settings that the comparison above covers.
    for key in ('type', 'optimizer', 'clip_grad'):
        assert ours['optim_wrapper'].get(key) == \
            theirs['optim_wrapper'].get(key), key
    for key in ('param_scheduler', 'train_cfg', 'train_pipeline',
                'test_pipeline', 'tta_pipeline', 'val_evaluator'):
        assert ours[key] == theirs[key], key
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert ours[loader] == theirs[loader], loader
    assert ours['train_dataloader']['batch_size'] == 8  # x 4 GPUs
    assert ours['default_hooks']['checkpoint']['interval'] == \
        ours['train_cfg']['val_interval']
    model, their_model = ours['model'], theirs['model']
    assert model['test_cfg'] == their_model['test_cfg'] == dict(mode='whole')
    for part in ('data_preprocessor', 'decode_head', 'auxiliary_head', 'neck',
                 'pretrained'):
        assert model.get(part) == their_model.get(part), part
    for part in ('decode_head', 'auxiliary_head'):
        if model.get(part):
            assert model[part]['norm_cfg']['type'] == 'SyncBN', part


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_backbone_is_the_logged_one(config):
    """Their EMO2 arguments, one by one, in EMOv2's terms."""
    ours = load(config).model.backbone
    theirs = emov2_logged_config(CONFIGS[config][0]).model.backbone
    assert ours.type == 'EMOv2' and theirs.type == 'EMO2'
    assert ours.arch == variant_of(config)
    window = ours.window_size
    windows = [window] * 4 if isinstance(window, int) else list(window)
    assert windows == list(theirs.window_sizes)
    assert ours.drop_path_rate == theirs.drop_path
    assert tuple(ours.out_indices) == tuple(theirs.out_indices)
    assert ours.frozen_stages == theirs.frozen_stages
    assert ours.norm_eval == theirs.norm_eval
    # sync_bn=False: plain BatchNorms (their eps 1e-6) in the backbone.
    assert theirs.sync_bn is False
    assert ours.norm_cfg == dict(type='BN', eps=1e-6)
    # Their mmseg backbone: LayerNorm2d + GELU after the depthwise conv.
    assert ours.dw_norm_cfg == dict(type='LN2d', eps=1e-6)
    assert ours.dw_act_cfg == dict(type='GELU')
    assert ours.get('final_norm', False) is False
    assert theirs.ls_value == 1e-6 and theirs.attn_pre is False
    # Their ../pretrained/emo2_<V>.pth: the released ImageNet weights (none
    # were released for 20M).
    variant = variant_of(config).upper()
    assert theirs.pretrained == f'../pretrained/emo2_{variant}.pth'
    if variant == '20M':
        assert ours.init_cfg is None
    else:
        assert ours.init_cfg.type == 'Pretrained'
        assert ours.init_cfg.checkpoint == (
            'https://github.com/zhangzjn/EMOv2/raw/main/resources/Cls/'
            f'EMOv2_{variant}_224.pth')


def test_backbone_has_the_logged_depths_and_widths(built):
    config, _, model = built
    theirs = emov2_logged_config(CONFIGS[config][0]).model.backbone
    backbone = model.backbone
    assert [len(backbone.stages[i]) for i in range(1, 5)] == \
        list(theirs.depths)
    backbone.eval()
    with torch.no_grad():
        outs = backbone(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == list(theirs.embed_dims)


def authors_names(model):
    """Our parameter names -> the authors' (backbone renamed with
    ours_to_authors; neck and heads are named alike)."""
    mapped = ours_to_authors(model.backbone.state_dict(keep_vars=True))
    by_id = {id(v): f'backbone.{k}' for k, v in mapped.items()}
    names = {}
    for name, param in model.named_parameters():
        names[name] = by_id[id(param)] if name.startswith('backbone.') \
            else name
    return names


def authors_multipliers(name, custom_keys):
    """(lr_mult, decay_mult) of a parameter under mmengine's rule: the
    longest key that is a substring of the full name wins."""
    for key in sorted(sorted(custom_keys), key=len, reverse=True):
        if key in name:
            return (custom_keys[key].get('lr_mult', 1.0),
                    custom_keys[key].get('decay_mult', 1.0))
    return 1.0, 1.0


def test_optimizer_groups_are_the_authors(built):
    """Every parameter's weight decay and lr equal what the authors' keys
    (matched on their parameter names) gave it: the no-decay set and the
    10x-lr set are theirs exactly."""
    config, cfg, model = built
    log = emov2_logged_config(CONFIGS[config][0])
    wrapper = config_optim_wrapper(cfg, model)
    ids = {id(p): n for n, p in model.named_parameters()}
    groups = {
        ids[id(p)]: (group['lr'], group['weight_decay'])
        for group in wrapper.optimizer.param_groups
        for p in group['params']
    }
    assert set(groups) == set(ids.values())

    base_lr = log.optim_wrapper.optimizer.lr
    base_wd = log.optim_wrapper.optimizer.weight_decay
    custom_keys = log.optim_wrapper.paramwise_cfg.custom_keys
    theirs = {}
    for ours_name, their_name in authors_names(model).items():
        lr_mult, decay_mult = authors_multipliers(their_name, custom_keys)
        theirs[ours_name] = (base_lr * lr_mult, base_wd * decay_mult)
    assert groups == theirs

    no_decay = {n for n, (_, wd) in groups.items() if wd == 0}
    # Every backbone norm, and nothing else: the stem's BNs, the blocks'
    # pre-norms, the LayerNorms after the depthwise convs; no head norm.
    backbone_norms = {
        n
        for n in groups
        if n.startswith('backbone.') and any(f'.{part}.' in n
                                             for part in ('bn', 'norm', 'ln'))
    }
    assert no_decay == backbone_norms
    assert any('.stages.0.0.bn.' in n for n in no_decay)
    assert any('.conv_local.ln.' in n for n in no_decay)
    ten_x = {n for n, (lr, _) in groups.items() if lr != base_lr}
    if 'head' in custom_keys:  # SegFormer, Semantic FPN
        assert ten_x == {n for n in groups if n.startswith('decode_head.')}
    else:
        assert not ten_x


def test_renamed_backbone_is_the_authors_mmseg_backbone():
    """The renaming used above gives the keys of the authors' own mmseg
    backbone (their 5M state dict in the shared fixture)."""
    path = osp.join(
        osp.dirname(FIXTURES), 'fixtures_v2', 'emo2_5m_seg_w10_160x192.pt')
    if not osp.exists(path):
        _fixtures_missing(osp.basename(path))
    theirs = torch.load(path, weights_only=True)['state_dict']
    _, model = build_cpu_model('sem_fpn/emov2_5m_ade20k.py')
    ours = ours_to_authors(model.backbone.state_dict())
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        assert value.shape == theirs[key].shape, key


def test_config_takes_a_training_step(built):
    """One step of the config's optimizer (its paramwise rules and gradient
    clipping) on two 64x64 images."""
    torch.manual_seed(0)
    _, cfg, model = built
    model.data_preprocessor.size = (64, 64)  # tiny crops (the recipe: 512)
    wrapper = config_optim_wrapper(cfg, model)
    model.train()
    data = model.data_preprocessor(labelled_batch(), training=True)
    loss, log_vars = model.parse_losses(model(**data, mode='loss'))
    expected = {'decode.loss_ce'}
    if cfg.model.get('auxiliary_head'):
        expected.add('aux.loss_ce')
    assert expected <= set(log_vars)
    assert torch.isfinite(loss)

    wrapper.backward(loss)
    # Every parameter takes part, and no gradient overflowed.
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrapper.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # Every part moves. (Not every parameter visibly: behind LayerScale's
    # 1e-6, some stage-4 norm weights get gradients near 1e-15, far below
    # AdamW's eps, and their step is lost against 1.0 in float32.)
    moved = {
        n.split('.')[0]
        for n, p in model.named_parameters()
        if not torch.equal(p.detach(), before[n])
    }
    assert moved == {n.split('.')[0] for n in before}


def test_config_predicts(built):
    """``mode='predict'`` (the config's ``test_cfg``, whole-image) on two
    48x80 images, another size than training's: per image, N-class logits
    and a label map of the input's size, labels among the 150 classes."""
    _, _, model = built
    model.eval()
    h, w = 48, 80
    data = model.data_preprocessor(labelled_batch((h, w)), training=False)
    with torch.no_grad():
        results = model(**data, mode='predict')
    assert len(results) == 2
    for result in results:
        assert result.seg_logits.data.shape == (150, h, w)
        labels = result.pred_sem_seg.data
        assert labels.shape == (1, h, w)
        assert labels.dtype == torch.int64
        assert labels.min() >= 0 and labels.max() < 150
        assert torch.equal(labels[0], result.seg_logits.data.argmax(0))
