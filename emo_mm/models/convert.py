"""Converting EMO and EMOv2 checkpoints between the authors' layouts and
OpenMMLab's: ``tools/convert_authors_checkpoint.py``.

``classifier``: the authors' ``net.pth`` as an mmpretrain checkpoint of
``configs/imagenet/emo_*_in1k.py`` (``backbone.*`` with the final norm,
``head.fc.*``, ``meta`` with the ImageNet classes). ``backbone``: only the
backbone (``backbone.*``, no final norm, no head), for ``load_from`` or
``init_cfg`` in detection and segmentation configs. ``authors``: an emo_mm
classifier or backbone checkpoint back to the authors' flat keys. Tensors are
copied bit for bit, so a round trip is lossless.
"""
import os.path as osp
from collections import OrderedDict

import torch

from ..errors import UserError
from ..utils.safe_load import read_checkpoint
from ..version import __version__
from .backbones import FAMILIES
from .checkpoint import (authors_to_classifier, authors_to_ours,
                         classifier_to_authors, describe_variant,
                         extract_state_dict, find_arch, is_authors_layout,
                         ours_to_authors, variant_signature)

TARGETS = ('classifier', 'backbone', 'authors')


def _arch_of(backbone_state_dict, src, expected=None):
    """``(family, arch)``, e.g. ``('EMOv2', '5m')``, of an emo_mm-layout
    backbone state dict; ``expected`` is an arch name to insist on."""
    signature = variant_signature(backbone_state_dict)
    name = find_arch(signature)
    if name is None:
        raise UserError(f'{src} holds no known {signature[0]} variant: '
                        f'{describe_variant(signature)}')
    if expected and expected != name:
        raise UserError(f'{src} holds {describe_variant(signature)} '
                        f'weights, but arch={expected!r}')
    return signature[0], name


def _check_keys(state_dict, expected_keys, src, what):
    """Raise if ``state_dict`` lacks or adds keys against ``expected_keys``."""
    missing = [k for k in expected_keys if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected_keys]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f'missing {len(missing)} keys of {what} '
                         f'({", ".join(missing[:5])}'
                         f'{", ..." if len(missing) > 5 else ""})')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected keys '
                         f'({", ".join(unexpected[:5])}'
                         f'{", ..." if len(unexpected) > 5 else ""})')
        raise UserError(f'{src}: ' + '; '.join(parts))


def _model_keys(variant, final_norm):
    """State dict keys of an emo_mm backbone (buffers included) of
    ``variant``, a ``(family, arch)`` pair."""
    family, arch = variant
    return list(FAMILIES[family](arch=arch,
                                 final_norm=final_norm).state_dict())


def _name(variant):
    return f'{variant[0]}-{variant[1].upper()}'


def convert_state_dict(src_state, src: str, to: str, arch=None):
    """Convert a state dict to ``to`` (one of :data:`TARGETS`); ``src``
    names it in errors, ``arch`` is the expected variant.

    Returns:
        tuple: ``(state_dict, (family, arch), description)``.

    Raises:
        UserError: The weights are of another or no known variant, keys are
            missing or left over, or the layout cannot go to ``to``.
    """
    if is_authors_layout(src_state):
        if to == 'authors':
            raise UserError(f'{src} is already in the authors\' layout')
        ours = authors_to_ours(src_state)
        variant = _arch_of(ours, src, arch)
        backbone_keys = _model_keys(variant, final_norm=True)
        head_keys = [k for k in ours if k.startswith('head.')]
        _check_keys(ours, backbone_keys + ['head.weight', 'head.bias'], src,
                    f'the authors\' {_name(variant)} classifier')
        if to == 'classifier':
            return (authors_to_classifier(src_state), variant,
                    'mmpretrain classifier')
        plain = set(_model_keys(variant, final_norm=False))
        out = OrderedDict(('backbone.' + k, v) for k, v in ours.items()
                          if k in plain and k not in head_keys)
        return out, variant, 'backbone'

    if to != 'authors':
        raise UserError(
            f'{src} is not in the authors\' layout (no stage0.* keys); '
            f'to={to!r} converts the authors\' net.pth')
    backbone = OrderedDict((k[len('backbone.'):], v)
                           for k, v in src_state.items()
                           if k.startswith('backbone.'))
    if not backbone:
        raise UserError(f'{src} holds no backbone.* keys: not an '
                        'emo_mm classifier, detector or segmentor')
    variant = _arch_of(backbone, src, arch)
    if any(k.startswith('head.fc.') for k in src_state):
        _check_keys(src_state,
                    ['backbone.' + k for k in _model_keys(variant, True)] +
                    ['head.fc.weight', 'head.fc.bias'], src,
                    f'an {_name(variant)} classifier')
        return (classifier_to_authors(src_state), variant,
                'authors\' classifier')
    _check_keys(backbone, _model_keys(variant, final_norm=False), src,
                f'an {_name(variant)} backbone')
    return ours_to_authors(backbone), variant, 'authors\' backbone (no head)'


def convert_checkpoint(src: str,
                       dst: str,
                       to: str,
                       arch=None,
                       force: bool = False):
    """Read ``src`` (either layout, wrapped under ``state_dict``/``model``/
    ``net`` or not), convert it to ``to`` and save it as ``dst``.

    Returns:
        tuple: ``(variant, description, number of tensors)``, the variant
        as ``'EMOv2-5M'``.

    Raises:
        UserError: ``dst`` exists and ``force`` is not set, ``src`` is
            missing or unreadable, or :func:`convert_state_dict` refuses it;
            nothing is written then.
    """
    if osp.exists(dst) and not force:
        raise UserError(f'{dst} exists; refusing to overwrite it (use '
                        'force=True or another name)')
    try:
        src_state = extract_state_dict(read_checkpoint(src))
    except FileNotFoundError as err:
        raise UserError(str(err)) from err
    state_dict, variant, what = convert_state_dict(src_state, src, to, arch)
    if to == 'authors':
        checkpoint = state_dict  # their loader takes a flat state dict
    else:
        meta = dict(
            converted_from=src,
            converted_by=f'emo_mm {__version__}',
            family=variant[0],
            arch=variant[1])
        if to == 'classifier':
            from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
            meta['dataset_meta'] = dict(classes=IMAGENET_CATEGORIES)
        checkpoint = dict(state_dict=state_dict, meta=meta)
    torch.save(checkpoint, dst)
    return _name(variant), what, len(state_dict)
