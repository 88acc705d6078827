"""Convert EMO and EMOv2 checkpoints between the authors' layout and
OpenMMLab's.

    python tools/convert_authors_checkpoint.py SRC DST --to classifier
    python tools/convert_authors_checkpoint.py SRC DST --to backbone
    python tools/convert_authors_checkpoint.py SRC DST --to authors
        [--arch 1m|2m|5m|6m|20m] [--force]

``--to classifier``: the authors' ``net.pth`` as an mmpretrain checkpoint of
``configs/imagenet/emo*_in1k.py`` (``backbone.*`` with the final norm,
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

from emo_mm.errors import run_tool
from emo_mm.models import EMO, EMOv2
from emo_mm.models.convert import TARGETS, convert_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert EMO and EMOv2 checkpoints between the authors\' '
        'layout and OpenMMLab\'s.')
    parser.add_argument('src', help='checkpoint to read (file or URL)')
    parser.add_argument('dst', help='checkpoint to write')
    parser.add_argument('--to', required=True, choices=TARGETS)
    parser.add_argument(
        '--arch',
        choices=sorted({*EMO.arch_settings, *EMOv2.arch_settings}),
        help='expected variant; an error if the weights are another')
    parser.add_argument(
        '--force', action='store_true', help='overwrite an existing DST')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    variant, what, count = convert_checkpoint(args.src, args.dst, args.to,
                                              args.arch, args.force)
    print(f'wrote {args.dst}: {variant} {what}, {count} tensors')


if __name__ == '__main__':
    run_tool(
        main,
        flags={
            'force=True': '--force',
            "arch='": "--arch '",
            "to='": "--to '"
        })
