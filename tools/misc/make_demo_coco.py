"""Write the synthetic shapes detection data set (COCO format) for the demo.

    python tools/misc/make_demo_coco.py data/shapes [--num-train 1600]
        [--num-val 80] [--seed 0] [--force]

The images and annotations come from
:func:`emo_mm.demo_data.make_shapes_coco`; the same seed always gives the same
files. A ROOT that already holds files is left alone unless ``--force`` is
given.
"""
import json
import os.path as osp
from collections import Counter

from emo_mm.demo_data import demo_data_main, make_shapes_coco
from emo_mm.errors import run_tool

# The sizes written without options (--num-... to change them).
COUNTS = dict(num_train=1600, num_val=80)


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


if __name__ == '__main__':
    run_tool(demo_data_main, __doc__, make_shapes_coco, COUNTS, report)
