"""Write the synthetic shapes classification set (ImageNet format).

    python tools/misc/make_demo_imagenet.py data/shapes_imagenet
        [--num-train-per-class 100] [--num-val-per-class 20] [--seed 0]
        [--force]

The images come from :func:`emo_mm.datasets.make_shapes_imagenet`; the same
seed always gives the same files. A ROOT that already holds files is left
alone unless ``--force`` is given.
"""
import argparse
import sys
import time

from emo_mm.datasets import make_shapes_imagenet
from emo_mm.utils.cli import ToolError, check_output_folder


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write a synthetic ImageNet-format shapes data set.')
    parser.add_argument('root', help='output folder')
    parser.add_argument('--num-train-per-class', type=int, default=100)
    parser.add_argument('--num-val-per-class', type=int, default=20)
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
    classes = make_shapes_imagenet(
        args.root,
        num_train_per_class=args.num_train_per_class,
        num_val_per_class=args.num_val_per_class,
        seed=args.seed)
    print(f'wrote {args.root} in {time.perf_counter() - start:.1f} s '
          f'(seed {args.seed}): {len(classes)} classes ({", ".join(classes)})'
          f', {args.num_train_per_class} train and '
          f'{args.num_val_per_class} val images each; labels in '
          f'{args.root}/meta/{{train,val}}.txt')
    return 0


if __name__ == '__main__':
    sys.exit(main())
