"""Reading EMO checkpoints: the authors' key layout, ours, and the checks.

The authors' ImageNet checkpoints (``net.pth``) are flat state dicts whose keys
follow their module names (``stage0.0.convs.0.0.weight``,
``stage3.1.qk.conv.weight``, ...). :class:`~emo_mm.models.EMO` names its
modules after OpenMMLab conventions instead, so keys are mapped here, in both
directions, with a fixed list of renames.
"""
import logging
import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
from mmengine.logging import print_log

from ..errors import UserError
from ..utils.safe_load import read_checkpoint

StateDict = Dict[str, torch.Tensor]

# (authors' pattern, ours), applied in order to every key.
_AUTHORS_TO_OURS = [
    (r'^stage0\.0\.convs\.0\.0\.', 'stages.0.0.conv.'),
    (r'^stage0\.0\.convs\.0\.1\.', 'stages.0.0.bn.'),
    (r'^stage(\d)\.', r'stages.\1.'),
    (r'(^|\.)norm\.norm\.',
     r'\1norm.'),  # their LayerNorm2d wraps nn.LayerNorm
    (r'\.qk\.conv\.', '.attn.qk.'),
    (r'\.proj\.conv\.', '.proj.'),
    (r'\.conv_local\.norm\.', '.conv_local.bn.'),
]
_OURS_TO_AUTHORS = [
    (r'^stages\.0\.0\.conv\.', 'stage0.0.convs.0.0.'),
    (r'^stages\.0\.0\.bn\.', 'stage0.0.convs.0.1.'),
    (r'^stages\.(\d)\.', r'stage\1.'),
    (r'\.attn\.qk\.', '.qk.conv.'),
    (r'\.proj\.', '.proj.conv.'),
    (r'\.conv_local\.bn\.', '.conv_local.norm.'),
]
# Keys of the authors' classifier that are not part of the backbone.
_CLASSIFIER_PREFIXES = ('head.', 'norm.')


def _rename(key: str, rules) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def is_authors_layout(state_dict: StateDict) -> bool:
    return any(key.startswith('stage0.') for key in state_dict)


def authors_to_ours(state_dict: StateDict) -> StateDict:
    """Rename an authors' state dict (``net.pth``) to emo_mm's layout."""
    return OrderedDict(
        (_rename(k, _AUTHORS_TO_OURS), v) for k, v in state_dict.items())


def ours_to_authors(state_dict: StateDict) -> StateDict:
    """Rename an emo_mm backbone state dict (``norm.`` included) back."""
    out = OrderedDict()
    for key, value in state_dict.items():
        new_key = _rename(key, _OURS_TO_AUTHORS)
        # Their LayerNorm2d holds its nn.LayerNorm as ``.norm``: a norm with
        # no running statistics beside it is a LayerNorm.
        match = re.match(r'^(.*\.)?norm\.(weight|bias)$', key)
        if match and f'{match.group(1) or ""}norm.running_mean' not in \
                state_dict:
            new_key = new_key[:-len(match.group(2))] + 'norm.' + \
                match.group(2)
        out[new_key] = value
    return out


def extract_state_dict(checkpoint) -> StateDict:
    """The state dict inside a loaded checkpoint.

    Accepts a flat state dict or one wrapped under ``state_dict``, ``model``
    or ``net``, and drops DDP's ``module.`` prefixes.
    """
    for wrapper in ('state_dict', 'model', 'net'):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(wrapper),
                                                       dict):
            checkpoint = checkpoint[wrapper]
            break
    if not isinstance(checkpoint, dict):
        raise UserError('checkpoint holds no state dict (found '
                        f'{type(checkpoint).__name__})')
    return OrderedDict(
        (re.sub(r'^module\.', '', k), v) for k, v in checkpoint.items())


def variant_signature(state_dict: StateDict) -> Tuple:
    """(stem channels, depths, channels) of an emo_mm-layout state dict."""
    depths, channels = [], []
    for i in range(1, 5):
        blocks, width = set(), None
        for key, value in state_dict.items():
            match = re.match(rf'^stages\.{i}\.(\d+)\.(proj\.weight)?', key)
            if match:
                blocks.add(int(match.group(1)))
                if match.group(2) and width is None:
                    width = value.shape[0]
        depths.append(len(blocks))
        channels.append(width)
    stem = state_dict.get('stages.0.0.conv.weight')
    return (None if stem is None else stem.shape[0], tuple(depths),
            tuple(channels))


def find_arch(signature: Tuple, arch_settings: dict) -> Optional[str]:
    """The name in ``arch_settings`` (a backbone's presets) whose stem
    width, depths and widths are ``signature``, or None."""
    for name, arch in arch_settings.items():
        if signature == (arch['stem_channels'], tuple(arch['depths']),
                         tuple(arch['channels'])):
            return name
    return None


def describe_variant(signature: Tuple,
                     arch_settings: dict,
                     family: str = 'EMO') -> str:
    """``'EMO-5M'`` for a preset's signature, else its numbers."""
    name = find_arch(signature, arch_settings)
    if name is not None:
        return f'{family}-{name.upper()}'
    stem, depths, channels = signature
    return (f'an {family} of stem width {stem}, depths {list(depths)} and '
            f'widths {list(channels)}')


def load_backbone_checkpoint(backbone,
                             filename: str,
                             prefix: Optional[str] = None,
                             logger='current') -> None:
    """Load EMO weights into ``backbone`` from an authors' or our checkpoint.

    Args:
        backbone (EMO): The model to load into.
        filename (str): Local path or URL.
        prefix (str, optional): Keep only the keys under this prefix (e.g.
            ``'backbone.'``) and strip it. When None and the checkpoint is a
            whole detector/segmentor/classifier, ``'backbone.'`` is used.
            Defaults to None.
        logger: Where the report of skipped keys goes. Defaults to
            ``'current'``.

    Raises:
        UserError: The file cannot be read, holds no EMO weights, or holds
            another EMO variant than ``backbone``.
    """
    state_dict = extract_state_dict(read_checkpoint(filename))
    if prefix is None and any(k.startswith('backbone.') for k in state_dict):
        prefix = 'backbone.'
    if prefix:
        state_dict = OrderedDict((k[len(prefix):], v)
                                 for k, v in state_dict.items()
                                 if k.startswith(prefix))
    if is_authors_layout(state_dict):
        state_dict = authors_to_ours(state_dict)

    ours = backbone.state_dict()
    arch_settings = type(backbone).arch_settings
    model_name = describe_variant(variant_signature(ours), arch_settings)
    if not any(k in ours for k in state_dict):
        sample = list(state_dict)[:5]
        raise UserError(f'checkpoint {filename} holds no {model_name} '
                        f'weights (first keys: {sample})')
    found = variant_signature(state_dict)
    if found != variant_signature(ours):
        raise UserError(f'checkpoint {filename} holds '
                        f'{describe_variant(found, arch_settings)} weights, '
                        'but the model '
                        f'is {model_name}; choose the matching arch or '
                        'checkpoint')
    mismatched = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(ours[k].shape)}'
        for k, v in state_dict.items()
        if k in ours and v.shape != ours[k].shape
    ]
    if mismatched:
        raise UserError(f'checkpoint {filename} does not fit {model_name}: ' +
                        '; '.join(mismatched[:5]))

    if not getattr(backbone, 'final_norm', False):
        state_dict = OrderedDict((k, v) for k, v in state_dict.items()
                                 if not k.startswith(_CLASSIFIER_PREFIXES))
    else:
        state_dict = OrderedDict(
            (k, v) for k, v in state_dict.items() if not k.startswith('head.'))
    missing, unexpected = backbone.load_state_dict(state_dict, strict=False)
    print_log(f'loaded {model_name} backbone weights from {filename}',
              logger=logger)
    if missing:
        print_log(f'{model_name} keys missing in {filename}: {missing}',
                  logger=logger,
                  level=logging.WARNING)
    if unexpected:
        print_log(
            f'keys in {filename} that {model_name} does not have: '
            f'{unexpected}',
            logger=logger,
            level=logging.WARNING)


def authors_to_classifier(state_dict: StateDict) -> StateDict:
    """An authors' classifier state dict (``net.pth``: backbone, final
    ``norm``, linear ``head``) in mmpretrain ``ImageClassifier`` keys:
    ``backbone.*`` (final norm included) and ``head.fc.*``."""
    out = OrderedDict()
    for key, value in authors_to_ours(state_dict).items():
        if key.startswith('head.'):
            out['head.fc.' + key[len('head.'):]] = value
        else:
            out['backbone.' + key] = value
    return out


def classifier_to_authors(state_dict: StateDict) -> StateDict:
    """The inverse of :func:`authors_to_classifier`.

    Raises:
        UserError: A key is neither ``backbone.*`` nor ``head.fc.*``.
    """
    backbone, head = OrderedDict(), OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('backbone.'):
            backbone[key[len('backbone.'):]] = value
        elif key.startswith('head.fc.'):
            head['head.' + key[len('head.fc.'):]] = value
        else:
            raise UserError(f'{key!r} has no place in the authors\' EMO '
                            'classifier (expected backbone.* or head.fc.*)')
    out = ours_to_authors(backbone)
    out.update(head)
    return out
