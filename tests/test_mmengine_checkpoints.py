"""Checkpoints that mmengine saves load on torch >= 2.6 with weights_only on."""
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import emo_mm  # noqa: F401  (allows mmengine's checkpoint types)
from emo_mm.models import EMO


class ToyClassifier(BaseModel):

    def __init__(self):
        super().__init__()
        self.backbone = EMO(arch='1m', out_indices=(4, ))
        self.fc = nn.Linear(168, 2)

    def forward(self, inputs, labels, mode='tensor'):
        feats = self.backbone(torch.stack(inputs))[0].mean((2, 3))
        logits = self.fc(feats)
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, torch.stack(labels)))
        return logits


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(3, 48, 48, generator=g),
                    labels=torch.tensor(i % 2))


def make_runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=ToyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0,
            collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1,
                            by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        default_scope=None,
        experiment_name=f'toy_{Path(work_dir).name}',
        **kwargs)


def test_resume_and_load_from_mmengine_checkpoint(tmp_path):
    torch.manual_seed(0)  # the model is built before the Runner seeds
    runner = make_runner(tmp_path / 'first', max_iters=2,
                         randomness=dict(seed=0))
    runner.train()
    ckpt = tmp_path / 'first' / 'iter_2.pth'
    assert ckpt.exists()

    # torch.load's default, weights_only=True, reads it now.
    loaded = torch.load(ckpt)
    assert loaded['meta']['iter'] == 2
    assert 'message_hub' in loaded and 'optimizer' in loaded

    resumed = make_runner(tmp_path / 'resumed', max_iters=3, resume=True,
                          load_from=str(ckpt))
    resumed.train()
    assert resumed.iter == 3
    # Resumed, not restarted: its iteration 3 continues iterations 1-2
    # exactly as one uninterrupted run of 3 (same seed, same data order).
    torch.manual_seed(0)
    straight = make_runner(tmp_path / 'straight', max_iters=3,
                           randomness=dict(seed=0))
    straight.train()
    a = torch.load(tmp_path / 'resumed' / 'iter_3.pth')
    b = torch.load(tmp_path / 'straight' / 'iter_3.pth')
    assert a['optimizer']['state'][0]['step'].item() == 3
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in b['state_dict'].items():
        assert torch.equal(a['state_dict'][key], value), key
        assert not torch.equal(loaded['state_dict'][key], value), key

    fresh = make_runner(tmp_path / 'test', max_iters=1)
    fresh.load_checkpoint(str(ckpt))
    expected = loaded['state_dict']
    for key, value in fresh.model.state_dict().items():
        torch.testing.assert_close(value, expected[key])
