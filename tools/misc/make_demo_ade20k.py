"""Write the synthetic outdoor scenes (ADE20K format) for the segmentation
demo.

    python tools/misc/make_demo_ade20k.py data/scenes_ade20k [--num-train 300]
        [--num-val 50] [--seed 0] [--force]

The images and label maps come from
:func:`emo_mm.demo_data.make_scenes_ade20k`; the same seed always gives the
same files. A ROOT that already holds files is left alone unless ``--force``
is given.
"""

from emo_mm.demo_data import demo_data_main, make_scenes_ade20k
from emo_mm.demo_data.scenes_ade20k import CLASS_IDS
from emo_mm.errors import run_tool

# The sizes written without options (--num-... to change them).
COUNTS = dict(num_train=300, num_val=50)


def report(args, counts):
    """The folders and the share of pixels of each class, per split."""
    names = {i: name for name, i in CLASS_IDS.items()}
    names[0] = 'other (ignored)'
    for split, pixels in counts.items():
        total = sum(pixels.values())
        shares = ', '.join(f'{names[i]} {100 * n / total:.1f}%'
                           for i, n in sorted(pixels.items()))
        print(f'  {split}: {args.root}/images/{split}/ and '
              f'{args.root}/annotations/{split}/; pixels: {shares}')


if __name__ == '__main__':
    run_tool(demo_data_main, __doc__, make_scenes_ade20k, COUNTS, report)
