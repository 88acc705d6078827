"""emo_mm.analysis.benchmark and tools/analysis/benchmark.py, which prints
its table (timings are not asserted: speed targets live in the tool's
output, not in tests)."""
import os.path as osp
import re
import subprocess
import sys

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from conftest import REPO_ROOT as REPO
from emo_mm.analysis.benchmark import Settings, prepare
from emo_mm.models import EMO

TOOL = osp.join(REPO, 'tools', 'analysis', 'benchmark.py')


def run(*args):
    proc = subprocess.run([sys.executable, TOOL, *args], cwd=REPO,
                          text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc.stdout


def test_inference_table():
    out = run('--pairs', '1m', '--sizes', '64', '--batches', '1', '2',
              '--repeat', '2', '--warmup', '1', '--threads', '1',
              '--channels-last')
    assert '1 threads' in out and 'channels_last True' in out
    rows = [line for line in out.splitlines()
            if line.startswith(('EMO-1M', 'EdgeNeXt-xxsmall'))]
    assert len(rows) == 4  # two batch sizes x the pair
    assert '2x3x64x64' in rows[2]
    assert rows[1].rstrip().endswith('x')  # EMO/EdgeNeXt ratio


def test_train_table_reports_peak_memory():
    out = run('--pairs', '1m', '--sizes', '64', '--batches', '2', '--train',
              '--repeat', '2', '--warmup', '1', '--threads', '1')
    assert 'peak MB' in out
    emo_row = [line for line in out.splitlines()
               if line.startswith('EMO-1M')][0]
    assert float(emo_row.split()[-1]) > 100  # a process holds > 100 MB


def test_deploy_flag():
    out = run('--pairs', '1m', '--sizes', '64', '--batches', '1',
              '--repeat', '2', '--warmup', '1', '--threads', '1', '--deploy')
    assert 'deploy True' in out
    assert len([line for line in out.splitlines()
                if line.startswith(('EMO-1M', 'EdgeNeXt'))]) == 2
    proc = subprocess.run([sys.executable, TOOL, '--deploy', '--train'],
                          cwd=REPO, text=True, capture_output=True)
    assert proc.returncode == 2
    assert 'cannot be combined with --train' in proc.stderr


def test_onnxruntime_rows():
    out = run('--pairs', '1m', '--sizes', '64', '--batches', '2',
              '--repeat', '2', '--warmup', '1', '--threads', '1',
              '--onnxruntime')
    rows = [line for line in out.splitlines() if '[ORT]' in line]
    assert [row.split()[0] for row in rows] == ['EMO-1M', 'EdgeNeXt-xxsmall']
    assert rows[1].rstrip().endswith('x')  # EMO ORT / EdgeNeXt ORT
    proc = subprocess.run([sys.executable, TOOL, '--onnxruntime', '--train'],
                          cwd=REPO, text=True, capture_output=True)
    assert proc.returncode == 2 and 'CPU only' in proc.stderr


def test_config_and_dtype():
    out = run('--config', 'configs/ssdlite/emo_1m_coco.py', '--batches', '2',
              '--repeat', '2', '--warmup', '1', '--threads', '1')
    assert 'configs/ssdlite/emo_1m_coco.py: input from' in out
    assert re.search(r'2x3x320x320: [\d.]+ ms', out), out
    out = run('--pairs', '1m', '--sizes', '64', '--batches', '1', '--repeat',
              '2', '--warmup', '1', '--threads', '1', '--dtype', 'bf16')
    assert 'bf16' in out.splitlines()[0] or 'bf16' in out
    assert len([line for line in out.splitlines()
                if line.startswith(('EMO-1M', 'EdgeNeXt'))]) == 2


def test_deploy_times_the_folded_model():
    """Settings(deploy=True) hands the timing loop a model without
    BatchNorms whose outputs are the unfolded model's."""
    torch.manual_seed(0)
    model = EMO(arch='1m', out_indices=(0, 1, 2, 3, 4)).eval()
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        expected = model(x)
    timed = prepare(model, Settings(deploy=True, threads=1))
    assert not any(isinstance(m, _BatchNorm) for m in timed.modules())
    with torch.no_grad():
        got = timed(x)
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
