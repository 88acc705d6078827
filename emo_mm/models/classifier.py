"""Classification add-ons: an mmpretrain ``ImageClassifier`` and a runner
hook that read the authors' checkpoint layout."""
from collections import OrderedDict

from mmengine.hooks import Hook
from mmengine.registry import HOOKS, MODELS
from mmpretrain.models.classifiers import ImageClassifier

from .checkpoint import (authors_to_classifier, extract_state_dict,
                         is_authors_layout)


def _accept_authors_layout(state_dict, prefix, *args):
    """``load_state_dict`` pre-hook: rename an authors' checkpoint in place.

    Their ``net.pth`` is a flat classifier (``stage0.*`` ... ``norm.*``,
    ``head.*``); mmengine checkpoints (``backbone.*``, ``head.fc.*``) pass
    through untouched.
    """
    keys = [k for k in state_dict if k.startswith(prefix)]
    if not any(k[len(prefix):].startswith('stage0.') for k in keys):
        return
    local = OrderedDict((k[len(prefix):], state_dict.pop(k)) for k in keys)
    for key, value in authors_to_classifier(local).items():
        state_dict[prefix + key] = value


@MODELS.register_module()
class EMOImageClassifier(ImageClassifier):
    """``ImageClassifier`` that loads the authors' EMO checkpoints as well.

    Same arguments, modules and state dict as mmpretrain's
    ``ImageClassifier``; the only addition is that ``load_state_dict`` (and
    so ``load_from``, ``tools/test.py CONFIG net.pth`` and mmpretrain's
    ``get_model``/inferencers) accepts the authors' ``net.pth`` key layout,
    mapping it with :func:`~emo_mm.models.checkpoint.authors_to_classifier`.
    Registered in MMEngine's root registry, so it builds in every scope.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._register_load_state_dict_pre_hook(_accept_authors_layout)


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
