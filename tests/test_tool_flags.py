"""The tools' user-facing flags, each checked on what it does:
get_flops.py --all, benchmark.py --config/--dtype/--deploy, train.py
--amp/--auto-scale-lr, test.py --show-dir (classification)."""
import glob
import importlib.util
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from torch.nn.modules.batchnorm import _BatchNorm

from conftest import REPO_ROOT, run_python
from emo_mm.models import EMO
from emo_mm.utils import cli

CLS_DEMO = osp.join(REPO_ROOT, 'configs', 'demo', 'emo_1m_shapes_cls.py')


def load_tool(*parts):
    path = osp.join(REPO_ROOT, 'tools', *parts)
    spec = importlib.util.spec_from_file_location(parts[-1][:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cls_options(data_root):
    return [f'data_root={data_root}', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False']


def test_get_flops_all_lists_every_config():
    out = run_python('tools/analysis/get_flops.py', '--all',
                     timeout=900).stdout
    configs = sorted(
        osp.relpath(p, REPO_ROOT) for p in glob.glob(
            osp.join(REPO_ROOT, 'configs', '*', '*.py'))
        if '/demo/' not in p)
    for config in configs:
        assert osp.splitext(osp.basename(config))[0] in out, config
    # The same count as for the config alone (test_get_flops.py).
    ssdlite = next(line for line in out.splitlines()
                   if 'ssdlite' in line and 'emo_1m' in line)
    assert '2,311,980' in ssdlite or '2.31' in ssdlite, ssdlite


def test_benchmark_config_and_dtype():
    out = run_python('tools/analysis/benchmark.py', '--config',
                     'configs/ssdlite/emo_1m_coco.py', '--batches', '2',
                     '--repeat', '2', '--warmup', '1', '--threads',
                     '1').stdout
    assert 'configs/ssdlite/emo_1m_coco.py: input from' in out
    assert re.search(r'2x3x320x320: [\d.]+ ms', out), out
    out = run_python('tools/analysis/benchmark.py', '--pairs', '1m',
                     '--sizes', '64', '--batches', '1', '--repeat', '2',
                     '--warmup', '1', '--threads', '1', '--dtype',
                     'bf16').stdout
    assert 'bf16' in out.splitlines()[0] or 'bf16' in out
    assert len([line for line in out.splitlines()
                if line.startswith(('EMO-1M', 'EdgeNeXt'))]) == 2


def test_benchmark_deploy_times_the_folded_model():
    """--deploy hands the timing loop a model without BatchNorms whose
    outputs are the unfolded model's."""
    benchmark = load_tool('analysis', 'benchmark.py')
    args = benchmark.parse_args(['--deploy', '--threads', '1'])
    torch.manual_seed(0)
    model = EMO(arch='1m', out_indices=(0, 1, 2, 3, 4)).eval()
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        expected = model(x)
    timed = benchmark.prepare(model, args)
    assert not any(isinstance(m, _BatchNorm) for m in timed.modules())
    with torch.no_grad():
        got = timed(x)
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_amp_needs_a_gpu(tmp_path, monkeypatch):
    cfg = Config.fromfile(CLS_DEMO)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(cli.ToolError, match='--amp needs a GPU'):
        cli.enable_amp(cfg)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cli.enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    monkeypatch.undo()
    if not torch.cuda.is_available():  # the tool, on this machine
        proc = run_python('tools/train.py', CLS_DEMO, '--amp', '--work-dir',
                          str(tmp_path), check=False)
        assert proc.returncode != 0 and 'Traceback' not in proc.stdout
        assert 'error: --amp needs a GPU' in proc.stdout


def test_auto_scale_lr_and_show_dir(tiny_shapes, tmp_path):
    """--auto-scale-lr: batch 8 against the demo's base 32 trains at a
    quarter of the lr; test.py --show-dir draws every val image."""
    work = str(tmp_path / 'work')
    out = run_python('tools/train.py', CLS_DEMO, '--auto-scale-lr',
                     '--work-dir', work, '--cfg-options',
                     *cls_options(tiny_shapes), 'train_cfg.max_epochs=1',
                     'train_dataloader.batch_size=8').stdout
    assert 'Scaling the original LR by 0.25' in out
    checkpoint = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=True)
    groups = checkpoint['optimizer']['param_groups']
    base_lr = Config.fromfile(CLS_DEMO).optim_wrapper.optimizer.lr
    assert groups and all(g['initial_lr'] == pytest.approx(base_lr / 4)
                          for g in groups)

    show = tmp_path / 'vis'
    run_python('tools/test.py', CLS_DEMO, osp.join(work, 'epoch_1.pth'),
               '--work-dir', work, '--show-dir', str(show), '--cfg-options',
               *cls_options(tiny_shapes))
    pictures = sorted(glob.glob(str(show / '**' / '*.png'), recursive=True))
    images = sorted(glob.glob(osp.join(tiny_shapes, 'val', '*.JPEG')))
    assert len(pictures) == len(images) == 8
    import cv2
    for picture in pictures:
        drawn = cv2.imread(picture)
        # The image with its classes written on a copy enlarged from 64 px
        # (the demo config's resize=256): readable, not blank.
        assert drawn is not None and drawn.std() > 1
        assert min(drawn.shape[:2]) >= 256, drawn.shape
