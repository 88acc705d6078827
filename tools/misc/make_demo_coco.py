"""Write the synthetic shapes detection data set (COCO format) for the demo.

    python tools/misc/make_demo_coco.py data/shapes [--num-train 400]
        [--num-val 80] [--seed 0] [--force]

The images and annotations come from
:func:`emo_mm.datasets.make_shapes_coco`; the same seed always gives the same
files. A ROOT that already holds files is left alone unless ``--force`` is
given.
"""
import json
import os.path as osp
import sys
from collections import Counter

from emo_mm.datasets import make_shapes_coco
from emo_mm.utils.cli import demo_data_main


def report(args, metainfo):
    """Images and instances per split and class, and the metainfo."""
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


def main(argv=None):
    """Run the command line; returns the exit code."""
    return demo_data_main(
        argv, 'Write a synthetic COCO-format shapes data set.',
        make_shapes_coco, dict(num_train=400, num_val=80), report)


if __name__ == '__main__':
    sys.exit(main())
