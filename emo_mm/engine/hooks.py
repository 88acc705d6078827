"""Runner hooks: exact resume (:class:`RandomStateHook`), loading the
authors' flat checkpoints like mmengine's (:class:`AuthorsCheckpointHook`)
and testing with the BatchNorms folded (:class:`DeployHook`).
"""
import copy
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from ..models import deploy
from ..models.checkpoint import (authors_to_classifier, extract_state_dict,
                                 is_authors_layout)


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
    states of every process in each checkpoint that the ``CheckpointHook``
    writes (``checkpoint['rng_states']``, one entry per rank) and puts them
    back when training resumes from it, after everything else has loaded
    (in an iteration-based loop, after mmengine has skipped the batches
    already trained by drawing them again). ``load_from`` (fine-tuning)
    leaves the generators alone.

    Only rank 0 writes checkpoints, so with several processes the states are
    gathered (one small all-gather) in the same ``after_train_iter`` /
    ``after_train_epoch`` in which the ``CheckpointHook`` (priority
    VERY_LOW, after this hook) will save. Checkpoints written elsewhere (the
    best-score ones saved after validation) carry no states.

    Dataloader workers keep their own generators: for an exact repeat use
    ``num_workers=0``, or ``persistent_workers=False`` (mmengine then seeds
    each epoch's workers from the seed alone).
    """

    priority = 'LOW'  # before the CheckpointHook (VERY_LOW) saves

    def __init__(self):
        self._gathered = None  # (iteration, states of every rank)
        self._pending = None

    # ---------------------------------------------------------------- save
    @staticmethod
    def _checkpoint_hook(runner):
        return next((h for h in runner.hooks if isinstance(h, CheckpointHook)),
                    None)

    def _gather_if_saving(self, runner, by_epoch: bool) -> None:
        hook = self._checkpoint_hook(runner)
        if hook is None or hook.by_epoch != by_epoch:
            return
        if by_epoch:
            saving = hook.every_n_epochs(
                runner, hook.interval,
                hook.save_begin) or (hook.save_last
                                     and hook.is_last_train_epoch(runner))
        else:
            saving = hook.every_n_train_iters(
                runner, hook.interval,
                hook.save_begin) or (hook.save_last
                                     and hook.is_last_train_iter(runner))
        if saving:
            # A collective: every rank reaches this line at the same step.
            self._gathered = (runner.iter, all_gather_object(_get_states()))

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        self._gather_if_saving(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        self._gather_if_saving(runner, by_epoch=True)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Runs on rank 0 only (mmengine's save_checkpoint is master_only).
        if self._gathered is not None and self._gathered[0] == runner.iter:
            checkpoint['rng_states'] = self._gathered[1]
        elif get_world_size() == 1:
            checkpoint['rng_states'] = [_get_states()]

    # -------------------------------------------------------------- resume
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('rng_states')
        if not getattr(runner, '_resume', False):
            return
        if not states:
            runner.logger.warning('the resumed checkpoint holds no random '
                                  'generator states; the run continues with '
                                  'fresh ones')
            return
        if len(states) != get_world_size():
            runner.logger.warning(
                f'checkpoint holds random states of {len(states)} processes, '
                f'this run has {get_world_size()}: not restoring them')
            return
        self._pending = states[get_rank()]

    def before_train(self, runner) -> None:
        if self._pending is None:
            return
        states, self._pending = self._pending, None
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            # After this hook, mmengine's loop skips the batches already
            # trained by drawing them again, which uses up the generators
            # (random transforms): restore them before the first new batch.
            loop.dataloader_iterator = _RestoreBeforeBatch(
                loop.dataloader_iterator, loop.iter, states, runner.logger)
        else:
            _restore(states, runner.logger)


def _restore(states: dict, logger) -> None:
    _set_states(states)
    logger.info('restored the random generators\' states from the resumed '
                'checkpoint')


class _RestoreBeforeBatch:
    """``iterator``, restoring the generators' ``states`` before it yields
    its batch number ``skip`` (counted from 0)."""

    def __init__(self, iterator, skip: int, states: dict, logger):
        self._iterator = iterator
        self._skip = skip
        self._states = states
        self._logger = logger

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip == 0 and self._states is not None:
            _restore(self._states, self._logger)
            self._states = None
        self._skip -= 1
        return next(self._iterator)


@HOOKS.register_module()
class AuthorsCheckpointHook(Hook):
    """Let the runner load the authors' flat ``net.pth`` like its own files.

    ``load_from``/``tools/test.py CONFIG net.pth`` hand the loaded
    checkpoint to every hook's ``after_load_checkpoint`` before the model
    gets it, and mmpretrain's ``EMAHook`` reads ``checkpoint['state_dict']``
    there, which a flat authors' file lacks. This hook runs first and wraps
    such a file, renamed to the classifier's keys, as ``state_dict``.
    mmengine checkpoints are left as they are.
    """

    priority = 'VERY_HIGH'  # before EMAHook (NORMAL / ABOVE_NORMAL)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state_dict = extract_state_dict(checkpoint)
        if not is_authors_layout(state_dict):
            return
        checkpoint.clear()
        checkpoint['state_dict'] = authors_to_classifier(state_dict)


@HOOKS.register_module()
class DeployHook(Hook):
    """Test a copy of the model with its BatchNorms (and EMOv2's
    LayerScales) folded: ``tools/test.py`` adds it unless ``--no-deploy``.
    Same outputs up to float rounding, less time (docs/speed.md).

    Two of them work as a pair (:func:`~emo_mm.engine.runner.enable_deploy`):
    the folding one runs last at the start of the test epoch, after every
    other hook has set the weights (the loaded checkpoint; mmpretrain's
    ``EMAHook`` swaps its averages in there); the ``restore`` one runs
    first at its end and puts the model as built back, before ``EMAHook``
    swaps the weights back or tests the raw weights again.
    """

    def __init__(self, restore: bool = False):
        self.restore = restore
        # While testing: (holder, attribute name, the model as built).
        self.unfolded = None

    def before_test_epoch(self, runner) -> None:
        if self.restore:
            return
        # A wrapper (DDP) keeps its parameters' process group: fold inside.
        holder, name = ((runner.model,
                         'module') if is_model_wrapper(runner.model) else
                        (runner, 'model'))
        original = getattr(holder, name)
        folded = copy.deepcopy(original)
        count = deploy(folded)
        setattr(holder, name, folded)
        self.unfolded = (holder, name, original)
        runner.logger.info(f'folded the BatchNorms of {count} modules '
                           '(switch_to_deploy) for the test')

    def after_test_epoch(self, runner, metrics=None) -> None:
        if not self.restore:
            return
        # The folding hook of this runner holds the model as built.
        for hook in runner.hooks:
            if isinstance(hook, DeployHook) and hook.unfolded is not None:
                holder, name, original = hook.unfolded
                setattr(holder, name, original)
                hook.unfolded = None
