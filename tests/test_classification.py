"""ImageNet classification with mmpretrain: the authors' weights reproduce
their logits through our configs, the converter round-trips, every config
trains a step, and the demo runs through the tools."""
import copy
import glob
import os.path as osp
from collections import OrderedDict

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS

from conftest import CLASSIFIER_PARAMS, _fixtures_missing
from conftest import run_python as run
from emo_mm.datasets import make_shapes_imagenet
from emo_mm.models.checkpoint import (authors_to_classifier,
                                      classifier_to_authors)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVERT = osp.join(REPO, 'tools', 'convert_authors_checkpoint.py')
DEMO = osp.join(REPO, 'configs', 'demo', 'emo_1m_shapes_cls.py')
FIXTURE_DIR = osp.join(REPO, '..', 'shared', 'fixtures')

# Backbone + final norm + 1000-class head; the paper's 1.3/2.3/5.1/6.1M.
CONFIG_PARAMS = {f'emo_{arch}_in1k.py': count
                 for arch, count in CLASSIFIER_PARAMS.items()}


@pytest.fixture(scope='module')
def convert_tool():
    """tools/convert_authors_checkpoint.py in-process (a subprocess would
    spend ~10 s importing mmcv each time)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('convert_tool', CONVERT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def convert(*args):
        return module.main([str(a) for a in args])

    return convert


def build_classifier(config, **backbone):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'imagenet', config))
    cfg.model.backbone.update(backbone)
    init_default_scope('mmpretrain')
    return cfg, MODELS.build(copy.deepcopy(cfg.model))


def stored_state_dict(name='emo_1m_w7_224x224.pt'):
    """A fixture's state dict as stored (fp16), not cast by conftest."""
    path = osp.join(FIXTURE_DIR, name)
    if not osp.exists(path):
        _fixtures_missing(name)
    return OrderedDict(torch.load(path, weights_only=True)['state_dict'])


def test_authors_checkpoint_reproduces_their_logits(authors_fixture,
                                                    tmp_path):
    """Their net.pth, as it is, through the config's classifier."""
    fixture = authors_fixture
    _, model = build_classifier(
        f'emo_{fixture["variant"]}_in1k.py',
        window_size=fixture['window_size'])
    assert sum(p.numel() for p in model.parameters()) == \
        fixture['num_params']
    path = str(tmp_path / 'net.pth')
    torch.save(fixture['state_dict'], path)
    load_checkpoint(model, path, strict=True)  # raises on any key mismatch
    model.eval()
    with torch.no_grad():
        logits = model(fixture['input'], mode='tensor')
    torch.testing.assert_close(
        logits, fixture['logits'].float(), atol=1e-5, rtol=0)


def test_conversion_round_trip_is_lossless(convert_tool, tmp_path, capsys):
    authors = stored_state_dict()  # fp16
    ours = authors_to_classifier(authors)
    assert 'head.fc.weight' in ours and 'backbone.norm.weight' in ours
    back = classifier_to_authors(ours)
    assert list(back) == list(authors)
    for key, value in authors.items():
        assert back[key].dtype == value.dtype
        assert torch.equal(back[key], value), key

    # The same through the command line, both directions and the backbone.
    src = str(tmp_path / 'net.pth')
    torch.save({'model': authors}, src)  # a wrapped file is accepted
    cls_path, back_path = str(tmp_path / 'cls.pth'), str(tmp_path / 'b.pth')
    assert convert_tool(src, cls_path, '--to', 'classifier') == 0
    assert 'EMO-1M mmpretrain classifier' in capsys.readouterr().out
    checkpoint = torch.load(cls_path, weights_only=True)
    assert checkpoint['meta']['arch'] == '1m'
    assert len(checkpoint['meta']['dataset_meta']['classes']) == 1000
    assert convert_tool(cls_path, back_path, '--to', 'authors') == 0
    again = torch.load(back_path, weights_only=True)
    assert list(again) == list(authors)
    assert all(torch.equal(again[k], v) for k, v in authors.items())

    backbone_path = str(tmp_path / 'backbone.pth')
    assert convert_tool(src, backbone_path, '--to', 'backbone') == 0
    backbone = torch.load(backbone_path, weights_only=True)['state_dict']
    assert all(k.startswith('backbone.') for k in backbone)
    assert not any(k.startswith(('backbone.norm.', 'head.'))
                   for k in backbone)
    # ... which a detector/segmentor backbone loads with no key left over.
    from emo_mm.models import EMO
    model = EMO(arch='1m')
    missing, unexpected = model.load_state_dict(
        {k[len('backbone.'):]: v.float() for k, v in backbone.items()})
    assert not missing and not unexpected
    round_trip = str(tmp_path / 'backbone_authors.pth')
    assert convert_tool(backbone_path, round_trip, '--to', 'authors') == 0
    flat = torch.load(round_trip, weights_only=True)
    assert all(torch.equal(flat[k], authors[k]) for k in flat)
    assert len(flat) == len(authors) - 4  # no final norm, no head


def test_converter_errors(convert_tool, tmp_path, capsys):
    authors = stored_state_dict()
    src = str(tmp_path / 'net.pth')
    torch.save(authors, src)

    def fails(*args):
        assert convert_tool(*args) == 1
        return capsys.readouterr().err

    assert 'holds EMO-1M weights, but --arch is 5m' in fails(
        src, tmp_path / 'x.pth', '--to', 'classifier', '--arch', '5m')
    assert not (tmp_path / 'x.pth').exists()

    partial = {k: v for k, v in authors.items()
               if k != 'stage3.2.conv_local.norm.running_var'}
    torch.save(partial, str(tmp_path / 'partial.pth'))
    missing = fails(tmp_path / 'partial.pth', tmp_path / 'y.pth', '--to',
                    'classifier')
    assert 'missing 1 keys' in missing
    assert 'stages.3.2.conv_local.bn.running_var' in missing

    existing = tmp_path / 'exists.pth'
    existing.write_bytes(b'keep me')
    assert 'refusing to overwrite' in fails(src, existing, '--to',
                                            'classifier')
    assert existing.read_bytes() == b'keep me'

    assert 'already in the authors\' layout' in fails(
        src, tmp_path / 'z.pth', '--to', 'authors')
    assert 'does not exist' in fails(tmp_path / 'nowhere.pth',
                                     tmp_path / 'w.pth', '--to', 'backbone')


@pytest.mark.parametrize('config', sorted(CONFIG_PARAMS))
def test_config_builds_and_trains_a_step(config):
    torch.manual_seed(0)
    cfg, model = build_classifier(config, drop_path_rate=0.0)
    assert sum(p.numel() for p in model.parameters()) == CONFIG_PARAMS[config]
    from mmengine.optim import build_optim_wrapper
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'  # as the authors
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(label) for label in (3, 999)]
    batch = model.data_preprocessor(
        dict(inputs=list(torch.randint(0, 256, (2, 3, 160, 160),
                                       dtype=torch.uint8)),
             data_samples=samples), training=True)
    model.train()
    before = model.head.fc.weight.detach().clone()
    log_vars = model.train_step(batch, wrapper)
    assert torch.isfinite(log_vars['loss'])
    assert not torch.equal(before, model.head.fc.weight)
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(batch), mode='predict')
    assert results[0].pred_score.shape == (1000, )


def test_recipe_is_the_authors():
    cfg = Config.fromfile(osp.join(REPO, 'configs/imagenet/emo_5m_in1k.py'))
    assert (cfg.model.backbone.arch, cfg.model.backbone.window_size,
            cfg.model.backbone.final_norm) == ('5m', 7, True)
    assert cfg.model.head.loss.label_smooth_val == 0.1
    optimizer = cfg.optim_wrapper.optimizer
    # 6e-3: what the authors' logs say ran (their trainer scales the 1.5e-3
    # of their config file by 2048 / 512).
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == (
        'AdamW', 6e-3, 0.05)
    assert cfg.optim_wrapper.clip_grad.max_norm == 5.0
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert paramwise.norm_decay_mult == paramwise.bias_decay_mult == 0.0
    assert cfg.auto_scale_lr.base_batch_size == 2048
    assert cfg.train_dataloader.batch_size * 8 == 2048
    # Every iteration's lr against timm: tests/test_imagenet_recipe.py.
    assert cfg.param_scheduler.type == 'TimmCosineLR'
    assert cfg.train_cfg.max_epochs == 300
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook'][0]
    assert 1 - ema.momentum == pytest.approx(0.9998)
    assert ema.evaluate_on_ema and ema.evaluate_on_origin
    types = [t.type for t in cfg.train_pipeline]
    assert 'RandomErasing' not in types and 'RandAugment' in types
    assert [t.interpolation for branch in cfg.train_pipeline[1].transforms
            for t in branch] == ['bilinear', 'bicubic']
    resize, crop = cfg.test_pipeline[1:3]
    assert (resize.type, resize.scale, resize.edge, resize.interpolation,
            crop.crop_size) == ('ResizeEdge', 256, 'short', 'bicubic', 224)


@pytest.fixture(scope='module')
def tiny_imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes_imagenet')
    make_shapes_imagenet(str(root), num_train_per_class=2,
                         num_val_per_class=1, image_size=64, seed=1)
    return str(root)


def loader_options(data_root):
    return [
        f'data_root={data_root}', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False',
        'val_dataloader.batch_size=4', 'test_dataloader.batch_size=4',
    ]


def test_test_tool_takes_the_authors_file(tiny_imagenet, tmp_path):
    """tools/test.py CONFIG net.pth on an ImageNet-format folder."""
    src = str(tmp_path / 'net.pth')
    torch.save(stored_state_dict(), src)  # fp16: loading casts
    out = run('tools/test.py', 'configs/imagenet/emo_1m_in1k.py', src,
              '--work-dir', str(tmp_path / 'work'), '--cfg-options',
              *loader_options(tiny_imagenet)).stdout
    assert 'accuracy/top1:' in out and 'accuracy/top5:' in out
    assert 'accuracy/top1_origin:' in out  # raw and EMA both reported
    assert 'do not match exactly' not in out  # every key was loaded


def test_demo_trains_resumes_and_tests(tiny_imagenet, tmp_path):
    work_dir = str(tmp_path / 'work')
    options = loader_options(tiny_imagenet) + [
        'train_dataloader.batch_size=4', 'train_cfg.max_epochs=1',
        'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1'
    ]
    out = run('tools/train.py', DEMO, '--work-dir', work_dir,
              '--cfg-options', *options).stdout
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    assert 'accuracy/top1:' in out
    resumed = run('tools/train.py', DEMO, '--work-dir', work_dir, '--resume',
                  '--cfg-options', *options[:-3],
                  'train_dataloader.batch_size=4', 'train_cfg.max_epochs=2',
                  'train_cfg.val_interval=1',
                  'default_hooks.checkpoint.interval=1').stdout
    assert 'resumed epoch: 1' in resumed
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    tested = run('tools/test.py', DEMO, osp.join(work_dir, 'epoch_2.pth'),
                 '--work-dir', work_dir, '--cfg-options',
                 *loader_options(tiny_imagenet)).stdout
    assert 'accuracy/top1:' in tested and 'accuracy/top5:' in tested
    assert len(glob.glob(osp.join(tiny_imagenet, 'val', '*.JPEG'))) == 8
