"""A training run killed mid-epoch (SIGKILL) and resumed ends with the same
weights as one never interrupted, and loses nothing it had written: the
epoch-based classification demo and the iteration-based detection demo."""
import hashlib
import os
import os.path as osp
import signal
import subprocess
import sys
import threading

import pytest
import torch
from conftest import REPO_ROOT, run_python

DEMOS = osp.join(REPO_ROOT, 'configs', 'demo')
# The classification demo, random augmentation and drop path kept (so the
# generators' states matter), data loaded in the main process (worker
# processes keep generators of their own), three epochs of 6 iterations.
CLS_CONFIG = '''
_base_ = {demo!r}
data_root = {data_root!r}
model = dict(backbone=dict(drop_path_rate=0.1))
train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
max_epochs = 3
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False, T_max=18)]
train_cfg = dict(max_epochs=3, val_interval=100)
randomness = dict(seed=0, deterministic=True)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=-1),
                     logger=dict(interval=1))
'''
# The detection demo (iteration-based, its random flip kept, data in the
# main process as it ships) at batch 2: 4 iterations, a checkpoint every 2,
# no validation (its COCO evaluation is not what is tested).
DET_CONFIG = '''
_base_ = {demo!r}
data_root = {data_root!r}
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
test_dataloader = dict(num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_evaluator = dict(ann_file=data_root + 'annotations/val.json')
train_cfg = dict(max_iters=4, val_interval=100)
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False, T_max=4)]
randomness = dict(seed=0, deterministic=True)
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=-1),
                     logger=dict(interval=1))
'''
# Per task: the killed run stops after the log line ``kill_at``, when
# checkpoint ``saved`` is written and ``unsaved`` not yet; the resumed run
# says ``resumed``; both runs end with checkpoint ``last`` after ``iters``
# iterations, whose parts ``compared`` must be equal.
TASKS = {
    'cls':
    dict(
        demo='emo_1m_shapes_cls.py',
        config=CLS_CONFIG,
        data='tiny_shapes',
        kill_at='Epoch(train) [2][2/6]',
        saved='epoch_1.pth',
        unsaved='epoch_2.pth',
        resumed='resumed epoch: 1, iter: 6',
        last='epoch_3.pth',
        iters=18,
        compared=('state_dict', 'ema_state_dict')),
    'det':
    dict(
        demo='ssdlite_emo_1m_shapes.py',
        config=DET_CONFIG,
        data='tiny_coco',
        kill_at='Iter(train) [3/4]',
        saved='iter_2.pth',
        unsaved='iter_4.pth',
        resumed='resumed epoch: 0, iter: 2',
        last='iter_4.pth',
        iters=4,
        compared=('state_dict', 'optimizer')),
}


def _train(config, work_dir, *extra):
    return run_python('tools/train.py', config, '--work-dir', work_dir,
                      *extra).stdout


def _kill_after(line_start, config, work_dir):
    proc = subprocess.Popen(
        [sys.executable, 'tools/train.py', config, '--work-dir', work_dir],
        cwd=REPO_ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED='1'))
    # A run that hangs before the line we wait for is killed after 10 min.
    watchdog = threading.Timer(600, proc.kill)
    watchdog.start()
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line_start in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    watchdog.cancel()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, ''.join(seen[-30:])


def _digests(root):
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = osp.join(folder, name)
            with open(path, 'rb') as f:
                found[osp.relpath(path, root)] = hashlib.sha256(
                    f.read()).hexdigest()
    return found


@pytest.mark.parametrize('task', sorted(TASKS))
def test_sigkill_and_resume_repeat_the_uninterrupted_run(
        request, tmp_path, task):
    """Three training processes: straight, killed, resumed. Over 20 s: for
    the detection demo 45 s of CPU time (58 s on 2 busy cores), 13 s per
    process to import mmdet, build SSDLite and load the data before its 2-4
    iterations (the classification demo: 27 s). The detection run checks
    that the iteration-based loop, which skips the trained batches by
    drawing them again, still gets the checkpoint's random states."""
    spec = TASKS[task]
    config = tmp_path / 'resume.py'
    config.write_text(spec['config'].format(
        demo=osp.join(DEMOS, spec['demo']),
        data_root=request.getfixturevalue(spec['data'])))
    config = str(config)
    straight, broken = str(tmp_path / 'straight'), str(tmp_path / 'broken')
    _train(config, straight)

    _kill_after(spec['kill_at'], config, broken)
    assert osp.isfile(osp.join(broken, spec['saved']))
    assert not osp.exists(osp.join(broken, spec['unsaved']))
    before = _digests(broken)
    # ``last_checkpoint`` names the newest checkpoint and moves on by design.
    before.pop('last_checkpoint')
    assert any(name.endswith('.log') for name in before)

    log = _train(config, broken, '--resume')
    assert spec['resumed'] in log
    assert "restored the random generators' states" in log
    after = _digests(broken)
    for name, digest in before.items():
        assert after.get(name) == digest, f'{name} was changed or removed'

    a = torch.load(osp.join(straight, spec['last']), weights_only=True)
    b = torch.load(osp.join(broken, spec['last']), weights_only=True)
    for part in spec['compared']:
        assert_equal(a[part], b[part], part)
    assert a['meta']['iter'] == b['meta']['iter'] == spec['iters']


def assert_equal(a, b, path):
    """``a`` and ``b`` (state dicts, nested) equal, tensors bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_equal(a[key], b[key], f'{path} {key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal(x, y, f'{path} {i}')
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path
