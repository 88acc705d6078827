"""emo_mm.analysis.benchmark and tools/analysis/benchmark.py, which prints
its table: EMO and EMOv2 beside the EdgeNeXt of their tier (timings are not
asserted: speed targets live in the tool's output, not in tests). The tool
runs in this process (conftest.run_tool), as its command line does."""
import os.path as osp
import re

import pytest
import torch
from conftest import REPO_ROOT as REPO
from conftest import run_tool
from torch.nn.modules.batchnorm import _BatchNorm

from emo_mm.analysis.benchmark import (TIMED_LAYER_SCALE, Settings, build_tier,
                                       prepare)
from emo_mm.models import EMO, I2RMB, EMOv2

TOOL = 'analysis/benchmark.py'
# Short runs: the tests check the table, not the times.
QUICK = ('--repeat', '2', '--warmup', '1', '--threads', '1')


def run_status(*args):
    """``(exit status, output)`` of the tool; torch's thread count, which
    the tool sets, is restored after it."""
    threads = torch.get_num_threads()
    try:
        return run_tool(TOOL, *args)
    finally:
        torch.set_num_threads(threads)


def run(*args):
    status, out = run_status(*args)
    assert status == 0, out[-3000:]
    return out


def rows_of(out, *prefixes):
    return [line for line in out.splitlines() if line.startswith(prefixes)]


def measured(row):
    """A row's torch threads and output dtype: the two cells after its
    input (names have spaces, so they are found from the input)."""
    cells = row.split()
    i = next(i for i, cell in enumerate(cells)
             if re.fullmatch(r'\d+x3x\d+x\d+', cell))
    return cells[i + 1], cells[i + 2]


@pytest.fixture(scope='module')
def inference_table():
    """The 1M tier at batches 1 and 2, with the default settings."""
    return run('--pairs', '1m', '--sizes', '64', '--batches', '1', '2', *QUICK)


@pytest.fixture(scope='module')
def train_table():
    """The 1M tier's training step at batches 2 and 16, with peak memory."""
    return run('--pairs', '1m', '--sizes', '64', '--batches', '2', '16',
               '--train', *QUICK)


def test_inference_table(inference_table):
    out = inference_table
    assert '1 threads' in out and 'channels_last True' in out
    rows = rows_of(out, 'EMO-1M', 'EMOv2-1M', 'EdgeNeXt-xxsmall')
    # Two batch sizes x the tier (EMO, EMOv2, EdgeNeXt, in that order).
    assert [row.split()[0]
            for row in rows] == ['EMO-1M', 'EMOv2-1M', 'EdgeNeXt-xxsmall'] * 2
    assert '2x3x64x64' in rows[3]
    # Each EMO row ends with its time over EdgeNeXt's; EdgeNeXt's does not.
    assert all(re.search(r'\d\.\d\dx$', row.rstrip()) for row in rows[:2])
    assert not rows[2].rstrip().endswith('x')
    assert all(measured(row) == ('1', 'float32') for row in rows)


def test_tiers_and_families():
    """The 20M tier has EMOv2 and EdgeNeXt-base only; --families leaves a
    family out; EMOv2's window is 10 at sizes other than 224, as in its
    downstream configs."""
    out = run('--tiers', '20m', '5m', '--families', 'EMOv2', '--sizes', '64',
              '--batches', '1', *QUICK)
    rows = rows_of(out, 'EMO', 'EdgeNeXt')
    assert [row.split()[0] for row in rows
            ] == ['EMOv2-20M', 'EdgeNeXt-base', 'EMOv2-5M', 'EdgeNeXt-small']
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


def test_train_table_reports_peak_memory(train_table):
    """--train adds each row's peak memory: what training the model adds
    to a process's resident memory (a child's peak over its size before
    the model was built), not the 0.5 GB that the libraries hold. It grows
    with the batch by the activations of 14 more images. (11-23 s here on
    2 cores, most of it the server the children fork from importing torch
    and mmpretrain, once per process.)"""
    out = train_table
    assert 'peak MB' in out
    rows = rows_of(out, 'EMO-1M', 'EMOv2-1M', 'EdgeNeXt')
    assert [row.split()[0]
            for row in rows] == ['EMO-1M', 'EMOv2-1M', 'EdgeNeXt-xxsmall'] * 2
    assert all(measured(row) == ('1', 'float32') for row in rows)
    peaks = [float(row.split()[-1]) for row in rows]
    # Measured here: 74, 104 and 71 MB at batch 2; 151, 350 and 99 at 16.
    for small, large, row in zip(peaks[:3], peaks[3:], rows):
        assert 0 < small < 200 and large > small + 10, (small, large, row)


def test_fast_path_is_the_default(inference_table, train_table):
    """Channels-last and folded BatchNorms unless told otherwise; a training
    step never folds."""
    assert 'channels_last True, deploy True' in inference_table
    out = run('--pairs', '1m', '--sizes', '64', '--batches', '1', '--families',
              'EMO', '--no-channels-last', '--no-deploy', *QUICK)
    assert 'channels_last False, deploy False' in out
    assert 'channels_last True, deploy False' in train_table
    assert Settings().channels_last and Settings().deploy
    status, out = run_status('--deploy', '--train')
    assert status == 2
    assert 'cannot be combined with --train' in out


@pytest.mark.parametrize('flag,tag', [('--onnxruntime', '[ORT]'),
                                      ('--openvino', '[OpenVINO]')])
def test_runtime_rows(flag, tag):
    """Rows of the exported models, in the runtime's own dtype. (OpenVINO:
    13-21 s here, converting and compiling three models.)"""
    if flag == '--openvino':
        pytest.importorskip(
            'openvino',
            reason='openvino is optional '
            '(requirements/export.txt; CI installs it)')
    out = run('--pairs', '1m', '--sizes', '64', '--batches', '2', flag, *QUICK)
    rows = [line for line in out.splitlines() if tag in line]
    assert [row.split()[0]
            for row in rows] == ['EMO-1M', 'EMOv2-1M', 'EdgeNeXt-xxsmall']
    # EMO / EdgeNeXt and EMOv2 / EdgeNeXt in the same runtime
    assert all(row.rstrip().endswith('x') for row in rows[:2])
    assert all(measured(row)[1] == 'float32' for row in rows)
    status, out = run_status('--onnxruntime', '--train')
    assert status == 2 and 'CPU only' in out


def test_config_and_dtype():
    """The threads and dtype in the rows are measured in the timed runs,
    not echoed: torch's thread count is 2 before a --threads 1 run, and
    with --dtype bf16 EMO and EMOv2 return bfloat16 (autocast)."""
    out = run('--config', 'configs/ssdlite/emo_1m_coco.py', '--batches', '2',
              *QUICK)
    assert 'configs/ssdlite/emo_1m_coco.py: inference' in out
    row, = rows_of(out, 'channels_last True, deploy True ')
    assert re.search(r'deploy True +2x3x320x320 +1 +float32 +[\d.]+ ', row)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = run('--pairs', '1m', '--sizes', '64', '--batches', '1',
                  '--dtype', 'bf16', *QUICK)
    finally:
        torch.set_num_threads(threads)
    assert 'dtype bf16' in out
    rows = rows_of(out, 'EMO-1M', 'EMOv2-1M', 'EdgeNeXt')
    # EdgeNeXt ends with a LayerNorm, which autocast runs in float32.
    assert [measured(row) for row in rows] == [('1', 'bfloat16'),
                                               ('1', 'bfloat16'),
                                               ('1', 'float32')], rows


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
    out = run('--config', config, '--compare', '--batches', '2', *QUICK,
              *(['--train'] if train else []))
    assert ('train step (loss, backward, SGD)'
            if train else 'inference (tensor mode)') in out
    before = [
        line for line in out.splitlines()
        if line.startswith('before: NCHW, BN unfolded')
    ]
    after = [
        line for line in out.splitlines()
        if line.startswith(f'channels_last True, deploy {not train}')
    ]
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
    assert not any(
        name.endswith('gamma') for name, _ in timed.named_parameters())
    with torch.no_grad():
        got = timed(x)
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
