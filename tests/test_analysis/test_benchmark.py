"""emo_mm.analysis.benchmark and tools/analysis/benchmark.py, which prints
its table: EMO and EMOv2 beside the EdgeNeXt of their tier (timings are not
asserted: speed targets live in the tool's output, not in tests)."""
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from conftest import REPO_ROOT as REPO
from emo_mm.analysis.benchmark import (TIMED_LAYER_SCALE, Settings,
                                       build_tier, prepare)
from emo_mm.models import EMO, I2RMB, EMOv2

TOOL = osp.join(REPO, 'tools', 'analysis', 'benchmark.py')


def run(*args):
    proc = subprocess.run([sys.executable, TOOL, *args], cwd=REPO,
                          text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc.stdout


def rows_of(out, *prefixes):
    return [line for line in out.splitlines()
            if line.startswith(prefixes)]


def test_inference_table():
    out = run('--pairs', '1m', '--sizes', '64', '--batches', '1', '2',
              '--repeat', '2', '--warmup', '1', '--threads', '1',
              '--channels-last')
    assert '1 threads' in out and 'channels_last True' in out
    rows = rows_of(out, 'EMO-1M', 'EMOv2-1M', 'EdgeNeXt-xxsmall')
    # Two batch sizes x the tier (EMO, EMOv2, EdgeNeXt, in that order).
    assert [row.split()[0] for row in rows] == [
        'EMO-1M', 'EMOv2-1M', 'EdgeNeXt-xxsmall'] * 2
    assert '2x3x64x64' in rows[3]
    # Each EMO row ends with its time over EdgeNeXt's; EdgeNeXt's does not.
    assert all(re.search(r'\d\.\d\dx$', row.rstrip()) for row in rows[:2])
    assert not rows[2].rstrip().endswith('x')


def test_tiers_and_families():
    """The 20M tier has EMOv2 and EdgeNeXt-base only; --families leaves a
    family out; EMOv2's window is 10 at sizes other than 224, as in its
    downstream configs."""
    out = run('--tiers', '20m', '5m', '--families', 'EMOv2', '--sizes', '64',
              '--batches', '1', '--repeat', '2', '--warmup', '1',
              '--threads', '1')
    rows = rows_of(out, 'EMO', 'EdgeNeXt')
    assert [row.split()[0] for row in rows] == [
        'EMOv2-20M', 'EdgeNeXt-base', 'EMOv2-5M', 'EdgeNeXt-small']
    assert rows[0].split()[1] == rows[2].split()[1] == '(w10)'
    names = [name for name, _ in build_tier('1m', 224)]
    assert names == ['EMO-1M (w7)', 'EMOv2-1M (w7)', 'EdgeNeXt-xxsmall']
    names = [name for name, _ in build_tier('5m', 512, ('EMO', ))]
    assert names == ['EMO-5M (w16)']
    # EMOv2 is timed with LayerScales of TIMED_LAYER_SCALE, not 1e-6.
    (name, model), = build_tier('1m', 320, ('EMOv2', ))
    assert name == 'EMOv2-1M (w10)'
    gammas = [m.gamma for m in model.modules() if isinstance(m, I2RMB)]
    assert len(gammas) == sum(EMOv2.arch_settings['1m']['depths'])
    assert all(g.eq(TIMED_LAYER_SCALE).all() for g in gammas)


def test_train_table_reports_peak_memory():
    out = run('--pairs', '1m', '--sizes', '64', '--batches', '2', '--train',
              '--repeat', '2', '--warmup', '1', '--threads', '1')
    assert 'peak MB' in out
    rows = rows_of(out, 'EMO-1M', 'EMOv2-1M', 'EdgeNeXt')
    assert len(rows) == 3
    for row in rows:  # a process holds > 100 MB
        assert float(row.split()[-1]) > 100, row


def test_fast_path_is_the_default():
    """Channels-last and folded BatchNorms unless told otherwise; a training
    step never folds."""
    base = ('--pairs', '1m', '--sizes', '64', '--batches', '1', '--repeat',
            '2', '--warmup', '1', '--threads', '1', '--families', 'EMO')
    assert 'channels_last True, deploy True' in run(*base)
    out = run(*base, '--no-channels-last', '--no-deploy')
    assert 'channels_last False, deploy False' in out
    assert 'deploy False' in run(*base, '--train')
    assert Settings().channels_last and Settings().deploy
    proc = subprocess.run([sys.executable, TOOL, '--deploy', '--train'],
                          cwd=REPO, text=True, capture_output=True)
    assert proc.returncode == 2
    assert 'cannot be combined with --train' in proc.stderr


@pytest.mark.parametrize('flag,tag', [('--onnxruntime', '[ORT]'),
                                      ('--openvino', '[OpenVINO]')])
def test_runtime_rows(flag, tag):
    if flag == '--openvino':
        pytest.importorskip('openvino', reason='openvino is optional '
                            '(requirements/export.txt; CI installs it)')
    out = run('--pairs', '1m', '--sizes', '64', '--batches', '2',
              '--repeat', '2', '--warmup', '1', '--threads', '1', flag)
    rows = [line for line in out.splitlines() if tag in line]
    assert [row.split()[0] for row in rows] == ['EMO-1M', 'EMOv2-1M',
                                                'EdgeNeXt-xxsmall']
    # EMO / EdgeNeXt and EMOv2 / EdgeNeXt in the same runtime
    assert all(row.rstrip().endswith('x') for row in rows[:2])
    proc = subprocess.run([sys.executable, TOOL, '--onnxruntime', '--train'],
                          cwd=REPO, text=True, capture_output=True)
    assert proc.returncode == 2 and 'CPU only' in proc.stderr


def test_config_and_dtype():
    out = run('--config', 'configs/ssdlite/emo_1m_coco.py', '--batches', '2',
              '--repeat', '2', '--warmup', '1', '--threads', '1')
    assert 'configs/ssdlite/emo_1m_coco.py: inference' in out
    assert re.search(r'channels_last True, deploy True +2x3x320x320 +[\d.]+ ',
                     out), out
    out = run('--pairs', '1m', '--sizes', '64', '--batches', '1', '--repeat',
              '2', '--warmup', '1', '--threads', '1', '--dtype', 'bf16')
    assert 'bf16' in out.splitlines()[0] or 'bf16' in out
    assert len(rows_of(out, 'EMO-1M', 'EMOv2-1M', 'EdgeNeXt')) == 3


@pytest.mark.parametrize('config,train', [
    ('configs/demo/ssdlite_emo_1m_shapes.py', False),
    ('configs/demo/ssdlite_emo_1m_shapes.py', True),
    ('configs/demo/deeplabv3_emov2_1m_scenes.py', True),
    ('configs/demo/emo_1m_shapes_cls.py', True),
])
def test_whole_model_before_and_after(config, train):
    """--compare times the config's model as it ran before (NCHW, BatchNorms
    unfolded) beside the default, with the ratio; --train a whole training
    step, the head's loss on random ground truth included."""
    out = run('--config', config, '--compare', '--batches', '2', '--repeat',
              '2', '--warmup', '1', '--threads', '1',
              *(['--train'] if train else []))
    assert ('train step (loss, backward, SGD)' if train else
            'inference (tensor mode)') in out
    before = [line for line in out.splitlines()
              if line.startswith('before: NCHW, BN unfolded')]
    after = [line for line in out.splitlines()
             if line.startswith(f'channels_last True, deploy {not train}')]
    assert len(before) == len(after) == 1
    assert before[0].rstrip().endswith('1.00x')
    assert re.search(r'\d\.\d\dx$', after[0].rstrip())


def test_loss_mode_steps_on_the_heads_loss():
    """The timed training step is the model's own loss: finite, and the
    head's parameters get gradients."""
    from emo_mm.analysis.benchmark import build_config_model
    from emo_mm.config import input_shape, load_config
    cfg = load_config(osp.join(REPO, 'configs/ssdlite/emo_1m_coco.py'))
    settings = Settings(train=True, threads=1)
    model = build_config_model(cfg, 2, (160, 160), settings)
    loss = model(torch.randn(2, 3, 160, 160))
    assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    head = model.model.bbox_head
    assert all(p.grad is not None for p in head.parameters())
    assert input_shape(cfg)[0] == (320, 320)


@pytest.mark.parametrize('backbone', [EMO, EMOv2])
def test_deploy_times_the_folded_model(backbone):
    """Settings(deploy=True) hands the timing loop a model without
    BatchNorms (nor, in EMOv2, LayerScales) whose outputs are the unfolded
    model's."""
    torch.manual_seed(0)
    model = backbone(arch='1m', out_indices=(0, 1, 2, 3, 4)).eval()
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    with torch.no_grad():  # LayerScales as trained ones, not 1e-6
        for name, param in model.named_parameters():
            if name.endswith('gamma'):
                param.uniform_(0.3, 0.7)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        expected = model(x)
    timed = prepare(model, Settings(deploy=True, threads=1))
    assert not any(isinstance(m, _BatchNorm) for m in timed.modules())
    assert not any(name.endswith('gamma')
                   for name, _ in timed.named_parameters())
    with torch.no_grad():
        got = timed(x)
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
