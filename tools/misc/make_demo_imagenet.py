"""Write the synthetic shapes classification set (ImageNet format).

    python tools/misc/make_demo_imagenet.py data/shapes_imagenet
        [--num-train-per-class 100] [--num-val-per-class 20] [--seed 0]
        [--force]

The images come from :func:`emo_mm.datasets.make_shapes_imagenet`; the same
seed always gives the same files. A ROOT that already holds files is left
alone unless ``--force`` is given.
"""
import sys

from emo_mm.datasets import make_shapes_imagenet
from emo_mm.utils.cli import demo_data_main


def report(args, classes):
    """The classes, the split sizes and where the labels are."""
    print(f'  {len(classes)} classes ({", ".join(classes)}), '
          f'{args.num_train_per_class} train and {args.num_val_per_class} '
          f'val images each; labels in {args.root}/meta/{{train,val}}.txt')


def main(argv=None):
    """Run the command line; returns the exit code."""
    return demo_data_main(
        argv, 'Write a synthetic ImageNet-format shapes data set.',
        make_shapes_imagenet,
        dict(num_train_per_class=100, num_val_per_class=20), report)


if __name__ == '__main__':
    sys.exit(main())
