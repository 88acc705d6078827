"""A training run killed mid-epoch (SIGKILL) and resumed ends with the same
weights as one never interrupted, and loses nothing it had written."""
import hashlib
import os
import os.path as osp
import signal
import subprocess
import sys
import threading

import torch

from conftest import REPO_ROOT, run_python

DEMO = osp.join(REPO_ROOT, 'configs', 'demo', 'emo_1m_shapes_cls.py')
# The classification demo, random augmentation and drop path kept (so the
# generators' states matter), data loaded in the main process (worker
# processes keep generators of their own), three epochs of 6 iterations.
CONFIG = '''
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


def _train(config, work_dir, *extra):
    return run_python('tools/train.py', config, '--work-dir', work_dir,
                      *extra).stdout


def _kill_during_epoch_2(config, work_dir):
    proc = subprocess.Popen(
        [sys.executable, 'tools/train.py', config, '--work-dir', work_dir],
        cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    # A run that hangs before the line we wait for is killed after 10 min.
    watchdog = threading.Timer(600, proc.kill)
    watchdog.start()
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if 'Epoch(train) [2][2/6]' in line:
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


def test_sigkill_and_resume_repeat_the_uninterrupted_run(
        tiny_shapes, tmp_path):
    config = tmp_path / 'resume.py'
    config.write_text(CONFIG.format(demo=DEMO, data_root=tiny_shapes))
    config = str(config)
    straight, broken = str(tmp_path / 'straight'), str(tmp_path / 'broken')
    _train(config, straight)

    _kill_during_epoch_2(config, broken)
    assert osp.isfile(osp.join(broken, 'epoch_1.pth'))
    assert not osp.exists(osp.join(broken, 'epoch_2.pth'))  # mid-epoch
    before = _digests(broken)
    # ``last_checkpoint`` names the newest checkpoint and moves on by design.
    before.pop('last_checkpoint')
    assert any(name.endswith('.log') for name in before)

    log = _train(config, broken, '--resume')
    assert 'resumed epoch: 1, iter: 6' in log
    assert "restored the random generators' states" in log
    after = _digests(broken)
    for name, digest in before.items():
        assert after.get(name) == digest, f'{name} was changed or removed'

    a = torch.load(osp.join(straight, 'epoch_3.pth'), weights_only=True)
    b = torch.load(osp.join(broken, 'epoch_3.pth'), weights_only=True)
    for part in ('state_dict', 'ema_state_dict'):
        assert a[part].keys() == b[part].keys()
        for key, value in a[part].items():
            assert torch.equal(b[part][key], value), f'{part} {key}'
    assert a['meta']['iter'] == b['meta']['iter'] == 18
