"""Write the synthetic outdoor scenes (ADE20K format) for the segmentation demo.

    python tools/misc/make_demo_ade20k.py data/scenes_ade20k [--num-train 300]
        [--num-val 50] [--seed 0] [--force]

The images and label maps come from
:func:`emo_mm.datasets.make_scenes_ade20k`; the same seed always gives the
same files. A ROOT that already holds files is left alone unless ``--force``
is given.
"""
import argparse
import sys
import time

from emo_mm.datasets import make_scenes_ade20k
from emo_mm.datasets.synthetic_ade20k import CLASS_IDS
from emo_mm.utils.cli import ToolError, check_output_folder


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write a synthetic ADE20K-format segmentation data set.')
    parser.add_argument('root', help='output folder')
    parser.add_argument('--num-train', type=int, default=300)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--force',
        action='store_true',
        help='write into ROOT even if it already holds files (files of the '
        'same names are overwritten, others are kept)')
    return parser.parse_args(argv)


def main(argv=None):
    """Run the command line; returns the exit code."""
    args = parse_args(argv)
    try:
        check_output_folder(args.root, args.force)
    except ToolError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    start = time.perf_counter()
    counts = make_scenes_ade20k(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        seed=args.seed)
    print(f'wrote {args.root} in {time.perf_counter() - start:.1f} s '
          f'(seed {args.seed})')
    names = {i: name for name, i in CLASS_IDS.items()}
    names[0] = 'other (ignored)'
    for split, pixels in counts.items():
        total = sum(pixels.values())
        shares = ', '.join(f'{names[i]} {100 * n / total:.1f}%'
                           for i, n in sorted(pixels.items()))
        print(f'  {split}: {args.root}/images/{split}/ and '
              f'{args.root}/annotations/{split}/; pixels: {shares}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
