"""Reading EMO and EMOv2 checkpoints: the authors' key layouts, ours, and
the checks.

The authors' ImageNet checkpoints are flat state dicts whose keys follow
their module names (EMO: ``stage0.0.convs.0.0.weight``,
``stage3.1.qk.conv.weight``; EMOv2: ``stage3.1.eops.0.qk.conv.weight``,
``stage3.1.ls.gamma``, ...). Our backbones name their modules after
OpenMMLab conventions instead, so keys are mapped here, in both directions,
with a fixed list of renames per family. A family is told apart by its
LayerScale parameters: only EMOv2 has them.
"""
import logging
import re
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.registry import MODELS
from mmengine.runner.checkpoint import load_state_dict

from ..errors import UserError
from ..utils.safe_load import read_checkpoint

StateDict = Dict[str, torch.Tensor]

# (authors' fragment, ours) per family, applied in this order one way and
# the other: '#' is a stage digit, kept; a fragment starting with 'stage' is
# anchored at the start of the key, one ending with 'gamma' at its end.
_RENAMES = {
    'EMO': [
        ('stage0.0.convs.0.0.', 'stages.0.0.conv.'),
        ('stage0.0.convs.0.1.', 'stages.0.0.bn.'),
        ('stage#.', 'stages.#.'),
        ('.qk.conv.', '.attn.qk.'),
        ('.proj.conv.', '.proj.'),
        ('.conv_local.norm.', '.conv_local.bn.'),
    ],
    'EMOv2': [
        ('stage0.#.norm.', 'stages.0.#.bn.'),
        ('stage0.2.conv.', 'stages.0.2.'),
        ('stage#.', 'stages.#.'),
        # A LayerNorm2d after the depthwise conv (their mmseg backbone).
        ('.conv_local.norm.norm.', '.conv_local.ln.'),
        ('.conv_local.norm.', '.conv_local.bn.'),
        ('.eops.0.qk.conv.', '.attn.qk.'),
        ('.proj.conv.', '.proj.'),
        ('.ls.gamma', '.gamma'),
    ],
}
# Authors' names that two of ours have no single inverse for (undone in
# ours_to_authors): their LayerNorm2d wraps nn.LayerNorm as ``.norm``;
# EMOv2's token mixer is ``v`` in attending blocks and ``net`` elsewhere.
_AUTHORS_ONLY = [(r'(^|\.)norm\.norm\.', r'\1norm.'),
                 (r'\.eops\.0\.(net|v)\.conv\.', '.v.conv.')]
# Keys of the authors' classifier that are not part of the backbone.
_CLASSIFIER_PREFIXES = ('head.', 'norm.')


def _rule(source: str, target: str) -> Tuple[str, str]:
    """One :data:`_RENAMES` pair as a regex substitution."""
    pattern = re.escape(source).replace('\\#', r'(\d)', 1)
    if source.startswith('stage'):
        pattern = '^' + pattern
    if source.endswith('gamma'):
        pattern += '$'
    return pattern, target.replace('#', r'\1', 1)


def _rename(key: str, rules) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def family_of(state_dict: StateDict) -> str:
    """``'EMOv2'`` for a state dict with LayerScale parameters (either
    layout), else ``'EMO'``."""
    return ('EMOv2' if any(k.endswith('gamma') for k in state_dict) else 'EMO')


def is_authors_layout(state_dict: StateDict) -> bool:
    return any(key.startswith('stage0.') for key in state_dict)


def authors_to_ours(state_dict: StateDict) -> StateDict:
    """Rename an authors' state dict (EMO or EMOv2) to emo_mm's layout."""
    rules = [_rule(*pair) for pair in _RENAMES[family_of(state_dict)]]
    rules += _AUTHORS_ONLY
    return OrderedDict((_rename(k, rules), v) for k, v in state_dict.items())


def ours_to_authors(state_dict: StateDict) -> StateDict:
    """Rename an emo_mm backbone state dict (``norm.`` included) back."""
    family = family_of(state_dict)
    rules = [_rule(ours, authors) for authors, ours in _RENAMES[family]]
    out = OrderedDict()
    for key, value in state_dict.items():
        new_key = _rename(key, rules)
        # Their LayerNorm2d holds its nn.LayerNorm as ``.norm``: a norm with
        # no running statistics beside it is a LayerNorm.
        match = re.match(r'^(.*\.)?norm\.(weight|bias)$', key)
        if match and f'{match.group(1) or ""}norm.running_mean' not in \
                state_dict:
            new_key = new_key[:-len(match.group(2))] + 'norm.' + \
                match.group(2)
        # EMOv2's token mixer is "v" in attending blocks, "net" elsewhere.
        match = re.match(r'^(stages\.\d\.\d+\.)v\.conv\.', key)
        if family == 'EMOv2' and match:
            mixer = ('v' if f'{match.group(1)}attn.qk.weight' in state_dict
                     else 'net')
            new_key = new_key.replace('.v.conv.', f'.eops.0.{mixer}.conv.')
        out[new_key] = value
    return out


def extract_state_dict(checkpoint) -> StateDict:
    """The state dict inside a loaded checkpoint.

    Accepts a flat state dict or one wrapped under ``state_dict``, ``model``
    or ``net``, and drops DDP's ``module.`` prefixes.
    """
    for wrapper in ('state_dict', 'model', 'net'):
        if isinstance(checkpoint, dict) and isinstance(
                checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    if not isinstance(checkpoint, dict):
        raise UserError('checkpoint holds no state dict (found '
                        f'{type(checkpoint).__name__})')
    return OrderedDict(
        (re.sub(r'^module\.', '', k), v) for k, v in checkpoint.items())


def variant_signature(state_dict: StateDict) -> Tuple:
    """(family, stem channels, depths, channels) of an emo_mm-layout state
    dict."""
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
    return (family_of(state_dict), None if stem is None else stem.shape[0],
            tuple(depths), tuple(channels))


def find_arch(signature: Tuple) -> Optional[str]:
    """The preset name ('5m', ...) of the signature's family whose stem
    width, depths and widths are ``signature``'s, or None."""
    family, *numbers = signature
    # The backbones register under their family names; they import this
    # module, so it asks the registry rather than importing them.
    for name, arch in MODELS.get(family).arch_settings.items():
        if numbers == [
                arch['stem_channels'],
                tuple(arch['depths']),
                tuple(arch['channels'])
        ]:
            return name
    return None


def describe_variant(signature: Tuple) -> str:
    """``'EMOv2-5M'`` for a preset's signature, else its numbers."""
    name = find_arch(signature)
    family, stem, depths, channels = signature
    if name is not None:
        return f'{family}-{name.upper()}'
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
            ``'backbone.'``; ``'backbone'`` and ``'module.backbone.'`` mean
            the same) and strip it. When None and the checkpoint is a
            whole detector/segmentor/classifier, ``'backbone.'`` is used.
            Defaults to None.
        logger: Where the report of skipped keys goes. Defaults to
            ``'current'``.

    Raises:
        UserError: The file cannot be read, has no key under ``prefix``,
            holds no EMO weights, or holds another EMO variant than
            ``backbone``.
    """
    state_dict = extract_state_dict(read_checkpoint(filename))
    if prefix:
        # As mmengine's Pretrained init reads it ('backbone' is
        # 'backbone.'), less the DDP 'module.' that the keys lost above.
        prefix = re.sub(r'^module\.', '', prefix.rstrip('.') + '.') or None
    if prefix is None and any(k.startswith('backbone.') for k in state_dict):
        prefix = 'backbone.'
    if prefix:
        kept = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                           if k.startswith(prefix))
        if not kept:
            raise UserError(f'no key of checkpoint {filename} starts with '
                            f'{prefix!r} (first keys: '
                            f'{list(state_dict)[:5]})')
        state_dict = kept
    if is_authors_layout(state_dict):
        state_dict = authors_to_ours(state_dict)
    ours = backbone.state_dict()
    model_name = _check_fits(state_dict, ours, filename)
    # The classifier's head (and final norm, unless the backbone has one).
    dropped = ('head.', ) if backbone.final_norm else _CLASSIFIER_PREFIXES
    state_dict = OrderedDict(
        (k, v) for k, v in state_dict.items() if not k.startswith(dropped))
    # ImageNet weights have BatchNorms after the depthwise convs, where the
    # authors' segmentation backbone (dw_norm_cfg LN2d) has LayerNorms: those
    # keep their initial values, as in the authors' runs, and are named once
    # here instead of among missing keys.
    kept = [k for k in ours if '.conv_local.ln.' in k and k not in state_dict]
    if kept:
        norms = sorted({k.rsplit('.', 1)[0] for k in kept})
        print_log(
            f'{len(norms)} LayerNorms after the depthwise convs of '
            f'{model_name} are not in {filename} (it has BatchNorms there, '
            'which are not used); they keep their initial values, as in the '
            f'authors\' segmentation backbone: {", ".join(norms)}',
            logger=logger,
            level=logging.WARNING)
        state_dict.update((k, ours[k]) for k in kept)
        state_dict = OrderedDict((k, v) for k, v in state_dict.items()
                                 if '.conv_local.bn.' not in k)
    # mmengine's loader reports any other missing or unexpected key.
    load_state_dict(backbone, state_dict, strict=False, logger=logger)
    print_log(
        f'loaded {model_name} backbone weights from {filename}', logger=logger)


def _check_fits(state_dict: StateDict, ours: StateDict, filename) -> str:
    """Raise a :class:`UserError` unless ``state_dict`` holds weights of the
    variant of ``ours`` (a model's state dict), with every shape equal;
    returns the variant's name."""
    model_name = describe_variant(variant_signature(ours))
    if not any(k in ours for k in state_dict):
        sample = list(state_dict)[:5]
        raise UserError(f'checkpoint {filename} holds no {model_name} '
                        f'weights (first keys: {sample})')
    found = variant_signature(state_dict)
    if found != variant_signature(ours):
        raise UserError(f'checkpoint {filename} holds '
                        f'{describe_variant(found)} weights, '
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
    return model_name


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
