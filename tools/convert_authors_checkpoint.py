"""Convert EMO checkpoints between the authors' layout and OpenMMLab's.

    python tools/convert_authors_checkpoint.py SRC DST --to classifier
    python tools/convert_authors_checkpoint.py SRC DST --to backbone
    python tools/convert_authors_checkpoint.py SRC DST --to authors
        [--arch 1m|2m|5m|6m] [--force]

``--to classifier``: the authors' ``net.pth`` as an mmpretrain checkpoint of
``configs/imagenet/emo_*_in1k.py`` (``backbone.*`` with the final norm,
``head.fc.*``, ``meta`` with the ImageNet classes). ``--to backbone``: only
the backbone (``backbone.*``, no final norm, no head), for ``load_from`` or
``init_cfg`` in detection and segmentation configs. ``--to authors``: an
emo_mm classifier or backbone checkpoint back to the authors' flat keys.
Tensors are copied bit for bit, so a round trip is lossless.

SRC may be in either layout (wrapped under ``state_dict``/``model``/``net``
or not). The variant is read from the weights; ``--arch`` makes it a check.
An existing DST is not overwritten unless ``--force`` is given.
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict

import torch

from emo_mm.models import EMO
from emo_mm.models.checkpoint import (authors_to_classifier, authors_to_ours,
                                      classifier_to_authors, describe_variant,
                                      extract_state_dict, is_authors_layout,
                                      ours_to_authors, read_checkpoint,
                                      variant_signature)
from emo_mm.version import __version__

TARGETS = ('classifier', 'backbone', 'authors')


class ConversionError(Exception):
    """A bad input, reported in one line."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert EMO checkpoints between the authors\' layout '
        'and OpenMMLab\'s.')
    parser.add_argument('src', help='checkpoint to read (file or URL)')
    parser.add_argument('dst', help='checkpoint to write')
    parser.add_argument('--to', required=True, choices=TARGETS)
    parser.add_argument(
        '--arch',
        choices=sorted(EMO.arch_settings),
        help='expected variant; an error if the weights are another')
    parser.add_argument(
        '--force', action='store_true', help='overwrite an existing DST')
    return parser.parse_args(argv)


def find_arch(backbone_state_dict, src, expected=None):
    """The arch name ('1m' ...) of an emo_mm-layout backbone state dict."""
    signature = variant_signature(backbone_state_dict)
    for name, arch in EMO.arch_settings.items():
        if signature == (arch['stem_channels'], tuple(arch['depths']),
                         tuple(arch['channels'])):
            if expected and expected != name:
                raise ConversionError(
                    f'{src} holds EMO-{name.upper()} weights, but --arch is '
                    f'{expected}')
            return name
    raise ConversionError(f'{src} holds no known EMO variant: '
                          f'{describe_variant(signature)}')


def check_keys(state_dict, expected_keys, src, what):
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
        raise ConversionError(f'{src}: ' + '; '.join(parts))


def model_keys(arch, final_norm):
    """State dict keys of an emo_mm backbone (buffers included)."""
    return list(EMO(arch=arch, final_norm=final_norm).state_dict())


def convert(src_state, src, to, arch=None):
    """Convert a state dict; returns ``(state_dict, arch, description)``."""
    if is_authors_layout(src_state):
        if to == 'authors':
            raise ConversionError(f'{src} is already in the authors\' layout')
        ours = authors_to_ours(src_state)
        arch = find_arch(ours, src, arch)
        backbone_keys = model_keys(arch, final_norm=True)
        head_keys = [k for k in ours if k.startswith('head.')]
        check_keys(ours, backbone_keys + ['head.weight', 'head.bias'], src,
                   f'the authors\' EMO-{arch.upper()} classifier')
        if to == 'classifier':
            return (authors_to_classifier(src_state), arch,
                    'mmpretrain classifier')
        plain = set(model_keys(arch, final_norm=False))
        out = OrderedDict(('backbone.' + k, v) for k, v in ours.items()
                          if k in plain and k not in head_keys)
        return out, arch, 'backbone'

    if to != 'authors':
        raise ConversionError(
            f'{src} is not in the authors\' layout (no stage0.* keys); '
            f'--to {to} converts the authors\' net.pth')
    backbone = OrderedDict((k[len('backbone.'):], v)
                           for k, v in src_state.items()
                           if k.startswith('backbone.'))
    if not backbone:
        raise ConversionError(f'{src} holds no backbone.* keys: not an '
                              'emo_mm classifier, detector or segmentor')
    arch = find_arch(backbone, src, arch)
    if any(k.startswith('head.fc.') for k in src_state):
        check_keys(src_state, ['backbone.' + k for k in model_keys(arch, True)]
                   + ['head.fc.weight', 'head.fc.bias'], src,
                   f'an EMO-{arch.upper()} classifier')
        return classifier_to_authors(src_state), arch, 'authors\' classifier'
    check_keys(backbone, model_keys(arch, final_norm=False), src,
               f'an EMO-{arch.upper()} backbone')
    return ours_to_authors(backbone), arch, 'authors\' backbone (no head)'


def main(argv=None):
    """Run the command line; returns the exit code."""
    args = parse_args(argv)
    if osp.exists(args.dst) and not args.force:
        print(f'error: {args.dst} exists; refusing to overwrite it (use '
              '--force or another name)', file=sys.stderr)
        return 1
    try:
        src_state = extract_state_dict(read_checkpoint(args.src))
        state_dict, arch, what = convert(src_state, args.src, args.to,
                                         args.arch)
    except (ConversionError, ValueError, FileNotFoundError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    if args.to == 'authors':
        checkpoint = state_dict  # their loader takes a flat state dict
    else:
        meta = dict(
            converted_from=args.src,
            converted_by=f'emo_mm {__version__}',
            arch=arch)
        if args.to == 'classifier':
            from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
            meta['dataset_meta'] = dict(classes=IMAGENET_CATEGORIES)
        checkpoint = dict(state_dict=state_dict, meta=meta)
    torch.save(checkpoint, args.dst)
    print(f'wrote {args.dst}: EMO-{arch.upper()} {what}, '
          f'{len(state_dict)} tensors')
    return 0


if __name__ == '__main__':
    sys.exit(main())
