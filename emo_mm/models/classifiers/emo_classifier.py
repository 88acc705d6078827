"""An mmpretrain ``ImageClassifier`` that reads the authors' checkpoint
layout too. (Its runner-side companion, ``AuthorsCheckpointHook``, is in
:mod:`emo_mm.engine.hooks`.)"""
from collections import OrderedDict

from mmpretrain.models.classifiers import ImageClassifier

from ..checkpoint import authors_to_classifier


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


class EMOImageClassifier(ImageClassifier):
    """``ImageClassifier`` that loads the authors' EMO and EMOv2 checkpoints
    as well.

    Same arguments, modules and state dict as mmpretrain's
    ``ImageClassifier``; the only addition is that ``load_state_dict`` (and
    so ``load_from``, ``tools/test.py CONFIG net.pth`` and mmpretrain's
    ``get_model``/inferencers) accepts the authors' ``net.pth`` key layout,
    mapping it with :func:`~emo_mm.models.checkpoint.authors_to_classifier`.
    Registered in MMEngine's root registry (through
    :mod:`emo_mm.utils.lazy`), so it
    builds in every scope.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._register_load_state_dict_pre_hook(_accept_authors_layout)
