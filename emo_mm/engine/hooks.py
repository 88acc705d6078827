"""Hooks that make resumed training runs repeat uninterrupted ones."""
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def _get_states() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return dict(
        python=random.getstate(),
        # Plain types and tensors only, so weights_only loading accepts it.
        numpy=(kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
               int(has_gauss), float(gauss)),
        torch=torch.get_rng_state(),
        cuda=(torch.cuda.get_rng_state_all()
              if torch.cuda.is_available() else []))


def _set_states(states: dict) -> None:
    random.setstate(states['python'])
    kind, keys, pos, has_gauss, gauss = states['numpy']
    np.random.set_state(
        (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states['torch'])
    if states['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Keep the random generators' states in checkpoints, for exact resume.

    mmengine's resume restores the weights, optimizer, schedulers and seed,
    but not the generators: a resumed run draws other random numbers (data
    augmentation in the main process, drop path, dropout) than the run it
    continues. This hook stores the Python, NumPy, torch and CUDA generator
    states of every process in each checkpoint (``checkpoint['rng_states']``,
    one entry per rank) and puts them back when training resumes from it,
    after everything else has loaded. ``load_from`` (fine-tuning) leaves the
    generators alone.

    Dataloader workers keep their own generators: for an exact repeat use
    ``num_workers=0``, or ``persistent_workers=False`` (mmengine then seeds
    each epoch's workers from the seed alone).
    """

    priority = 'VERY_LOW'  # restore after every other hook's before_train

    def __init__(self):
        self._pending = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Every rank runs save_checkpoint (only rank 0 writes the file), so
        # the gather is a proper collective.
        checkpoint['rng_states'] = all_gather_object(_get_states())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('rng_states')
        if not getattr(runner, '_resume', False) or not states:
            return
        if len(states) != get_world_size():
            runner.logger.warning(
                f'checkpoint holds random states of {len(states)} processes, '
                f'this run has {get_world_size()}: not restoring them')
            return
        self._pending = states[get_rank()]

    def before_train(self, runner) -> None:
        if self._pending is not None:
            _set_states(self._pending)
            self._pending = None
            runner.logger.info('restored the random generators\' states '
                               'from the resumed checkpoint')
