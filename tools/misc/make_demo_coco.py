"""Write the synthetic shapes detection data set (COCO format) for the demo.

    python tools/misc/make_demo_coco.py data/shapes [--num-train 400]
        [--num-val 80] [--seed 0] [--force]

The images and annotations come from
:func:`emo_mm.datasets.make_shapes_coco`; the same seed always gives the same
files. A ROOT that already holds files is left alone unless ``--force`` is
given.
"""
import argparse
import json
import os.path as osp
import sys
import time
from collections import Counter

from emo_mm.datasets import make_shapes_coco
from emo_mm.utils.cli import ToolError, check_output_folder


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write a synthetic COCO-format shapes data set.')
    parser.add_argument('root', help='output folder')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=80)
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
    metainfo = make_shapes_coco(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        seed=args.seed)
    elapsed = time.perf_counter() - start
    print(f'wrote {args.root} in {elapsed:.1f} s (seed {args.seed})')
    for split in ('train', 'val'):
        ann_file = osp.join(args.root, 'annotations', f'{split}.json')
        with open(ann_file) as f:
            coco = json.load(f)
        names = {c['id']: c['name'] for c in coco['categories']}
        counts = Counter(names[a['category_id']] for a in coco['annotations'])
        per_class = ', '.join(f'{name} {counts[name]}'
                              for name in metainfo['classes'])
        print(f'  {split}: {len(coco["images"])} images in '
              f'{osp.join(args.root, split)}/, '
              f'{len(coco["annotations"])} instances ({per_class}), '
              f'annotations {ann_file}')
    print(f'  metainfo=dict(classes={metainfo["classes"]}, '
          f'palette={metainfo["palette"]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
