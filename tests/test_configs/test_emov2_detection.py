"""The 16 EMOv2 detection configs (SSDLite 320 and 512, RetinaNet, Mask R-CNN;
1M/2M/5M/20M): exact parameter counts, a training step on the CPU, the
recipe of the authors' logged runs, and the parameters they exempt from
weight decay."""
import copy
import glob
import math
import os.path as osp
import re

import numpy as np
import pytest
import torch
import yaml
from conftest import (EMOV2_LOGS, REPO_ROOT, _fixtures_missing,
                      build_cpu_model, det_sample, emov2_logged_config,
                      shipped_config)
from mmdet.structures.mask import BitmapMasks
from mmengine.optim import build_optim_wrapper

from emo_mm.models import EMOv2
from emo_mm.models.checkpoint import ours_to_authors

VARIANTS = ('1m', '2m', '5m', '20m')
# (config pattern, log name pattern, parameters per variant): the issue's
# counts, measured by building the authors' own configs with their backbone
# under mmdet 3.3.0 (the 512 SSDLite has the 320 one's anchors and layers).
FAMILIES = (
    ('ssdlite/emov2_{}_coco.py', 'SSDLite_{}_300', (2_409_088, 3_349_556,
                                                    6_094_132, 21_213_780)),
    ('ssdlite/emov2_{}_512_coco.py', 'SSDLite_{}_512',
     (2_409_088, 3_349_556, 6_094_132, 21_213_780)),
    ('retinanet/emov2_{}_coco.py', 'RetinaNet_{}', (10_597_616, 11_562_484,
                                                    14_458_100, 29_831_444)),
    ('mask_rcnn/emov2_{}_coco.py', 'MaskRCNN_{}', (21_271_788, 22_190_576,
                                                   24_887_536, 39_896_336)),
)
CONFIG_PARAMS = {
    pattern.format(v): params[i]
    for pattern, _, params in FAMILIES
    for i, v in enumerate(VARIANTS)
}
LOG_RUN = {
    pattern.format(v): run.format(v.upper())
    for pattern, run, _ in FAMILIES
    for v in VARIANTS
}
CONFIGS = sorted(CONFIG_PARAMS)
# The box mAP of the paper and the authors' README (the issue's reference
# numbers), 1M/2M/5M/20M. Mask R-CNN's mask mAP is checked against the logs.
PAPER_BOX_AP = {
    'SSDLite_{}_300': (22.3, 26.0, 29.6, 33.1),
    'SSDLite_{}_512': (26.6, 30.7, 34.8, 38.3),
    'RetinaNet_{}': (36.9, 39.3, 41.5, 43.8),
    'MaskRCNN_{}': (37.1, 39.5, 42.3, 44.2),
}

load = shipped_config


def test_the_table_covers_sixteen_configs_on_disk():
    """The table names exactly the EMOv2 configs on disk in the detection
    folders (SSDLite 320 and 512, RetinaNet, Mask R-CNN): none missing, none
    untested."""
    on_disk = {
        osp.relpath(path, osp.join(REPO_ROOT, 'configs'))
        for folder in ('ssdlite', 'retinanet', 'mask_rcnn')
        for path in glob.glob(
            osp.join(REPO_ROOT, 'configs', folder, 'emov2_*.py'))
    }
    assert on_disk == set(CONFIGS)
    assert len(CONFIGS) == 16


# ---------------------------------------------------------------- training
def tiny_batch(with_mask, size=(96, 128), num_images=2):
    """Two random images with two boxes each (and their masks)."""
    h, w = size
    samples = []
    for i in range(num_images):
        boxes = torch.tensor([[8.0, 10.0, w * 0.6, h * 0.7],
                              [w * 0.45, h * 0.35, w - 6.0, h - 5.0]])
        sample = det_sample(h, w, boxes, torch.tensor([i, 3]))
        if with_mask:
            masks = np.zeros((len(boxes), h, w), dtype=np.uint8)
            for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                masks[k, y1:y2, x1:x2] = 1
            sample.gt_instances.masks = BitmapMasks(masks, h, w)
        samples.append(sample)
    inputs = [torch.rand(3, h, w) * 255 for _ in range(num_images)]
    return dict(inputs=inputs, data_samples=samples)


# The 512 SSDLite configs are the 320 models at another Resize scale
# (test_the_512_ssdlite_configs_are_the_320_models): only the 320 ones are
# built and trained.
BUILT = [config for config in CONFIGS if '_512_' not in config]


def optim_wrapper_on_cpu(cfg, model):
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    if optim_cfg.type == 'AmpOptimWrapper':
        optim_cfg.type = 'OptimWrapper'  # AMP needs a GPU
    return build_optim_wrapper(model, optim_cfg)


# ----------------------------------------------------------------- recipes
# Top-level keys of the logged config dumps that set nothing our configs
# must repeat: the authors' lr/batch multipliers (already applied in the
# values), and what their command line set at run time.
NOT_RECIPE = ('ratio', 'bs_ratio', 'work_dir', 'launcher')
# Ours only: the plugin import, the ImageNet checkpoint URL variable
# (compared on the backbone's init_cfg instead) and the work dir of each
# config (tests/test_configs/test_work_dirs.py).
OURS_ONLY = ('custom_imports', 'pretrained', 'work_dir')
# The authors' EMO2 arguments that are one design for every run; emo_mm's
# EMOv2 implements exactly this design (its arch_settings hold the rest).
AUTHORS_DESIGN = dict(
    dim_in=3,
    qkv_bias=True,
    attn_drop=0.0,
    drop=0.0,
    v_group=False,
    attn_pre=False,
    ls_value=1e-6,
    conv_kss=[1, 1, 1, 1],
    conv_groupss=[1, 1, 1, 1])
NORM_TYPES = {'bn_2d': 'BN', 'ln_2d': 'LN2d'}
ACT_TYPES = {'silu': 'SiLU', 'gelu': 'GELU'}


def plain(value):
    """A config as plain dicts and lists, without mmengine's ``_scope_``
    keys (the ``mmdet::`` bases add them; the dumps have none)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def differences(ours, theirs, path=''):
    """Dotted paths where two plain configs differ."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out = []
        for key in sorted(set(ours) | set(theirs), key=str):
            out += differences(
                ours.get(key, '<absent>'), theirs.get(key, '<absent>'),
                f'{path}.{key}' if path else str(key))
        return out
    if isinstance(ours, list) and isinstance(theirs, list) and \
            len(ours) == len(theirs):
        out = []
        for i, (a, b) in enumerate(zip(ours, theirs)):
            out += differences(a, b, f'{path}.{i}')
        return out
    return [] if ours == theirs else [f'{path}: ours {ours!r}, log {theirs!r}']


def check_backbone(ours, logged, variant):
    """Our EMOv2 arguments against the logged EMO2 ones."""
    assert ours.pop('type') == 'EMOv2' and logged.pop('type') == 'EMO2'
    arch = EMOv2.arch_settings[ours.pop('arch')]
    assert ours.pop('out_indices') == logged.pop('out_indices')
    assert logged.pop('depths') == list(arch['depths'])
    assert logged.pop('embed_dims') == list(arch['channels'])
    assert logged.pop('exp_ratios') == list(arch['exp_ratios'])
    assert logged.pop('dim_heads') == list(arch['head_dims'])
    assert logged.pop('dw_kss') == list(arch['dw_kernel_sizes'])
    assert [NORM_TYPES[n] for n in logged.pop('norm_layers')] == \
        list(arch['norm_types'])
    assert [ACT_TYPES[a] for a in logged.pop('act_layers')] == \
        list(arch['act_types'])
    # [0]: a 1x1 conv mixer; [3]: the spanning (remote + close) attention.
    assert [e == [3] for e in logged.pop('hybrid_eopss')] == \
        list(arch['attn_stages'])
    assert logged.pop('num_classes') == 80  # unused by their backbone
    for key, value in AUTHORS_DESIGN.items():
        assert logged.pop(key) == value, key
    assert logged.pop('window_sizes') == [ours.pop('window_size')] * 4
    assert logged.pop('drop_path') == ours.pop('drop_path_rate')
    assert logged.pop('frozen_stages') == ours.pop('frozen_stages')
    assert logged.pop('norm_eval') == ours.pop('norm_eval')
    # The memory format is ours, not the recipe's: it changes no output;
    # test_channels_last.py checks its value in every config.
    assert ours.pop('channels_last') in (True, False)
    # sync_bn=False: nn.BatchNorm2d with their eps of 1e-6; the depthwise
    # conv's norm and activation are the defaults (BN + SiLU).
    assert logged.pop('sync_bn') is False
    assert ours.pop('norm_cfg') == dict(type='BN', eps=1e-6)
    assert ours.pop('dw_norm_cfg', None) is None
    assert ours.pop('dw_act_cfg', dict(type='SiLU')) == dict(type='SiLU')
    # Their ../pretrained/emo2_<V>.pth: the released EMOv2_<V>_224.pth
    # (none for 20M, see the configs).
    assert logged.pop('pretrained') == \
        f'../pretrained/emo2_{variant.upper()}.pth'
    init_cfg = ours.pop('init_cfg')
    if variant == '20m':
        assert init_cfg is None
    else:
        assert init_cfg == dict(
            type='Pretrained',
            checkpoint='https://github.com/zhangzjn/EMOv2/raw/main/'
            f'resources/Cls/EMOv2_{variant.upper()}_224.pth')
    assert not ours and not logged, (ours, logged)


@pytest.mark.parametrize('config', CONFIGS)
def test_config_is_the_logged_run(config):
    """The whole config equals the mmengine dump of the authors' run, but
    for the backbone (compared argument by argument), the no-decay keys
    (compared by the parameters they select: below), the SSD head's class
    (:class:`PredictableSSDHead`, the same head that can also predict
    under mmdet 3.3.0) and the keys listed above."""
    variant = re.search(r'emov2_(\d+m)_', config).group(1)
    ours = plain(load(config).to_dict())
    logged = plain(emov2_logged_config(LOG_RUN[config]).to_dict())
    for key in NOT_RECIPE:
        logged.pop(key)
    for key in OURS_ONLY:
        ours.pop(key)

    check_backbone(ours['model'].pop('backbone'),
                   logged['model'].pop('backbone'), variant)
    # The optimizer: AdamW at the logged lr (2.4e-3 is their
    # 0.0002 * 6 * 2, printed with a rounding error), betas, weight decay.
    ours_lr = ours['optim_wrapper']['optimizer'].pop('lr')
    assert ours_lr == pytest.approx(
        logged['optim_wrapper']['optimizer'].pop('lr'), rel=1e-12)
    ours['optim_wrapper'].pop('paramwise_cfg')
    logged['optim_wrapper'].pop('paramwise_cfg')
    if 'ssdlite' in config:
        assert ours['model']['bbox_head'].pop('type') == 'PredictableSSDHead'
        assert logged['model']['bbox_head'].pop('type') == 'SSDHead'

    diff = differences(ours, logged)
    assert not diff, '\n'.join(diff)


@pytest.mark.parametrize('config', CONFIGS)
def test_recipe_essentials(config):
    """What the whole-config comparison above covers, spelled out (so
    that a changed log could not pass silently)."""
    cfg = load(config)
    ssd = 'ssdlite' in config
    optim = cfg.optim_wrapper
    assert optim.type == 'OptimWrapper'
    assert optim.optimizer.type == 'AdamW'
    assert optim.optimizer.lr == (2.4e-3 if ssd else 2e-4)
    assert optim.optimizer.weight_decay == 0.05
    assert optim.clip_grad == dict(max_norm=0.1, norm_type=2)
    epochs = 120 if ssd else 12
    assert cfg.train_cfg.max_epochs == epochs
    assert [s.type for s in cfg.param_scheduler] == \
        ['LinearLR', 'CosineAnnealingLR']
    assert cfg.param_scheduler[0].start_factor == 1e-5
    assert cfg.param_scheduler[1].begin == epochs // 2
    assert cfg.param_scheduler[1].T_max == epochs // 2
    assert cfg.train_dataloader.batch_size == (24 if ssd else 4)
    assert cfg.model.backbone.window_size == 10
    assert cfg.model.backbone.norm_eval is True
    assert cfg.model.backbone.frozen_stages == (-1 if ssd else 1)
    size = 512 if '_512_' in config else 320
    if ssd:
        resize = [
            t for t in cfg.train_dataloader.dataset.dataset.pipeline
            if t.type == 'Resize'
        ]
        assert resize[0].scale == (size, size)
        for loader in (cfg.val_dataloader, cfg.test_dataloader):
            resize = [t for t in loader.dataset.pipeline if t.type == 'Resize']
            assert resize[0].scale == (size, size)
        # The anchors of the 320 model at both sizes, as the authors ran.
        assert cfg.model.bbox_head.anchor_generator.max_sizes[-1] == 320


# -------------------------------------------------------------- no decay
def authors_names(model):
    """Our parameter name -> the authors' (backbone renamed; the neck and
    heads are the same mmdet modules in both)."""
    state = model.backbone.state_dict()
    theirs = ours_to_authors(state)
    by_tensor = {id(v): k for k, v in theirs.items()}
    names = {}
    for name, _ in model.named_parameters():
        if name.startswith('backbone.'):
            names[name] = 'backbone.' + by_tensor[id(state[name[9:]])]
        else:
            names[name] = name
    return names


def mmengine_weight_decay(full_name, custom_keys, base_wd):
    """mmengine's DefaultOptimWrapperConstructor rule: the longest (then
    alphabetically first) custom key contained in the name decides."""
    for key in sorted(sorted(custom_keys), key=len, reverse=True):
        if key in full_name:
            return base_wd * custom_keys[key].get('decay_mult', 1.0)
    return base_wd


def check_no_decay_and_frozen(model, wrapper, logged):
    """The parameters that the config's optimizer ``wrapper`` gives weight
    decay 0 are exactly those that the authors' custom keys (from the log
    ``logged``, matched by substring against their names) gave 0, and the
    frozen ones are their frozen stages."""
    names = authors_names(model)
    assert len(set(names.values())) == len(names)

    # Their _freeze_stages: stage0 (the stem) to stage<frozen_stages>.
    frozen_stages = logged.model.backbone.frozen_stages
    their_frozen = tuple(f'backbone.stage{i}.'
                         for i in range(frozen_stages + 1))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        n
        for n, theirs in names.items()
        if their_frozen and theirs.startswith(their_frozen)
    }

    by_id = {id(p): n for n, p in model.named_parameters()}
    decay = {
        by_id[id(p)]: group['weight_decay']
        for group in wrapper.optimizer.param_groups
        for p in group['params']
    }
    assert set(decay) == set(names) - frozen

    base_wd = logged.optim_wrapper.optimizer.weight_decay
    keys = logged.optim_wrapper.paramwise_cfg.custom_keys
    expected = {
        n: mmengine_weight_decay(names[n], keys, base_wd)
        for n in decay
    }
    spared = {n for n, wd in decay.items() if wd == 0}
    authors_spared = {n for n, wd in expected.items() if wd == 0}
    assert spared == authors_spared, (
        f'spared here only: {sorted(spared - authors_spared)}; '
        f'by the authors only: {sorted(authors_spared - spared)}')
    assert decay == expected
    # The sets are what the configs' comments say: every norm of the
    # backbone, the stem's BNs included, and nothing else.
    assert {n.split('.')[-2] for n in spared} == {'norm', 'bn'}
    assert any('.conv_local.bn.' in n for n in spared)
    stem_bns = {
        f'backbone.stages.0.{i}.bn.{w}'
        for i in (0, 1)
        for w in ('weight', 'bias')
    }
    if frozen_stages < 0:
        assert stem_bns <= spared
    else:
        assert stem_bns <= frozen


@pytest.mark.parametrize('config', BUILT)
def test_config_spares_the_authors_parameters_counts_and_trains(config):
    """One build per config (the slow part): on the fresh model, the
    optimizer's no-decay and frozen sets are the authors'; then the exact
    parameter count, and one training step of that optimizer."""
    torch.manual_seed(0)
    cfg, model = build_cpu_model(config)
    wrapper = optim_wrapper_on_cpu(cfg, model)
    check_no_decay_and_frozen(model, wrapper,
                              emov2_logged_config(LOG_RUN[config]))
    assert sum(p.numel() for p in model.parameters()) == \
        CONFIG_PARAMS[config]

    # One step of the config's own optimizer (AdamW, its lr and weight
    # decay, gradient clipping at 0.1) on two tiny images.
    model.train()
    batch = model.data_preprocessor(
        tiny_batch(with_mask='mask_rcnn' in config), training=True)
    loss, log_vars = model.parse_losses(model(**batch, mode='loss'))
    assert torch.isfinite(loss), log_vars
    if 'mask_rcnn' in config:
        loss_mask = float(log_vars['loss_mask'])
        assert math.isfinite(loss_mask) and loss_mask > 0
    wrapper.backward(loss)
    backbone = model.backbone
    last_stage = list(backbone.stages[-1].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in last_stage)  # the loss reaches the backbone
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    frozen = [p for p in backbone.parameters() if not p.requires_grad]
    assert all(p.grad is None for p in frozen)
    before = [p.detach().clone() for p in frozen]
    wrapper.step()
    for p, old in zip(frozen, before):
        assert torch.equal(p, old)  # frozen stages stay as loaded
    check_predictions(model, config)  # on the model built here


@pytest.mark.parametrize('variant', VARIANTS)
def test_the_512_ssdlite_configs_are_the_320_models(variant):
    """Why the test above skips the 512 configs: the model, optimizer and
    scope (all that the build and the step read) are the 320 config's, and
    the authors' 512 run has the model and optimizer of their 320 run (all
    that the no-decay and frozen sets read from the log)."""
    pair = [f'ssdlite/emov2_{variant}{size}_coco.py' for size in ('', '_512')]
    assert pair[0] in BUILT and pair[1] in CONFIGS
    assert CONFIG_PARAMS[pair[1]] == CONFIG_PARAMS[pair[0]]
    small, large = (load(c) for c in pair)
    for key in ('default_scope', 'model', 'optim_wrapper'):
        assert large.get(key) == small.get(key), key
    small, large = (emov2_logged_config(LOG_RUN[c]) for c in pair)
    for key in ('model', 'optim_wrapper'):
        assert large.get(key) == small.get(key), key


# --------------------------------------------------- documented results
def evaluations(run):
    """Every ``Epoch(val)`` line of a log: [(epoch, {metric: value})]."""
    path = sorted(glob.glob(osp.join(EMOV2_LOGS, f'{run}_2*.txt')))
    if not path:
        _fixtures_missing(f'{run}_*.txt')
    out = []
    with open(path[0]) as f:
        for line in f:
            match = re.search(r'Epoch\(val\) \[(\d+)\]', line)
            if match:
                metrics = dict(re.findall(r'coco/(\w+): ([\d.]+)', line))
                out.append((int(match.group(1)), {
                    k: float(v)
                    for k, v in metrics.items()
                }))
    return out


def metafile_models():
    models = {}
    for folder in ('ssdlite', 'retinanet', 'mask_rcnn'):
        with open(osp.join(REPO_ROOT, 'configs', folder, 'metafile.yml')) as f:
            for model in yaml.safe_load(f)['Models']:
                models[model['Config']] = model
    return models


@pytest.mark.parametrize('pattern,run', [(p, r) for p, r, _ in FAMILIES])
def test_metafiles_quote_the_paper_and_the_logs_last_evaluation(pattern, run):
    models = metafile_models()
    for i, variant in enumerate(VARIANTS):
        config = pattern.format(variant)
        model = models[f'configs/{config}']
        assert model['Metadata']['Parameters'] == CONFIG_PARAMS[config]
        metrics = model['Results'][0]['Metrics']
        box_ap = PAPER_BOX_AP[run][i]
        assert metrics['box AP'] == box_ap
        evals = evaluations(run.format(variant.upper()))
        last = evals[-1][1]
        # The paper's number is the last evaluation (also the best).
        assert round(last['bbox_mAP'] * 100, 1) == box_ap
        assert max(e['bbox_mAP'] for _, e in evals) == last['bbox_mAP']
        if 'segm_mAP' in last:
            assert model['Results'][1]['Metrics']['mask AP'] == \
                round(last['segm_mAP'] * 100, 1)


def check_predictions(model, config):
    """``mode='predict'`` on two 96x128 images: per image, N > 0 boxes
    (N, 4) inside the image, N scores and N labels of the 80 COCO classes
    (and N boolean masks of the image's size for Mask R-CNN). The score
    threshold is 0 (random weights score about 1/80), and Mask R-CNN keeps
    50 proposals and 5 boxes (its mask head took 4 s on 200)."""
    mask = 'mask_rcnn' in config
    head = model.roi_head if mask else model.bbox_head
    head.test_cfg.score_thr = 0.0
    if mask:
        head.test_cfg.max_per_img = 5
        model.rpn_head.test_cfg.max_per_img = 50
    model.eval()
    h, w = 96, 128
    batch = model.data_preprocessor(tiny_batch(False, (h, w)), training=False)
    with torch.no_grad():
        results = model(**batch, mode='predict')
    assert len(results) == 2
    for result in results:
        pred = result.pred_instances
        n = len(pred.bboxes)
        assert n > 0 and pred.bboxes.shape == (n, 4)
        assert pred.scores.shape == pred.labels.shape == (n, )
        assert pred.labels.min() >= 0 and pred.labels.max() < 80
        boxes = pred.bboxes
        assert (boxes >= 0).all() and (boxes[:, 0::2] <= w).all() and \
            (boxes[:, 1::2] <= h).all()
        if mask:
            assert pred.masks.shape == (n, h, w)
            assert pred.masks.dtype == torch.bool
        else:
            assert 'masks' not in pred
