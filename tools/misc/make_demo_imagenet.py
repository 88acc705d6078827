"""Write the synthetic shapes classification set (ImageNet format).

    python tools/misc/make_demo_imagenet.py data/shapes_imagenet
        [--num-train-per-class 100] [--num-val-per-class 20] [--seed 0]
        [--force]

The images come from :func:`emo_mm.demo_data.make_shapes_imagenet`; the same
seed always gives the same files. A ROOT that already holds files is left
alone unless ``--force`` is given.
"""

from emo_mm.demo_data import demo_data_main, make_shapes_imagenet
from emo_mm.errors import run_tool

# The sizes written without options (--num-... to change them).
COUNTS = dict(num_train_per_class=100, num_val_per_class=20)


def report(args, classes):
    """The classes, the split sizes and where the labels are."""
    print(f'  {len(classes)} classes ({", ".join(classes)}), '
          f'{args.num_train_per_class} train and {args.num_val_per_class} '
          f'val images each; labels in {args.root}/meta/{{train,val}}.txt')


if __name__ == '__main__':
    run_tool(demo_data_main, __doc__, make_shapes_imagenet, COUNTS, report)
