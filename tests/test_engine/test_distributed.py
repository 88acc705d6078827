"""DDP on CPUs (gloo, torchrun): SyncBN across processes, the 2-process run
equal to the 1-process run with the same global batch, SyncBN reverted to BN
on one process, clear errors for launchers that need GPUs."""
import os
import os.path as osp
import re
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from conftest import REPO_ROOT, free_port, run_python, run_tool, run_torchrun

from emo_mm.engine import GlooSyncBatchNorm

DEMO = osp.join(REPO_ROOT, 'configs', 'demo', 'emo_1m_shapes_cls.py')
# The classification demo made deterministic: SyncBN, a fixed resize
# instead of random crops (random transforms would draw different numbers
# in two processes than in one), SGD, no schedule, two short epochs, and the
# loss of every iteration averaged over processes (tests/loss_recorder.py).
EQUIVALENCE_CONFIG = '''
_base_ = {demo!r}
custom_imports = dict(imports=['emo_mm', 'loss_recorder'],
                      allow_failed_imports=False)
data_root = {data_root!r}
model = dict(backbone=dict(norm_cfg=dict(type='SyncBN')))
_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(48, 48), backend='pillow'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
param_scheduler = []
train_cfg = dict(max_epochs=2, val_interval=100)
randomness = dict(seed=0, deterministic=True)
custom_hooks = [
    dict(type='AuthorsCheckpointHook'),
    dict(type='EMAHook', momentum=0.02, evaluate_on_ema=True,
         evaluate_on_origin=True, priority='ABOVE_NORMAL'),
    dict(type='LossRecorderHook', path='unset'),
    dict(type='RandomStateHook'),
]
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
'''


def _sync_bn_worker(rank, world, port, x, queue):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.manual_seed(0)
    bn = GlooSyncBatchNorm.convert(nn.SyncBatchNorm(4, eps=1e-6)).train()
    part = x.chunk(world)[rank].clone().requires_grad_()
    y = bn(part)
    weights = torch.arange(y.numel(), dtype=y.dtype).view_as(y).sin()
    (y * weights[0:1]).sum().backward()
    # As NumPy arrays, sent by value: torch would pass shared-memory file
    # descriptors that vanish with this process if it exits first.
    queue.put((rank, *(t.detach().numpy()
                       for t in (y, part.grad, bn.weight.grad, bn.bias.grad,
                                 bn.running_mean, bn.running_var))))
    dist.barrier()
    dist.destroy_process_group()


def test_gloo_sync_bn_equals_batch_norm_over_all_processes():
    """Two processes holding halves of a batch get what one BN computes on
    the whole batch: outputs, input gradients, parameter gradients (summed
    over processes, as DDP's average of the processes' losses scales them),
    running statistics."""
    torch.manual_seed(0)
    x = torch.randn(6, 4, 5, 3) * 3 + 1
    context = mp.get_context('spawn')
    queue = context.Queue()
    port = free_port()
    procs = [
        context.Process(
            target=_sync_bn_worker, args=(rank, 2, port, x, queue))
        for rank in range(2)
    ]
    for p in procs:
        p.start()
    # Bounded waits: a worker that dies or hangs fails the test, not CI.
    results = sorted((queue.get(timeout=120) for _ in procs),
                     key=lambda result: result[0])
    results = [[rank, *map(torch.from_numpy, arrays)]
               for rank, *arrays in results]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0

    bn = nn.BatchNorm2d(4, eps=1e-6).train()
    full = x.clone().requires_grad_()
    y = bn(full)
    weights = torch.arange(y[:3].numel(), dtype=y.dtype).view_as(y[:3]).sin()
    (y * weights[0:1]).sum().backward()
    torch.testing.assert_close(torch.cat([r[1] for r in results]), y.detach())
    torch.testing.assert_close(torch.cat([r[2] for r in results]), full.grad)
    torch.testing.assert_close(results[0][3] + results[1][3], bn.weight.grad)
    torch.testing.assert_close(results[0][4] + results[1][4], bn.bias.grad)
    for rank in range(2):
        torch.testing.assert_close(results[rank][5], bn.running_mean)
        torch.testing.assert_close(results[rank][6], bn.running_var)


def _read_losses(path):
    with open(path) as f:
        return [float(line) for line in f]


def test_two_processes_equal_one_with_the_same_global_batch(
        tiny_shapes, tmp_path):
    """tools/dist_train.sh (torchrun, gloo) with 2 x batch 4 against
    tools/train.py with 1 x batch 8: same loss at every iteration, same
    weights at the end; the single process reverts SyncBN to BN. Costs
    40-60 s (two torchrun launches of two processes each): DDP needs
    real processes. EMO only: the path does not depend on the backbone;
    that every parameter of EMO and EMOv2 gets a gradient, which DDP
    needs, is in the backbone tests."""
    config = tmp_path / 'equivalence.py'
    config.write_text(
        EQUIVALENCE_CONFIG.format(demo=DEMO, data_root=tiny_shapes))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([
            osp.join(REPO_ROOT, 'tests'), REPO_ROOT,
            os.environ.get('PYTHONPATH', '')
        ]),
        PORT=str(free_port()),
        PYTHON=sys.executable,
        OMP_NUM_THREADS='1',
        CUDA_VISIBLE_DEVICES='')  # the CPU (gloo) path on any machine

    single = run_python(
        'tools/train.py',
        str(config),
        '--work-dir',
        str(tmp_path / 'one'),
        '--cfg-options',
        f'custom_hooks.2.path={tmp_path / "one.txt"}',
        env=env)
    assert 'SyncBatchNorm (SyncBN) layers in the model will be ' \
        'automatically reverted' in single.stdout

    double = run_torchrun([
        'bash', 'tools/dist_train.sh',
        str(config), '2', '--work-dir',
        str(tmp_path / 'two'), '--cfg-options',
        f'custom_hooks.2.path={tmp_path / "two.txt"}',
        'train_dataloader.batch_size=4'
    ], env)
    assert "type='CPUDistributedDataParallel'" in double.stdout
    assert 'Epoch(train) [2][6/6]' in double.stdout  # 24 images per rank

    # tools/dist_test.sh: two processes score the checkpoint as one does.
    ckpt = str(tmp_path / 'two' / 'epoch_2.pth')
    alone = run_python(
        'tools/test.py',
        str(config),
        ckpt,
        '--work-dir',
        str(tmp_path / 'test_one'),
        env=env).stdout
    shared = run_torchrun([
        'bash', 'tools/dist_test.sh',
        str(config), ckpt, '2', '--work-dir',
        str(tmp_path / 'test_two')
    ], env).stdout
    scores = [
        re.findall(r'accuracy/top1(?:_origin)?: ([\d.]+)', out)
        for out in (alone, shared)
    ]
    assert len(scores[0]) == 2 and scores[0] == scores[1], scores
    assert "type='CPUDistributedDataParallel'" in shared

    one, two = (_read_losses(tmp_path / f'{n}.txt') for n in ('one', 'two'))
    assert len(one) == len(two) == 12
    torch.testing.assert_close(
        torch.tensor(two), torch.tensor(one), rtol=1e-5, atol=0)
    a = torch.load(tmp_path / 'one' / 'epoch_2.pth', weights_only=True)
    b = torch.load(tmp_path / 'two' / 'epoch_2.pth', weights_only=True)
    # RandomStateHook gathered every process's generators (rank 0 saves).
    assert len(a['rng_states']) == 1 and len(b['rng_states']) == 2
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        # The stem conv's bias (BN right after it cancels it) stays ~0.
        torch.testing.assert_close(
            b['state_dict'][key], value, rtol=1e-3, atol=1e-5, msg=key)


@pytest.mark.parametrize('launcher,message', [
    ('slurm', '--launcher slurm needs GPUs'),
    ('pytorch', "needs ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT']"),
])
def test_cpu_launcher_errors(launcher, message, tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip('the CPU launch path is only taken without GPUs')
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    # In this process: both are refused before a process group starts
    # (checked below); run_tool puts back the LOCAL_RANK the tool sets.
    status, out = run_tool('train.py', DEMO, '--launcher', launcher,
                           '--work-dir', tmp_path)
    assert status != 0
    assert message in out and 'Traceback' not in out
    assert not dist.is_initialized()
